package gateway

import (
	"context"
	"fmt"
	"net/http"
	"slices"

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
	if g.isRoute(model) {
		return g.callRoute(w, r, model, r.URL.Path)
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
	if g.routes != nil {
		names = append(names, g.routes.Names()...)
	}
	if g.authOn {
		p := auth.FromContext(ctx)
		names = slices.DeleteFunc(names, func(n string) bool { return !p.MayInvoke(n) })
	}
	slices.Sort(names)
	return names, nil
}

// newOpenAI builds the OpenAI-compatible handler over the gateway.
func (g *Gateway) newOpenAI() *openai.Handler {
	return openai.New(resolver{g}, openai.Options{Now: g.now, Logger: g.logger.With("component", "openai")})
}
