// Command ociimage writes a one-layer OCI image tarball from local files
// (typically one static binary) and optionally imports it into containerd,
// so the Kubernetes tests run locally built images without a registry:
//
//	go run ./scripts/ociimage -name ember-sim:dev -add /tmp/sim:/sim \
//	    -entrypoint /sim -o /tmp/sim.tar -containerd /tmp/ember-kube/containerd.sock
//
// The image has no base (like FROM scratch): only the files added. The
// tarball is deterministic (fixed times and owners), so the same files give
// the same image digest. -name is normalised as a registry client would
// ("ember-sim:dev" -> "docker.io/library/ember-sim:dev"): that is the name the
// kubelet asks containerd for when a Pod says image: ember-sim:dev.
package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// maxFile bounds one added file: the images are test binaries, not models.
const maxFile = 512 << 20

type file struct {
	src, dst string
	mode     int64
}

type files []file

func (f *files) String() string { return fmt.Sprint(*f) }

// Set parses SRC:DST[:MODE] (octal mode, default the source's).
func (f *files) Set(v string) error {
	parts := strings.Split(v, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || !path.IsAbs(parts[1]) {
		return fmt.Errorf("-add %q: want SRC:/ABS/DST[:MODE]", v)
	}
	fl := file{src: parts[0], dst: path.Clean(parts[1]), mode: -1}
	if len(parts) == 3 {
		m, err := strconv.ParseInt(parts[2], 8, 32)
		if err != nil {
			return fmt.Errorf("-add %q: mode: %w", v, err)
		}
		fl.mode = m
	}
	*f = append(*f, fl)
	return nil
}

type strs []string

func (s *strs) String() string     { return strings.Join(*s, ",") }
func (s *strs) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	var (
		add        files
		env, entry strs
		name       = flag.String("name", "", "image name, e.g. ember-sim:dev (required)")
		out        = flag.String("o", "", "output tarball (required)")
		workdir    = flag.String("workdir", "/", "working directory")
		sock       = flag.String("containerd", "", "containerd socket: import the tarball into namespace k8s.io with ctr")
	)
	flag.Var(&add, "add", "SRC:/DST[:MODE] file to put in the image (repeatable)")
	flag.Var(&env, "env", "NAME=value in the image's environment (repeatable)")
	flag.Var(&entry, "entrypoint", "entrypoint word (repeatable, in order)")
	flag.Parse()
	if *name == "" || *out == "" || len(add) == 0 {
		fmt.Fprintln(os.Stderr, "ociimage: -name, -o and at least one -add are required")
		flag.Usage()
		os.Exit(2)
	}
	ref := normalize(*name)
	img := image{ref: ref, files: add, env: env, entry: entry, workdir: *workdir}
	if err := writeFile(*out, img); err != nil {
		fmt.Fprintln(os.Stderr, "ociimage:", err)
		os.Exit(1)
	}
	if *sock != "" {
		start := time.Now()
		cmd := exec.Command("ctr", "--address", *sock, "-n", "k8s.io", "images", "import", "--no-unpack=false", *out)
		if b, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "ociimage: ctr import %s: %v\n%s", *out, err, b)
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "ociimage: imported %s in %v\n", ref, time.Since(start).Round(time.Millisecond))
	}
	fmt.Println(ref)
}

// normalize gives a reference's fully qualified form, as the kubelet and
// containerd's CRI resolve it.
func normalize(name string) string {
	first, _, hasSlash := strings.Cut(name, "/")
	switch {
	case !hasSlash:
		name = "docker.io/library/" + name
	case !strings.ContainsAny(first, ".:") && first != "localhost":
		name = "docker.io/" + name
	}
	if last := name[strings.LastIndex(name, "/")+1:]; !strings.Contains(last, ":") && !strings.Contains(name, "@") {
		name += ":latest"
	}
	return name
}

type image struct {
	ref        string
	files      []file
	env, entry []string
	workdir    string
}

func writeFile(out string, img image) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if err := write(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// epoch is every entry's time: a deterministic image.
var epoch = time.Unix(0, 0).UTC()

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    map[string]string `json:"platform,omitempty"`
}

func write(w io.Writer, img image) error {
	layer, err := layerTar(img.files)
	if err != nil {
		return err
	}
	layerDigest := digest(layer)
	config, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"created":      epoch.Format(time.RFC3339),
		"config": map[string]any{
			"Entrypoint": img.entry,
			"Env":        append([]string{"PATH=/"}, img.env...),
			"WorkingDir": img.workdir,
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layerDigest}},
	})
	if err != nil {
		return err
	}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        descriptor{MediaType: "application/vnd.oci.image.config.v1+json", Digest: digest(config), Size: int64(len(config))},
		"layers":        []descriptor{{MediaType: "application/vnd.oci.image.layer.v1.tar", Digest: layerDigest, Size: int64(len(layer))}},
	})
	if err != nil {
		return err
	}
	tag := img.ref[strings.LastIndex(img.ref, ":")+1:]
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"manifests": []descriptor{{
			MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: digest(manifest), Size: int64(len(manifest)),
			// containerd names the image from io.containerd.image.name.
			Annotations: map[string]string{"io.containerd.image.name": img.ref, "org.opencontainers.image.ref.name": tag},
			Platform:    map[string]string{"architecture": runtime.GOARCH, "os": "linux"},
		}},
	})
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	entries := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
		{blobPath(layerDigest), layer},
		{blobPath(digest(config)), config},
		{blobPath(digest(manifest)), manifest},
	}
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: epoch}); err != nil {
			return err
		}
	}
	for _, e := range entries {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: e.name, Mode: 0o644, Size: int64(len(e.data)), ModTime: epoch}); err != nil {
			return err
		}
		if _, err := tw.Write(e.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

func blobPath(d string) string { return "blobs/sha256/" + strings.TrimPrefix(d, "sha256:") }

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// layerTar is the image's one layer: the added files, with their parent
// directories and a /tmp, owned by root.
func layerTar(fs []file) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	mkdir := func(d string) error {
		var parents []string
		for p := d; p != "/" && p != "." && !dirs[p]; p = path.Dir(p) {
			parents = append(parents, p)
		}
		for i := len(parents) - 1; i >= 0; i-- {
			dirs[parents[i]] = true
			mode := int64(0o755)
			if parents[i] == "/tmp" {
				mode = 0o1777
			}
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: parents[i][1:] + "/", Mode: mode, ModTime: epoch}); err != nil {
				return err
			}
		}
		return nil
	}
	if err := mkdir("/tmp"); err != nil {
		return nil, err
	}
	for _, f := range fs {
		st, err := os.Stat(f.src)
		if err != nil {
			return nil, err
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("-add %s: not a regular file", f.src)
		}
		if st.Size() > maxFile {
			return nil, fmt.Errorf("-add %s: %d bytes, over the %d-byte limit", f.src, st.Size(), maxFile)
		}
		if err := mkdir(path.Dir(f.dst)); err != nil {
			return nil, err
		}
		mode := f.mode
		if mode < 0 {
			mode = int64(st.Mode().Perm())
		}
		data, err := os.ReadFile(f.src)
		if err != nil {
			return nil, err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.dst[1:], Mode: mode, Size: int64(len(data)), ModTime: epoch}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, errors.Join(errors.New("layer"), err)
	}
	return buf.Bytes(), nil
}
