package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// recordingResolver answers every known model with 200 and keeps what it
// was handed.
type recordingResolver struct {
	model string
	body  []byte
}

func (r *recordingResolver) Forward(w http.ResponseWriter, req *http.Request, model string) error {
	if model != "m" {
		return ErrUnknownModel
	}
	r.model = model
	r.body, _ = io.ReadAll(req.Body)
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"ok":true}`)
	return nil
}

func (r *recordingResolver) Models(context.Context) ([]string, error) { return []string{"m"}, nil }

// FuzzForward sends arbitrary bodies to the OpenAI endpoints (any key with
// invoke rights can): the handler must either hand the body on intact to
// the model it names, or answer an OpenAI-shaped 4xx with a message.
func FuzzForward(f *testing.F) {
	f.Add(uint8(0), []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
	f.Add(uint8(1), []byte(`{"model":"m","prompt":"x","stream":true}`))
	f.Add(uint8(2), []byte(`{"model":"m","input":["a","b"],"encoding_format":"base64"}`))
	f.Add(uint8(0), []byte(`{"model":"other"}`))
	f.Add(uint8(0), []byte(`{"model":null}`))
	f.Add(uint8(0), []byte(`[]`))
	paths := []string{PathChatCompletions, PathCompletions, PathEmbeddings}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		res := &recordingResolver{}
		h := New(res, Options{MaxBodyBytes: 1 << 16})
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("POST", paths[int(which)%len(paths)], bytes.NewReader(body)))
		if w.Code == http.StatusOK {
			if res.model != "m" || !bytes.Equal(res.body, body) {
				t.Fatalf("200, but the resolver got model %q and %d of %d body bytes", res.model, len(res.body), len(body))
			}
			return
		}
		var e struct {
			Error struct{ Message, Type string } `json:"error"`
		}
		if w.Code < 400 || w.Code >= 500 || json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Error.Message == "" || e.Error.Type == "" {
			t.Fatalf("answer %d %q: want 200 or an OpenAI-shaped 4xx", w.Code, w.Body.String())
		}
		if res.body != nil {
			t.Fatalf("refused with %d after handing the request on", w.Code)
		}
	})
}
