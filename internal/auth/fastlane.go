package auth

import (
	"net/http"
	"net/url"
	"strings"
)

// The fast lane: ServeMux's routing tree costs about eleven allocations and
// a walk of every method's subtree per request to /v1/run/… (the profile in
// bench/README.md, "sixth round"), the path every inference call takes. A
// route that is a literal prefix ending in one {name...} wildcard, with no
// method and no host, and that no other route can also match below that
// prefix, is found by a prefix compare instead. The lane answers only where
// the mux would give the same handler and the same path value; anything
// else (a path the mux would redirect, CONNECT, a table with host patterns)
// goes to the mux as before. TestFastLaneAgreesWithMux checks the two
// against each other.

// fastRoute is one route the lane serves.
type fastRoute struct {
	prefix   string // "/v1/run/": the pattern up to its wildcard
	wildcard string // "rest"
	pattern  string // "/v1/run/{rest...}", for r.Pattern
	h        http.Handler
	right    Right       // the route's right, checked before rest
	rest     RestHandler // the unguarded handler, when it takes the value as an argument
}

// RestHandler is a handler for a pattern that ends in a {name...}
// wildcard and can take the wildcard's value as an argument. The fast
// lane then passes the value instead of setting it on the request:
// Request.SetPathValue on a request no ServeMux matched makes a map, on
// every call. Served through the mux, ServeHTTP reads r.PathValue.
type RestHandler interface {
	http.Handler
	ServeRest(w http.ResponseWriter, r *http.Request, rest string)
}

// patternParts splits a ServeMux pattern into method, host and path.
func patternParts(pattern string) (method, host, path string) {
	if m, rest, ok := strings.Cut(pattern, " "); ok {
		method, pattern = m, strings.TrimLeft(rest, " \t")
	}
	i := strings.IndexByte(pattern, '/')
	if i < 0 {
		return method, pattern, ""
	}
	return method, pattern[:i], pattern[i:]
}

// fastCandidate reports whether pattern can take the lane on its own
// terms: "/lit/…/lit/{name...}" with no method, no host, no escapes.
func fastCandidate(pattern string) (prefix, wildcard string, ok bool) {
	method, host, path := patternParts(pattern)
	if method != "" || host != "" || path == "" || strings.ContainsAny(path, "%") {
		return "", "", false
	}
	i := strings.LastIndexByte(path, '/')
	last := path[i+1:]
	if !strings.HasPrefix(last, "{") || !strings.HasSuffix(last, "...}") {
		return "", "", false
	}
	prefix = path[:i+1]
	if prefix == "/" || strings.ContainsAny(prefix, "{}") || !cleanPath(prefix) {
		return "", "", false
	}
	return prefix, strings.TrimSuffix(strings.TrimPrefix(last, "{"), "...}"), true
}

// mayOverlap reports whether other (a ServeMux pattern) could match some
// path that starts with prefix, other than by being a literal subtree
// ("/", "/v1/") that prefix lies under, which the mux ranks below. It errs
// towards true: a true only sends that prefix's requests to the mux.
func mayOverlap(other, prefix string) bool {
	_, host, path := patternParts(other)
	if host != "" {
		return true
	}
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	want := strings.Split(strings.TrimSuffix(strings.TrimPrefix(prefix, "/"), "/"), "/")
	literal := true // every segment so far equal to prefix's
	for i, p := range want {
		if i >= len(segs) {
			return false // other ends above prefix, with no trailing slash
		}
		s := segs[i]
		switch {
		case strings.Contains(s, "%"):
			// ServeMux unescapes a pattern's literals ("r%75n" is
			// "run"); rather than do the same, give the prefix up.
			return true
		case s == "":
			// A trailing slash: a subtree. Under literal segments only,
			// it is less specific than prefix's route.
			return !literal
		case s == "{$}":
			return false // matches only a path that ends here
		case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "...}"):
			return true
		case strings.HasPrefix(s, "{"):
			literal = false
		case s != p:
			return false
		}
	}
	// other reaches below prefix (or is prefix's own subtree): it may match.
	return len(segs) > len(want)
}

// cleanPath reports whether ServeMux would serve path as it is, without
// redirecting to a cleaned form: no empty, "." or ".." segment but a
// trailing slash.
func cleanPath(path string) bool {
	if !strings.HasPrefix(path, "/") {
		return false
	}
	for rest := path[1:]; ; {
		seg, tail, more := strings.Cut(rest, "/")
		if seg == "." || seg == ".." || (seg == "" && more) {
			return false
		}
		if !more {
			return true
		}
		rest = tail
	}
}

// rebuildFast recomputes the lane from the table's rows. Register calls it,
// before serving.
func (t *Table) rebuildFast() {
	t.fast = t.fast[:0]
	for _, r := range t.rows {
		if _, host, _ := patternParts(r.Pattern); host != "" {
			t.fast = nil // host patterns change how the mux matches everything
			return
		}
	}
	for _, r := range t.rows {
		prefix, wildcard, ok := fastCandidate(r.Pattern)
		if !ok {
			continue
		}
		clash := false
		for _, o := range t.rows {
			if o.Pattern != r.Pattern && mayOverlap(o.Pattern, prefix) {
				clash = true
				break
			}
		}
		if !clash {
			t.fast = append(t.fast, fastRoute{prefix: prefix, wildcard: wildcard, pattern: r.Pattern, h: t.handlers[r.Pattern],
				right: r.Right, rest: t.rest[r.Pattern]})
		}
	}
}

// fastServe serves r through the lane and reports true, or reports false
// for the mux to serve it.
func (t *Table) fastServe(w http.ResponseWriter, r *http.Request) bool {
	if len(t.fast) == 0 || r.Method == http.MethodConnect {
		return false
	}
	path := r.URL.EscapedPath()
	for i := range t.fast {
		f := &t.fast[i]
		if !strings.HasPrefix(path, f.prefix) || !cleanPath(path) {
			continue
		}
		rest := path[len(f.prefix):]
		if v, err := url.PathUnescape(rest); err == nil {
			rest = v // as ServeMux unescapes a {name...} value
		}
		r.Pattern = f.pattern
		if f.rest != nil {
			// The guard's check, then the handler with the value.
			if err := t.allow(r.Context(), f.right); err != nil {
				t.deny(w, r, err)
				return true
			}
			f.rest.ServeRest(w, r, rest)
			return true
		}
		r.SetPathValue(f.wildcard, rest)
		f.h.ServeHTTP(w, r)
		return true
	}
	return false
}

// FastRoutes lists the patterns the table serves without the mux's tree
// walk, for tests that keep the hot path on the lane.
func (t *Table) FastRoutes() []string {
	out := make([]string, len(t.fast))
	for i, f := range t.fast {
		out[i] = f.pattern
	}
	return out
}
