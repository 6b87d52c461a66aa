// Package dashboard is Ember's web UI at /ui: server-rendered pages with
// SVG charts, a cookie session signed in with an API key, and one SSE
// stream per page for live updates. Its assets are embedded; it keeps a
// bounded history of what it observed in memory.
package dashboard
