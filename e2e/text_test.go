package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/textmodel/bertgen"
)

// exampleSpec reads a shipped example spec and points its model at dir.
func exampleSpec(t *testing.T, path, dir string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model: ") {
			l = "model: " + dir
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// poolReady is how many pooled onnx workers have become ready (taken
// ones included), from /metrics: the driver reports a worker ready only
// once it is in the pool, so the next start takes it.
func (s *server) poolReady() int {
	s.t.Helper()
	r := s.call("GET", "/metrics", "")
	if r.status != 200 {
		s.t.Fatalf("GET /metrics as admin: %d %s", r.status, r.body)
	}
	return poolReadyIn(r.body)
}

// poolReadyIn reads, from a /metrics body, how many pooled onnx workers
// became ready.
func poolReadyIn(metrics []byte) int {
	re := regexp.MustCompile(`(?m)^ember_instance_transitions_total\{function="ember:onnx-pool",to="ready"\} (\d+)$`)
	m := re.FindSubmatch(metrics)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// TestSentimentFunction deploys examples/sentiment on a real server on a
// generated stand-in model, with text.max_length lowered to 8, and waits
// for the pre-warmed pool's worker, so the cold start specialises it
// through POST /load with the task options. It checks that the pooled
// worker served it (pool_acquired) and applied the options (texts equal
// in their first 6 words answer alike; a change in the 6th word shows),
// the seed's request/response shape, its 400, the cold-start phases, and
// that concurrent calls are answered under batching exactly as one at a
// time.
func TestSentimentFunction(t *testing.T) {
	if testing.Short() {
		t.Skip("runs ONNX Runtime")
	}
	dir := t.TempDir()
	c := bertgen.Small()
	c.TokenTypes, c.Labels = false, []string{"NEGATIVE", "POSITIVE"}
	if err := bertgen.Write(dir, c, bertgen.Options{MaxLength: 512}); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, "", "--onnx-pool", "1")
	s.deploy(exampleSpec(t, "../examples/sentiment/sentiment.yaml", dir) + "\ntext: {max_length: 8}\n")
	// The pool fills once an onnx function exists.
	eventually(t, 2*time.Minute, "a pooled onnx worker ready", func() bool { return s.poolReady() >= 1 })

	cold := s.call("POST", "/v1/run/sentiment", `{"text": "I love this movie!"}`)
	if cold.status != 200 || cold.header.Get(api.HeaderColdStart) != "true" {
		t.Fatalf("cold call: %d cold=%q %s\n%s", cold.status, cold.header.Get(api.HeaderColdStart), cold.body, s.logs.String())
	}
	ins := s.instances("sentiment")
	if len(ins) != 1 || !slices.Contains(ins[0].PhaseOrder, "pool_acquired") {
		t.Fatalf("instances %+v: want one, started from the pool (phase pool_acquired)", ins)
	}
	// [CLS] + 6 one-token words + [SEP] = 8: what follows the 6th word is
	// cut off, the 6th is not.
	score := func(text string) string {
		r := s.call("POST", "/v1/run/sentiment", `{"text": "`+text+`", "top_k": 2}`)
		if r.status != 200 {
			t.Fatalf("%q: %d %s", text, r.status, r.body)
		}
		return string(r.body)
	}
	base := score("the movie was good and fun today really")
	if got := score("the movie was good and fun never again at all"); got != base {
		t.Errorf("texts equal in their first 6 words answer %s and %s: the pooled worker did not truncate at max_length 8", base, got)
	}
	if got := score("the movie was good and bad today really"); got == base {
		t.Errorf("a different 6th word answers %s as before: truncated too early, or the model ignores its input", got)
	}
	var one map[string]any
	decode(t, cold.body, &one)
	if l := one["label"]; (l != "NEGATIVE" && l != "POSITIVE") || len(one) != 2 {
		t.Errorf("answer %s, want the seed's {label, score} with config.json's labels", cold.body)
	}
	st := cold.header.Get(api.HeaderServerTiming)
	for _, ph := range []string{"sessions_created", "warmup_done", "ready"} {
		if !strings.Contains(st, ph+";dur=") {
			t.Errorf("Server-Timing %q lacks the %s phase", st, ph)
		}
	}
	bad := s.call("POST", "/v1/run/sentiment", `{"txt": "typo"}`)
	if bad.status != 400 || !strings.Contains(string(bad.body), "Missing 'text' field") {
		t.Errorf("no text: %d %s, want 400 Missing 'text' field", bad.status, bad.body)
	}

	texts := []string{"great", "awful film", "Héllo wörld", "北京欢迎你", "so so", "best ever!!!", "meh", "ok then"}
	alone := make([]string, len(texts))
	for i, tx := range texts {
		alone[i] = string(s.call("POST", "/v1/run/sentiment", `{"text": "`+tx+`"}`).body)
	}
	var wg sync.WaitGroup
	together := make([]string, len(texts))
	for i, tx := range texts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			together[i] = string(s.call("POST", "/v1/run/sentiment", `{"text": "`+tx+`"}`).body)
		}()
	}
	wg.Wait()
	for i := range texts {
		var a, b struct {
			Label string
			Score float64
		}
		json.Unmarshal([]byte(alone[i]), &a)
		json.Unmarshal([]byte(together[i]), &b)
		if a.Label != b.Label || a.Score-b.Score > 1e-6 || b.Score-a.Score > 1e-6 || a.Label == "" {
			t.Errorf("%q: concurrent %s, alone %s", texts[i], together[i], alone[i])
		}
	}
	out, err := exec.Command(bins.ember, "--server", s.url, "--key-file", s.dataDir+"/admin.key", "describe", "sentiment").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "model loaded (read + sessions)") {
		t.Errorf("describe sentiment lacks the cold-start table: %v\n%s", err, out)
	}
}

// TestEmbeddingsOpenAIClient serves examples/embeddings and calls it with
// the official openai npm client's embeddings.create (examples/embeddings/
// embed.mjs, unchanged), which asks for base64 and decodes it.
func TestEmbeddingsOpenAIClient(t *testing.T) {
	if testing.Short() {
		t.Skip("runs ONNX Runtime")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not on PATH")
	}
	clients, err := filepath.Abs("clients")
	if err != nil {
		t.Fatal(err)
	}
	installClients(t, clients)
	dir := t.TempDir()
	if err := bertgen.Write(filepath.Join(dir, "model"), bertgen.Small(), bertgen.Options{}); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, "", "--onnx-pool", "0")
	s.deploy(exampleSpec(t, "../examples/embeddings/embeddings.yaml", filepath.Join(dir, "model")))

	// The example script, run beside the pinned client.
	script, err := os.ReadFile("../examples/embeddings/embed.mjs")
	if err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(dir, "run")
	os.Mkdir(run, 0o755)
	if err := os.Symlink(filepath.Join(clients, "node_modules"), filepath.Join(run, "node_modules")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(run, "embed.mjs"), script, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "embed.mjs")
	cmd.Dir = run
	cmd.Env = append(os.Environ(), "EMBER_URL="+s.url, "EMBER_KEY="+s.key)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node embed.mjs: %v\n%s\n%s", err, b, s.logs.String())
	}
	var got struct{ Count, Dims, PromptTokens int }
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	got.Count, got.Dims, got.PromptTokens = int(raw["count"].(float64)), int(raw["dims"].(float64)), int(raw["prompt_tokens"].(float64))
	// "Ember runs models on CPUs." and "Serverless inference, warm or
	// cold." are 10 tokens each with [CLS] and [SEP] (Hugging Face's bert-base-uncased tokenizer).
	if got.Count != 2 || got.Dims != 32 || got.PromptTokens != 20 {
		t.Errorf("embeddings.create: %s, want 2 embeddings of 32 dims and 20 prompt tokens", b)
	}
}
