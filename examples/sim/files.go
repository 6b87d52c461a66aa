package main

import (
	"io"
	"net/http"
	"os"
	"time"
)

// file reads (GET) or writes (PUT, the body) the file at ?path=, so tests
// can see what a container's volumes hold and whether they are writable.
// An error answers 500 with the OS's words ("read-only file system").
// ?sleep_ms= holds the request first (to spread calls over instances); the
// Sim-Instance header says which instance answered.
func (s *server) file(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Query().Get("path")
	w.Header().Set("Sim-Instance", s.instance)
	if !sleepCtx(r.Context(), time.Duration(queryInt(r, "sleep_ms", 0))*time.Millisecond) {
		return
	}
	switch r.Method {
	case http.MethodGet:
		f, err := os.Open(path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer f.Close()
		io.Copy(w, io.LimitReader(f, 1<<20))
	case http.MethodPut:
		if err := os.WriteFile(path, mustRead(r.Body), 0o644); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, "GET or PUT", http.StatusMethodNotAllowed)
	}
}

func mustRead(r io.Reader) []byte {
	b, _ := io.ReadAll(io.LimitReader(r, 1<<20))
	return b
}
