package openai

import (
	"encoding/json"
	"mime"
	"net/http"
	"strconv"
	"strings"
)

// MaxRelabelBytes bounds the answer held back to check whether it is JSON
// (see jsonTypeWriter); a larger one passes through unchanged.
const MaxRelabelBytes = 1 << 20

// jsonTypeWriter relabels a non-streaming answer whose body is JSON as
// application/json when the model server labelled it otherwise (text/plain,
// or nothing, which net/http would sniff as text/plain): the OpenAI clients
// choose by Content-Type and would hand the caller a string. It holds an
// answer back only when its label is neither JSON nor an event stream, it
// is not compressed and it is at most limit bytes (checked against
// Content-Length up front, and as it arrives); anything else passes
// through as it comes. It is used only for requests that did not ask for
// "stream": true.
type jsonTypeWriter struct {
	http.ResponseWriter
	limit   int
	status  int  // the answer's status, 0 until known
	holding bool // buffering to check the body
	buf     []byte
}

func newJSONTypeWriter(w http.ResponseWriter, limit int) *jsonTypeWriter {
	return &jsonTypeWriter{ResponseWriter: w, limit: limit}
}

func (j *jsonTypeWriter) WriteHeader(code int) {
	if code < 200 { // informational: not the answer
		j.ResponseWriter.WriteHeader(code)
		return
	}
	if j.status != 0 {
		return
	}
	j.status = code
	if j.mayRelabel() {
		j.holding = true
		return
	}
	j.ResponseWriter.WriteHeader(code)
}

// mayRelabel says whether the answer's headers leave it a candidate.
func (j *jsonTypeWriter) mayRelabel() bool {
	h := j.Header()
	if h.Get("Content-Encoding") != "" {
		return false
	}
	if cl := h.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err != nil || n > int64(j.limit) {
			return false
		}
	}
	ct := h.Get("Content-Type")
	if ct == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return true
	}
	return mt != "application/json" && !strings.HasSuffix(mt, "+json") && mt != "text/event-stream"
}

func (j *jsonTypeWriter) Write(b []byte) (int, error) {
	if j.status == 0 {
		j.WriteHeader(http.StatusOK)
	}
	if !j.holding {
		return j.ResponseWriter.Write(b)
	}
	if len(j.buf)+len(b) <= j.limit {
		j.buf = append(j.buf, b...)
		return len(b), nil
	}
	// Too large to check: send what is held, unchanged, then the rest.
	if err := j.release(false); err != nil {
		return 0, err
	}
	return j.ResponseWriter.Write(b)
}

// release sends the held answer, relabelled if check and its body is JSON.
func (j *jsonTypeWriter) release(check bool) error {
	j.holding = false
	if check && json.Valid(j.buf) {
		j.Header().Set("Content-Type", "application/json")
	}
	j.ResponseWriter.WriteHeader(j.status)
	_, err := j.ResponseWriter.Write(j.buf)
	j.buf = nil
	return err
}

// finish sends a held answer once the upstream's body has ended.
func (j *jsonTypeWriter) finish() {
	if j.holding {
		_ = j.release(true) // the client went away: nothing to tell it
	}
}

// started reports whether the answer began (held or sent).
func (j *jsonTypeWriter) started() bool { return j.status != 0 }

// Flush does nothing while the answer is held (the point is to hold it).
func (j *jsonTypeWriter) Flush() {
	if j.holding {
		return
	}
	if f, ok := j.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the real writer's other
// methods (deadlines); Flush is answered above.
func (j *jsonTypeWriter) Unwrap() http.ResponseWriter { return j.ResponseWriter }
