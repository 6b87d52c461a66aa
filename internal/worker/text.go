package worker

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/ember-run/ember/internal/textmodel"
)

// Text tasks.
const (
	TaskClassification = textmodel.TaskClassification
	TaskEmbeddings     = textmodel.TaskEmbeddings
)

// TaskOptions are a function's settings for its task, from the spec
// (`text:` and `batch:`), given as `--options JSON` or in POST /load.
type TaskOptions struct {
	// MaxLength lowers the model's truncation length (tokens).
	MaxLength int `json:"max_length,omitempty"`
	// Pooling is "mean" or "cls" (embeddings).
	Pooling string `json:"pooling,omitempty"`
	// Normalize scales embeddings to unit length (default true).
	Normalize *bool `json:"normalize,omitempty"`
	// Padding "longest" overrides tokenizer.json's fixed padding.
	Padding string `json:"padding,omitempty"`
	// BatchMaxSize > 1 turns on dynamic batching; BatchMaxDelayMS is how
	// long an open batch waits for more (milliseconds, may be fractional).
	BatchMaxSize    int     `json:"batch_max_size,omitempty"`
	BatchMaxDelayMS float64 `json:"batch_max_delay_ms,omitempty"`
}

// TextOptions translates o for textmodel.Load.
func (o TaskOptions) TextOptions(task string, threads int) textmodel.Options {
	return textmodel.Options{
		Task: task, MaxLength: o.MaxLength, Pooling: o.Pooling, Normalize: o.Normalize, Threads: threads,
		PadLongest:   o.Padding == "longest",
		BatchMaxSize: o.BatchMaxSize, BatchMaxDelay: time.Duration(o.BatchMaxDelayMS * float64(time.Millisecond)),
	}
}

// textModel is what the text tasks need of a model (*textmodel.Model).
type textModel interface {
	Task() string
	MaxLength() int
	Stats() textmodel.LoadStats
	Classify(ctx context.Context, texts []string, topK int) ([][]textmodel.Label, textmodel.Usage, error)
	Embed(ctx context.Context, texts []string) ([][]float32, textmodel.Usage, error)
}

// textRequest is the body of POST / for the text tasks: one "text" or
// several "texts".
type textRequest struct {
	Text  *string  `json:"text"`
	Texts []string `json:"texts"`
	TopK  int      `json:"top_k"`
}

// classification is one text's answer: the seed's {"label", "score"},
// plus the top_k best when asked.
type classification struct {
	Label  string            `json:"label"`
	Score  float64           `json:"score"`
	Labels []textmodel.Label `json:"labels,omitempty"`
}

type usageJSON struct {
	Tokens    int `json:"tokens"`
	Truncated int `json:"truncated,omitempty"`
}

// missingText is the seed's message for a body without "text".
const missingText = "Missing 'text' field"

func (s *Server) readJSON(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &httpError{Code: http.StatusRequestEntityTooLarge, Msg: fmt.Sprintf("body too large: limit %d bytes", mbe.Limit)}
		}
		return &httpError{Code: http.StatusBadRequest, Msg: "reading body: " + err.Error(), Err: err}
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return &httpError{Code: http.StatusBadRequest, Msg: missingText}
	}
	if err := json.Unmarshal(body, v); err != nil {
		return &httpError{Code: http.StatusBadRequest, Msg: "body is not valid JSON: " + err.Error(), Err: err}
	}
	return nil
}

func inputError(err error) error {
	var ie *textmodel.InputError
	if errors.As(err, &ie) {
		return &httpError{Code: http.StatusBadRequest, Msg: ie.Error(), Err: err}
	}
	return nil
}

func inferError(r *http.Request, err error) error {
	if r.Context().Err() != nil {
		return &httpError{Code: 499, Msg: "client went away", Err: err}
	}
	return &httpError{Code: http.StatusInternalServerError, Msg: "inference failed", Err: err}
}

// handleText serves {"text"} / {"texts"} for text-classification and
// embeddings.
func (s *Server) handleText(w http.ResponseWriter, r *http.Request, m textModel) error {
	t0 := time.Now()
	var req textRequest
	if err := s.readJSON(w, r, &req); err != nil {
		return err
	}
	texts, field := req.Texts, "texts"
	switch {
	case req.Text != nil && req.Texts != nil:
		return &httpError{Code: http.StatusBadRequest, Msg: `give "text" or "texts", not both`}
	case req.Text != nil:
		texts, field = []string{*req.Text}, "text"
	case req.Texts == nil:
		return &httpError{Code: http.StatusBadRequest, Msg: missingText}
	}
	if req.TopK < 0 {
		return &httpError{Code: http.StatusBadRequest, Msg: fmt.Sprintf("top_k: must be ≥ 1 (got %d)", req.TopK)}
	}
	if err := textmodel.CheckTexts(field, texts); err != nil {
		return inputError(err)
	}
	timings := map[string]float64{}
	var out any
	switch m.Task() {
	case TaskClassification:
		res, usage, err := m.Classify(r.Context(), texts, req.TopK)
		if err != nil {
			return inferError(r, err)
		}
		cs := make([]classification, len(res))
		for i, ls := range res {
			cs[i] = classification{Label: ls[0].Label, Score: ls[0].Score}
			if req.TopK > 0 {
				cs[i].Labels = ls
			}
		}
		if field == "text" {
			out = cs[0]
		} else {
			out = map[string]any{"results": cs, "usage": usageJSON{usage.Tokens, usage.Truncated}}
		}
	case TaskEmbeddings:
		vecs, usage, err := m.Embed(r.Context(), texts)
		if err != nil {
			return inferError(r, err)
		}
		u := usageJSON{usage.Tokens, usage.Truncated}
		if field == "text" {
			out = map[string]any{"embedding": vecs[0], "usage": u}
		} else {
			out = map[string]any{"embeddings": vecs, "usage": u}
		}
	}
	timings["total_ms"] = msf(time.Since(t0))
	w.Header().Set("Server-Timing", serverTiming(timings))
	writeJSON(w, http.StatusOK, out)
	return nil
}

// openAIError answers in OpenAI's error shape, which its clients parse.
func openAIError(w http.ResponseWriter, code int, param, msg string) error {
	body := map[string]any{"error": map[string]any{"message": msg, "type": "invalid_request_error", "param": param, "code": nil}}
	writeJSON(w, code, body)
	return nil
}

// handleOpenAIEmbeddings serves OpenAI's POST /v1/embeddings for an
// embeddings model: "input" a string or an array of strings (token-id
// arrays are refused: the ids would be another tokenizer's),
// "encoding_format" float (default) or base64 (little-endian float32, as
// OpenAI sends), usage counted by the model's tokenizer.
func (s *Server) handleOpenAIEmbeddings(w http.ResponseWriter, r *http.Request) error {
	s.mu.Lock()
	m, dir := s.model, s.dir
	s.mu.Unlock()
	tm, ok := m.(textModel)
	if !ok || tm.Task() != TaskEmbeddings {
		return openAIError(w, http.StatusNotFound, "model", "this function does not serve embeddings (task: embeddings)")
	}
	var req struct {
		Input          json.RawMessage `json:"input"`
		Model          string          `json:"model"`
		EncodingFormat string          `json:"encoding_format"`
		Dimensions     *int            `json:"dimensions"`
	}
	if err := s.readJSON(w, r, &req); err != nil {
		var he *httpError
		if errors.As(err, &he) {
			return openAIError(w, he.Code, "input", he.Msg)
		}
		return err
	}
	var texts []string
	var one string
	switch {
	case len(req.Input) == 0 || string(req.Input) == "null":
		return openAIError(w, http.StatusBadRequest, "input", `"input" is required: a string or an array of strings`)
	case json.Unmarshal(req.Input, &one) == nil:
		texts = []string{one}
	case json.Unmarshal(req.Input, &texts) == nil:
	default:
		return openAIError(w, http.StatusBadRequest, "input", `"input" must be a string or an array of strings (token arrays are not accepted: they would be another tokenizer's ids)`)
	}
	if err := textmodel.CheckTexts("input", texts); err != nil {
		return openAIError(w, http.StatusBadRequest, "input", err.Error())
	}
	switch req.EncodingFormat {
	case "", "float", "base64":
	default:
		return openAIError(w, http.StatusBadRequest, "encoding_format", fmt.Sprintf(`"encoding_format" must be float or base64 (got %q)`, req.EncodingFormat))
	}
	if req.Dimensions != nil {
		return openAIError(w, http.StatusBadRequest, "dimensions", `"dimensions" is not supported: the model's embedding size is fixed`)
	}
	vecs, usage, err := tm.Embed(r.Context(), texts)
	if err != nil {
		return inferError(r, err)
	}
	data := make([]map[string]any, len(vecs))
	for i, v := range vecs {
		var emb any = v
		if req.EncodingFormat == "base64" {
			b := make([]byte, 4*len(v))
			for k, f := range v {
				binary.LittleEndian.PutUint32(b[4*k:], math.Float32bits(f))
			}
			emb = base64.StdEncoding.EncodeToString(b)
		}
		data[i] = map[string]any{"object": "embedding", "index": i, "embedding": emb}
	}
	model := req.Model
	if model == "" {
		model = strings.TrimPrefix(dir, "npm:")
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"object": "list", "data": data, "model": model,
		"usage": map[string]int{"prompt_tokens": usage.Tokens, "total_tokens": usage.Tokens},
	})
	return nil
}
