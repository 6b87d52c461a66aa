// Package openai serves OpenAI-compatible endpoints: it reads the "model" of
// each request and hands the request, body intact and path preserved, to a
// Resolver that forwards it to the function or route of that name.
package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/ember-run/ember/internal/errkind"
	"github.com/ember-run/ember/internal/problem"
)

// Paths served.
const (
	PathChatCompletions = "/v1/chat/completions"
	PathCompletions     = "/v1/completions"
	PathEmbeddings      = "/v1/embeddings"
	PathModels          = "/v1/models"
	// PatternModel is GET /v1/models/{id}; ids may hold a slash (owner/name).
	PatternModel = "GET /v1/models/{id...}"
)

// DefaultMaxBodyBytes bounds the request body read to find "model".
const DefaultMaxBodyBytes = 32 << 20

// ErrUnknownModel is what a Resolver returns (wrapped) for a model that is
// neither a function nor a route; it becomes 404 model_not_found.
var ErrUnknownModel = errors.New("openai: model not found")

// Resolver forwards requests to what a model name names. The gateway
// implements it by proxying to the function or route.
type Resolver interface {
	// Forward sends r (its body re-readable, its path unchanged) to model
	// and streams the answer to w. It returns an error only if it wrote
	// nothing to w; once the answer has started, failures are its own to
	// report (or to cut the stream).
	Forward(w http.ResponseWriter, r *http.Request, model string) error
	// Models lists the model names the caller may use (ctx is the
	// request's, with its principal).
	Models(ctx context.Context) ([]string, error)
}

// Options configure the Handler.
type Options struct {
	// MaxBodyBytes bounds request bodies (DefaultMaxBodyBytes when 0).
	MaxBodyBytes int64
	// Now is the clock for Retry-After (time.Now when nil).
	Now    func() time.Time
	Logger *slog.Logger
}

// Handler serves the OpenAI-compatible endpoints.
type Handler struct {
	res    Resolver
	opts   Options
	logger *slog.Logger
	mux    *http.ServeMux
}

// New returns a Handler over res. Mount it on the paths above (see
// Patterns); it answers every other path with an OpenAI-shaped 404.
func New(res Resolver, opts Options) *Handler {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	h := &Handler{res: res, opts: opts, logger: opts.Logger, mux: http.NewServeMux()}
	if h.logger == nil {
		h.logger = slog.New(slog.DiscardHandler)
	}
	if h.opts.Now == nil {
		h.opts.Now = time.Now
	}
	for _, p := range []string{PathChatCompletions, PathCompletions, PathEmbeddings} {
		h.mux.HandleFunc("POST "+p, h.forward)
	}
	h.mux.HandleFunc("GET "+PathModels, h.models)
	h.mux.HandleFunc(PatternModel, h.model)
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found",
			fmt.Sprintf("%s %s is not an OpenAI-compatible endpoint of Ember", r.Method, r.URL.Path))
	})
	return h
}

// Patterns are the ServeMux patterns to mount the Handler on.
func Patterns() []string {
	return []string{PathChatCompletions, PathCompletions, PathEmbeddings, PathModels, PatternModel}
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) forward(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.opts.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "body_too_large",
				"request body too large: limit is "+strconv.FormatInt(mbe.Limit, 10)+" bytes")
			return
		}
		writeError(w, http.StatusBadRequest, "bad_request", "reading request body: "+err.Error())
		return
	}
	var head struct {
		Model  *string         `json:"model"`
		Stream json.RawMessage `json:"stream"` // raw: an odd value is the model server's to judge
	}
	if err := json.Unmarshal(body, &head); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_json", "request body is not valid JSON: "+err.Error())
		return
	}
	if head.Model == nil || *head.Model == "" {
		writeError(w, http.StatusBadRequest, "missing_model",
			`request body needs "model": the name of an Ember function or route`)
		return
	}
	// Hand the body on as if unread, re-readable for a retry on another target.
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	r.Header.Del("Transfer-Encoding")
	r.Header.Set("Content-Length", strconv.Itoa(len(body)))

	if string(head.Stream) == "true" {
		if err := h.res.Forward(w, r, *head.Model); err != nil {
			h.writeResolverError(w, r, *head.Model, err)
		}
		return
	}
	// Not streaming: a JSON answer mislabelled by the model server goes
	// out as application/json (jsontype.go).
	jw := newJSONTypeWriter(w, MaxRelabelBytes)
	err = h.res.Forward(jw, r, *head.Model)
	if err != nil && !jw.started() {
		h.writeResolverError(w, r, *head.Model, err)
		return
	}
	jw.finish()
}

// writeResolverError answers a Resolver error in OpenAI's shape: an
// unknown model is 404 model_not_found; anything else as errkind
// classifies it (statuses, Retry-After, RateLimit-* as on /v1/run).
func (h *Handler) writeResolverError(w http.ResponseWriter, r *http.Request, model string, err error) {
	var p problem.Problem
	if errors.Is(err, ErrUnknownModel) {
		p = clientProblem(http.StatusNotFound, "model_not_found",
			fmt.Sprintf("the model %q does not exist: deploy a function or apply a route of that name", model))
	} else {
		p = problem.Classify(err, h.opts.Now())
	}
	if p.Status >= 500 {
		h.logger.ErrorContext(r.Context(), "openai: forward failed", "model", model, "path", r.URL.Path, "status", p.Status, "err", err)
	}
	problem.WriteOpenAI(w, p)
}

// clientProblem is a client error the handler finds itself.
func clientProblem(status int, code, msg string) problem.Problem {
	return problem.Problem{Kind: errkind.FromStatus(status), Status: status, Code: code, Msg: msg}
}

// writeError answers in OpenAI's error shape,
// {"error": {"message", "type", "code"}}.
func writeError(w http.ResponseWriter, status int, code, message string) {
	problem.WriteOpenAI(w, clientProblem(status, code, message))
}

// Model is one entry of GET /v1/models.
type Model struct {
	ID     string `json:"id"`
	Object string `json:"object"`
	// Created is 0: functions are versioned, not dated, and clients only
	// need the field to exist.
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// ModelList is the body of GET /v1/models.
type ModelList struct {
	Object string  `json:"object"`
	Data   []Model `json:"data"`
}

// model serves GET /v1/models/{id}: the model if the caller's key may use
// it, else the same 404 as for a model that does not exist (a key learns
// nothing about what it does not cover).
func (h *Handler) model(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	names, err := h.res.Models(r.Context())
	if err != nil {
		h.writeResolverError(w, r, id, err)
		return
	}
	if !slices.Contains(names, id) {
		h.writeResolverError(w, r, id, fmt.Errorf("%w: %q", ErrUnknownModel, id))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(Model{ID: id, Object: "model", OwnedBy: "ember"})
}

func (h *Handler) models(w http.ResponseWriter, r *http.Request) {
	names, err := h.res.Models(r.Context())
	if err != nil {
		h.writeResolverError(w, r, "", err)
		return
	}
	out := ModelList{Object: "list", Data: make([]Model, 0, len(names))}
	for _, n := range names {
		out.Data = append(out.Data, Model{ID: n, Object: "model", OwnedBy: "ember"})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}
