package cog

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults of Files.
const (
	DefaultFilesBytes = 256 << 20
	DefaultFilesTTL   = time.Hour
)

// Files keeps the files Cog models return (data URLs in their output) so
// Ember serves them as links, GET <base>/v1/files/{id}, instead of
// inlining megabytes of base64 in every result, webhook and stream. Ids
// are 128 random bits: the link is the capability, as Replicate's
// delivery URLs are. Storage is bounded in bytes (oldest first out) and
// time (TTL); a file larger than the whole budget stays inline.
type Files struct {
	base     string // e.g. http://127.0.0.1:8080
	maxBytes int64
	ttl      time.Duration
	now      func() time.Time

	mu    sync.Mutex // guards the following
	items map[string]*storedFile
	order []string // ids, oldest first
	total int64
}

type storedFile struct {
	contentType string
	data        []byte
	expires     time.Time
}

// NewFiles returns a store whose links start with base (Ember's own
// address as its callers reach it).
func NewFiles(base string, maxBytes int64, ttl time.Duration) *Files {
	if maxBytes <= 0 {
		maxBytes = DefaultFilesBytes
	}
	if ttl <= 0 {
		ttl = DefaultFilesTTL
	}
	return &Files{base: strings.TrimSuffix(base, "/"), maxBytes: maxBytes, ttl: ttl, now: time.Now, items: map[string]*storedFile{}}
}

var errTooLarge = errors.New("file larger than the file store")

// Put stores data and returns its link.
func (f *Files) Put(contentType string, data []byte) (string, error) {
	if int64(len(data)) > f.maxBytes {
		return "", errTooLarge
	}
	var b [16]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	now := f.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expireLocked(now)
	for f.total+int64(len(data)) > f.maxBytes && len(f.order) > 0 {
		f.dropLocked()
	}
	f.items[id] = &storedFile{contentType: contentType, data: data, expires: now.Add(f.ttl)}
	f.order = append(f.order, id)
	f.total += int64(len(data))
	return f.base + "/v1/files/" + id, nil
}

// expireLocked drops files past their TTL (they are in expiry order,
// since every file gets the same TTL): f.mu must be held.
func (f *Files) expireLocked(now time.Time) {
	for len(f.order) > 0 {
		if it, ok := f.items[f.order[0]]; ok && now.Before(it.expires) {
			return
		}
		f.dropLocked()
	}
}

// dropLocked removes the oldest file: f.mu must be held.
func (f *Files) dropLocked() {
	id := f.order[0]
	f.order = f.order[1:]
	if it, ok := f.items[id]; ok {
		f.total -= int64(len(it.data))
		delete(f.items, id)
	}
}

// ServeHTTP serves GET /v1/files/{id}.
func (f *Files) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	f.mu.Lock()
	f.expireLocked(f.now())
	it, ok := f.items[id]
	f.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", "no such file (file outputs are kept for "+f.ttl.String()+", within a bounded store)", "")
		return
	}
	w.Header().Set("Content-Type", it.contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(it.data)))
	w.Header().Set("X-Content-Type-Options", "nosniff")
	// A model's output is not Ember's page: never let it run as one.
	w.Header().Set("Content-Security-Policy", "sandbox")
	w.Header().Set("Content-Disposition", "inline")
	w.Write(it.data)
}

// linkFiles replaces every data URL string in out (at any depth) with a
// link from files. out is returned unchanged when it holds none.
func linkFiles(files *Files, out json.RawMessage) (json.RawMessage, error) {
	if files == nil || !bytes.Contains(out, []byte(`"data:`)) {
		return out, nil
	}
	var v any
	if err := json.Unmarshal(out, &v); err != nil {
		return out, nil
	}
	v, err := linkValue(files, v)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

func linkValue(files *Files, v any) (any, error) {
	switch x := v.(type) {
	case string:
		if !strings.HasPrefix(x, "data:") {
			return x, nil
		}
		ct, data, err := decodeDataURL(x)
		if err != nil {
			return x, nil // not a file after all: leave the string be
		}
		link, err := files.Put(ct, data)
		if errors.Is(err, errTooLarge) {
			return x, nil
		}
		return link, err
	case []any:
		for i := range x {
			var err error
			if x[i], err = linkValue(files, x[i]); err != nil {
				return nil, err
			}
		}
	case map[string]any:
		for k := range x {
			var err error
			if x[k], err = linkValue(files, x[k]); err != nil {
				return nil, err
			}
		}
	}
	return v, nil
}

// decodeDataURL reads an RFC 2397 data URL ("data:image/png;base64,…").
func decodeDataURL(s string) (contentType string, data []byte, err error) {
	head, payload, ok := strings.Cut(strings.TrimPrefix(s, "data:"), ",")
	if !ok {
		return "", nil, fmt.Errorf("data URL without a comma")
	}
	b64 := strings.HasSuffix(head, ";base64")
	contentType = strings.TrimSuffix(head, ";base64")
	if contentType == "" {
		contentType = "text/plain;charset=US-ASCII"
	}
	if _, _, err := mime.ParseMediaType(contentType); err != nil {
		return "", nil, err
	}
	if b64 {
		data, err = base64.StdEncoding.DecodeString(payload)
		if err != nil {
			data, err = base64.RawStdEncoding.DecodeString(payload)
		}
		return contentType, data, err
	}
	p, err := url.PathUnescape(payload)
	return contentType, []byte(p), err
}
