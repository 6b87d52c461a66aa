package models

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
)

// DefaultRegistry is the public npm registry.
const DefaultRegistry = "https://registry.npmjs.org"

// ErrIntegrity is wrapped by errors about a download whose hash does not
// match the registry's published integrity.
var ErrIntegrity = errors.New("models: integrity mismatch")

// Client pulls packages from an npm registry. The zero value uses the public
// registry and http.DefaultClient.
type Client struct {
	// Registry is the registry base URL (default DefaultRegistry).
	Registry string
	// HTTP is the client used for metadata and tarballs (default
	// http.DefaultClient).
	HTTP *http.Client
}

// Pull makes the package named by ref available under cacheDir and returns the
// directory holding its files, using the public registry. See Client.Pull.
func Pull(ctx context.Context, ref, cacheDir string, progress io.Writer) (string, error) {
	return (&Client{}).Pull(ctx, ref, cacheDir, progress)
}

// Pull makes the package named by ref available under cacheDir and returns the
// directory holding its files (the tarball's top-level "package/" folder is
// stripped).
//
// ref is "npm:@scope/name@version" or "npm:name@version"; anything else is
// taken as a local directory, which is returned as an absolute path and never
// copied. Downloads are verified against the registry's sha512 integrity and
// unpacked into <cacheDir>/blobs/sha512-<hex>/ with an atomic rename, so a
// second pull of a pinned version touches neither network nor disk beyond two
// stats. progress (may be nil) receives a progress bar when it is a terminal
// and one line per step otherwise.
func (c *Client) Pull(ctx context.Context, ref, cacheDir string, progress io.Writer) (string, error) {
	return c.pull(ctx, ref, cacheDir, progress, subset{})
}

// subset names the part of a package to unpack: its top-level files and
// those under Dir (a slash path inside the package), cached apart under
// the blob's name plus "-"+Slug ([a-z0-9-]). The zero subset is the whole
// package. The tarball is verified whole either way.
type subset struct {
	Dir, Slug string
}

func (c *Client) pull(ctx context.Context, ref, cacheDir string, progress io.Writer, only subset) (string, error) {
	if !IsRemote(ref) {
		return localDir(ref)
	}
	r, err := parseNPMRef(ref)
	if err != nil {
		return "", err
	}
	if cacheDir == "" {
		return "", errors.New("models: empty cache dir")
	}
	if progress == nil {
		progress = io.Discard
	}
	refFile := filepath.Join(cacheDir, "refs", "npm", filepath.FromSlash(r.Name), r.Version)
	suffix := ""
	if only.Dir != "" {
		suffix = "-" + only.Slug
		refFile += "@" + only.Slug
	}
	if r.pinned() {
		if dir, ok := cachedRef(cacheDir, refFile); ok {
			return dir, nil
		}
	}

	meta, err := c.metadata(ctx, r)
	if err != nil {
		return "", err
	}
	want, err := parseIntegrity(meta.Dist.Integrity)
	if err != nil {
		return "", fmt.Errorf("models: %s: %w", r, err)
	}
	digest := "sha512-" + hex.EncodeToString(want) + suffix
	dir := filepath.Join(cacheDir, "blobs", digest)
	if !isDir(dir) {
		if err := c.fetch(ctx, r, meta.Dist.Tarball, want, cacheDir, dir, only.Dir, progress); err != nil {
			return "", err
		}
	}
	if r.pinned() {
		if err := writeFileAtomic(refFile, []byte(digest+"\n")); err != nil {
			return "", err
		}
	}
	return dir, nil
}

func localDir(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("models: %w", err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("models: local model: %w", err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("models: local model %s: not a directory", abs)
	}
	return abs, nil
}

// cachedRef resolves a pinned ref from the ref index when its blob is present.
func cachedRef(cacheDir, refFile string) (string, bool) {
	b, err := os.ReadFile(refFile)
	if err != nil {
		return "", false
	}
	digest := strings.TrimSpace(string(b))
	if !strings.HasPrefix(digest, "sha512-") || strings.ContainsAny(digest, `/\.`) {
		return "", false
	}
	dir := filepath.Join(cacheDir, "blobs", digest)
	return dir, isDir(dir)
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// versionDoc is the part of the registry's version document we use.
type versionDoc struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Dist    struct {
		Integrity string `json:"integrity"`
		Tarball   string `json:"tarball"`
	} `json:"dist"`
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

func (c *Client) metadata(ctx context.Context, r npmRef) (versionDoc, error) {
	base := c.Registry
	if base == "" {
		base = DefaultRegistry
	}
	u := strings.TrimRight(base, "/") + r.metadataPath()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return versionDoc{}, fmt.Errorf("models: %s: %w", r, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return versionDoc{}, fmt.Errorf("models: %s: registry: %w", r, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return versionDoc{}, fmt.Errorf("models: %s: registry: GET %s: %s", r, u, resp.Status)
	}
	var doc versionDoc
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&doc); err != nil {
		return versionDoc{}, fmt.Errorf("models: %s: registry metadata: %w", r, err)
	}
	if doc.Dist.Tarball == "" {
		return versionDoc{}, fmt.Errorf("models: %s: registry metadata has no dist.tarball", r)
	}
	return doc, nil
}

// parseIntegrity extracts the sha512 digest from an SRI string such as
// "sha512-<base64>" (several space-separated hashes are allowed; sha1-only
// packages are refused because sha1 no longer proves anything).
func parseIntegrity(sri string) ([]byte, error) {
	for _, f := range strings.Fields(sri) {
		b64, ok := strings.CutPrefix(f, "sha512-")
		if !ok {
			continue
		}
		if i := strings.IndexByte(b64, '?'); i >= 0 { // SRI options
			b64 = b64[:i]
		}
		sum, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(sum) != sha512.Size {
			return nil, fmt.Errorf("%w: malformed integrity %q", ErrIntegrity, f)
		}
		return sum, nil
	}
	return nil, fmt.Errorf("%w: no sha512 integrity published (got %q)", ErrIntegrity, sri)
}

// fetch downloads the tarball, verifies it and unpacks it into dir.
func (c *Client) fetch(ctx context.Context, r npmRef, tarball string, want []byte, cacheDir, dir, keep string, progress io.Writer) error {
	// Everything partial lives in one work dir under <cache>/tmp, flocked
	// while this pull runs: CleanPartial removes only work dirs nobody
	// holds (left by a process that died), even in a cache shared by
	// several servers.
	tmpRoot := filepath.Join(cacheDir, "tmp")
	if err := os.MkdirAll(tmpRoot, 0o700); err != nil {
		return fmt.Errorf("models: %w", err)
	}
	work, err := os.MkdirTemp(tmpRoot, "pull-")
	if err != nil {
		return fmt.Errorf("models: %w", err)
	}
	defer os.RemoveAll(work)
	held, err := lockPath(work)
	if err != nil {
		return fmt.Errorf("models: %w", err)
	}
	defer held.Close()
	f, err := os.OpenFile(filepath.Join(work, "download.tgz"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("models: %w", err)
	}
	defer f.Close()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, tarball, nil)
	if err != nil {
		return fmt.Errorf("models: %s: %w", r, err)
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return fmt.Errorf("models: %s: download: %w", r, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("models: %s: download %s: %s", r, tarball, resp.Status)
	}

	start := time.Now()
	h := sha512.New()
	bar := newBar(progress, resp.ContentLength, r.String())
	n, err := io.Copy(io.MultiWriter(f, h, bar), resp.Body)
	_ = bar.Finish()
	if err != nil {
		return fmt.Errorf("models: %s: download: %w", r, err)
	}
	got := h.Sum(nil)
	if string(got) != string(want) {
		return fmt.Errorf("%w: %s: %s: got sha512-%s, registry says sha512-%s", ErrIntegrity, r, tarball,
			base64.StdEncoding.EncodeToString(got), base64.StdEncoding.EncodeToString(want))
	}
	if !isTerminal(progress) {
		fmt.Fprintf(progress, "pulled %s: %.1f MB in %s, integrity ok\n", r, float64(n)/1e6, time.Since(start).Round(time.Millisecond))
	}

	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("models: %w", err)
	}
	stage := filepath.Join(work, "unpack")
	if err := os.Mkdir(stage, 0o755); err != nil {
		return fmt.Errorf("models: %w", err)
	}
	if err := untar(ctx, f, stage, keep); err != nil {
		return fmt.Errorf("models: %s: unpack: %w", r, err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return fmt.Errorf("models: %w", err)
	}
	// The rename publishes the blob atomically: readers see all of it or none.
	if err := os.Rename(stage, dir); err != nil {
		if isDir(dir) { // a concurrent pull won the race; its copy is identical
			return nil
		}
		return fmt.Errorf("models: %w", err)
	}
	return nil
}

// newBar returns a byte progress bar drawn on w, or an invisible one when w is
// not a terminal (logs and CI output should not fill with carriage returns).
func newBar(w io.Writer, size int64, desc string) *progressbar.ProgressBar {
	if size <= 0 {
		size = -1 // unknown length: spinner
	}
	return progressbar.NewOptions64(size,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetVisibility(isTerminal(w)),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowBytes(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionShowCount(),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
	)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// untar unpacks a gzipped npm tarball into dst, stripping the top-level
// folder ("package/" by convention). Only regular files and directories are
// written; links and entries escaping dst are refused, since a registry
// tarball is untrusted input until it is unpacked.
//
// With keep set, only top-level files and those under keep/ are written.
func untar(ctx context.Context, r io.Reader, dst, keep string) error {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return err
	}
	defer gz.Close()
	tr := tar.NewReader(gz)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean(strings.TrimPrefix(hdr.Name, "./"))
		if !filepath.IsLocal(filepath.FromSlash(name)) {
			return fmt.Errorf("entry %q escapes the package", hdr.Name)
		}
		_, rest, ok := strings.Cut(name, "/")
		if !ok {
			continue // the top-level folder itself, or a stray top-level file
		}
		if !filepath.IsLocal(rest) {
			return fmt.Errorf("entry %q escapes the package", hdr.Name)
		}
		if keep != "" && strings.Contains(rest, "/") && !strings.HasPrefix(rest, keep+"/") {
			continue // another platform's files; tr.Next skips their bytes
		}
		if keep != "" && hdr.Typeflag == tar.TypeDir {
			continue // made for the files kept
		}
		target := filepath.Join(dst, filepath.FromSlash(rest))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			mode := os.FileMode(0o644)
			if hdr.Mode&0o111 != 0 {
				mode = 0o755
			}
			out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			// Symlinks, devices and the like are not needed by model or
			// runtime packages and are the usual tar-slip vectors.
		}
	}
}

// writeFileAtomic writes b to name via a temporary file and a rename.
func writeFileAtomic(name string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
		return fmt.Errorf("models: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(name), ".tmp-*")
	if err != nil {
		return fmt.Errorf("models: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("models: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("models: %w", err)
	}
	if err := os.Rename(f.Name(), name); err != nil {
		return fmt.Errorf("models: %w", err)
	}
	return nil
}
