package gateway

import (
	"io"
	"net/http"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/errkind"
)

// The route API and routed calls, served by the routing service
// (internal/routing); the gateway adds the checks of the caller.

func (g *Gateway) routesEnabled() error {
	if g.routes == nil {
		return errkind.New(errkind.NotFound, "routes_disabled", "routes are not enabled on this server")
	}
	return nil
}

// applyRoute is POST /v1/routes: create or replace a route from YAML or JSON.
func (g *Gateway) applyRoute(w http.ResponseWriter, r *http.Request) error {
	if err := g.routesEnabled(); err != nil {
		return err
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		return err
	}
	rec, created, err := g.routes.Apply(r.Context(), body)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, api.RouteApplyResult{Route: rec, Created: created})
	return nil
}

// listRoutes is GET /v1/routes, each with its current choice.
func (g *Gateway) listRoutes(w http.ResponseWriter, r *http.Request) error {
	out := []api.Route{}
	if g.routes != nil {
		out = g.routes.List()
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (g *Gateway) getRoute(w http.ResponseWriter, r *http.Request) error {
	if err := g.routesEnabled(); err != nil {
		return err
	}
	rec, err := g.routes.Get(r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rec)
	return nil
}

func (g *Gateway) deleteRoute(w http.ResponseWriter, r *http.Request) error {
	if err := g.routesEnabled(); err != nil {
		return err
	}
	if err := g.routes.Delete(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// splitRoute finds the route named at the start of rest.
func (g *Gateway) splitRoute(rest string) (name, path string, ok bool) {
	if g.routes == nil {
		return "", "", false
	}
	return g.routes.Split(rest)
}

// isRoute reports whether a route is named name.
func (g *Gateway) isRoute(name string) bool { return g.routes != nil && g.routes.Has(name) }

// callRoute calls route name at path. The key must cover the route; the
// targets are the route's business, so a function target is invoked
// without checking the key against it (its own rate limit still applies).
func (g *Gateway) callRoute(w http.ResponseWriter, r *http.Request, name, path string) error {
	if err := g.allowKey(r, name); err != nil {
		return err
	}
	return g.routes.Call(w, r, name, path, func(w http.ResponseWriter, r *http.Request, fn, path string) error {
		return g.invoke(w, r, fn, path, false)
	})
}
