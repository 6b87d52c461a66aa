package gateway

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"

	"github.com/ember-run/ember/internal/auth"
	"github.com/ember-run/ember/internal/gateway/openai"
)

// resolver lets the OpenAI-compatible endpoints reach functions and
// routes: a "model" is the name of either.
type resolver struct{ g *Gateway }

var _ openai.Resolver = resolver{}

// Forward sends r, path unchanged (/v1/chat/completions ...), to the
// function or route named model, through the same checks as /v1/run.
func (res resolver) Forward(w http.ResponseWriter, r *http.Request, model string) error {
	g := res.g
	if _, ok := g.instances.Function(model); ok {
		return g.invoke(w, r, model, r.URL.Path, true)
	}
	if lr := g.routeTab.get(model); lr != nil {
		return g.callRoute(w, r, lr, r.URL.Path)
	}
	// The same 403 for a model the key does not cover, whether it exists
	// or not.
	if err := g.allowKey(r, model); err != nil {
		return err
	}
	return fmt.Errorf("%w: %q", openai.ErrUnknownModel, model)
}

// Models lists the functions and routes the caller's key may invoke.
func (res resolver) Models(ctx context.Context) ([]string, error) {
	g := res.g
	var names []string
	for _, f := range g.reg.List() {
		names = append(names, f.Name)
	}
	names = append(names, g.routeTab.names()...)
	if g.authOn {
		p := auth.FromContext(ctx)
		names = slices.DeleteFunc(names, func(n string) bool { return !p.MayInvoke(n) })
	}
	slices.Sort(names)
	return names, nil
}

// newOpenAI builds the OpenAI-compatible handler over the gateway, with the
// gateway's error classification (statuses, Retry-After, RateLimit-*) in
// OpenAI's error shape.
func (g *Gateway) newOpenAI() *openai.Handler {
	return openai.New(resolver{g}, openai.Options{
		Classify: func(err error) (int, string, string) {
			if errors.Is(err, openai.ErrUnknownModel) {
				return 0, "", "" // the handler's own 404 model_not_found
			}
			he := classify(err, g.now())
			return he.Status, he.Code, he.Msg
		},
		Header: func(err error, h http.Header) {
			he := classify(err, g.now())
			if he.limit != nil {
				he.limit.SetHeaders(h)
			}
			if he.RetryAfter > 0 && h.Get("Retry-After") == "" {
				h.Set("Retry-After", strconv.Itoa(int(math.Ceil(he.RetryAfter.Seconds()))))
			}
		},
		Logger: g.logger.With("component", "openai"),
	})
}
