// Command genmodel writes a stand-in model directory in the Hugging Face
// export layout (model.onnx, tokenizer.json, config.json): a BERT-shaped
// ONNX graph with random, seeded weights and bert-base-uncased's real
// WordPiece tokenizer. Its answers are meaningless; its shapes, inputs,
// outputs, tokenizer and cost per token are those of a real export, so
// Ember's loading, tokenising, batching and serving are exercised for
// real. Swap in a real export (e.g. distilbert-base-uncased-finetuned-
// sst-2-english exported with optimum) by pointing `model:` at it.
//
//	go run ./examples/sentiment/genmodel -out examples/sentiment/model
//	go run ./examples/sentiment/genmodel -size distilbert -out /tmp/distilbert
//	go run ./examples/sentiment/genmodel -task embeddings -out examples/embeddings/model
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/ember-run/ember/internal/textmodel/bertgen"
)

func main() {
	out := flag.String("out", "examples/sentiment/model", "directory to write")
	size := flag.String("size", "small", "small (2 layers, hidden 32, ~4 MB) or distilbert (6 layers, hidden 768, ~265 MB)")
	task := flag.String("task", "text-classification", "text-classification or embeddings")
	quant := flag.String("quant", "none", "int8 quantisation: none, qdq (DequantizeLinear → MatMul) dynamic (quantize_dynamic's MatMulInteger) or qlinear (quantize_static's QLinearMatMul)")
	flag.Parse()
	var c bertgen.Config
	switch *size {
	case "small":
		c = bertgen.Small()
		c.TokenTypes = false
	case "distilbert":
		c = bertgen.DistilBERT()
	default:
		fmt.Fprintf(os.Stderr, "genmodel: -size %q: want small or distilbert\n", *size)
		os.Exit(2)
	}
	switch *task {
	case "text-classification":
		c.Labels = []string{"NEGATIVE", "POSITIVE"} // distilbert-base-uncased-finetuned-sst-2-english's
	case "embeddings":
	default:
		fmt.Fprintf(os.Stderr, "genmodel: -task %q: want text-classification or embeddings\n", *task)
		os.Exit(2)
	}
	switch *quant {
	case "none":
	case "qdq":
		c.QDQ = true
	case "dynamic":
		c.DynamicInt8 = true
	case "qlinear":
		c.QLinear = true
	default:
		fmt.Fprintf(os.Stderr, "genmodel: -quant %q: want none, qdq, dynamic or qlinear\n", *quant)
		os.Exit(2)
	}
	// Truncation at 512 and no padding, as a DistilBERT export's
	// tokenizer.json has it.
	if err := bertgen.Write(*out, c, bertgen.Options{MaxLength: 512}); err != nil {
		fmt.Fprintln(os.Stderr, "genmodel:", err)
		os.Exit(1)
	}
	fmt.Println("wrote", *out)
}
