// Package archtest holds tests that keep Ember's package layout honest: the
// dependency rule in /work/shared/style.md, checked with `go list`.
package archtest

import (
	"encoding/json"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"maps"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/ember-run/ember"

// pure packages decide from their inputs; time and observations are passed in.
var pure = []string{"internal/autoscaler", "internal/route", "internal/cost", "internal/keepalive", "internal/cluster/share"}

// forbiddenInPure maps an import (direct or transitive) to why a pure
// package must not have it.
var forbiddenInPure = map[string]string{
	"net/http":     "the decider is pure; pass observations in",
	"net":          "the decider is pure; pass observations in (no network I/O)",
	"os/exec":      "the decider is pure; it starts no processes (driver/process does)",
	"database/sql": "the decider is pure; it holds no storage (store adapters do)",
}

// clockCalls are the time functions that read or wait on the real clock.
var clockCalls = map[string]bool{
	"Now": true, "Since": true, "Until": true, "Sleep": true, "After": true,
	"AfterFunc": true, "Tick": true, "NewTimer": true, "NewTicker": true,
}

type pkg struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	Imports    []string
	Deps       []string
	Error      *struct{ Err string }
}

// listInternal runs `go list -e` over internal/... once; Deps is what
// `go list -deps` would print for each package. -e keeps a teammate's
// half-written package from failing this test; its own build catches that.
func listInternal(t *testing.T) map[string]pkg {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("go command not found: %v", err)
	}
	cmd := exec.Command(gobin, "list", "-e", "-json=ImportPath,Dir,GoFiles,Imports,Deps,Error", module+"/internal/...")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string]pkg{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		pkgs[strings.TrimPrefix(p.ImportPath, module+"/")] = p
	}
	return pkgs
}

func TestPurePackages(t *testing.T) {
	pkgs := listInternal(t)
	for _, name := range pure {
		t.Run(name, func(t *testing.T) {
			p, ok := pkgs[name]
			if !ok || len(p.GoFiles) == 0 {
				t.Skipf("%s does not exist yet", name)
			}
			for _, dep := range p.Deps {
				if why, bad := forbiddenInPure[dep]; bad {
					t.Errorf("%s depends on %s%s: %s", name, dep, via(pkgs, p, dep), why)
				}
			}
			for _, call := range clockReads(t, p) {
				t.Errorf("%s: %s: pure packages never read the clock; take now as a parameter", name, call)
			}
		})
	}
}

// via names the direct import of p that pulls dep in, when p does not
// import it itself.
func via(pkgs map[string]pkg, p pkg, dep string) string {
	for _, imp := range p.Imports {
		if imp == dep {
			return ""
		}
	}
	for _, imp := range p.Imports {
		if d, ok := pkgs[strings.TrimPrefix(imp, module+"/")]; ok && slices.Contains(d.Deps, dep) {
			return " (via " + imp + ")"
		}
	}
	return " (transitively)"
}

// clockReads returns "file:line: time.X" for each clock-reading call in p's
// non-test files, following a renamed import of "time".
func clockReads(t *testing.T, p pkg) []string {
	t.Helper()
	var found []string
	fset := token.NewFileSet()
	for _, name := range p.GoFiles {
		f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Logf("skipping %s: %v", name, err) // mid-edit; the package's own build reports it
			continue
		}
		timeName := ""
		for _, imp := range f.Imports {
			if path, _ := strconv.Unquote(imp.Path.Value); path == "time" {
				timeName = "time"
				if imp.Name != nil {
					timeName = imp.Name.Name
				}
			}
		}
		if timeName == "" {
			continue
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); ok && x.Name == timeName && clockCalls[sel.Sel.Name] {
				pos := fset.Position(sel.Pos())
				found = append(found, filepath.Base(pos.Filename)+":"+strconv.Itoa(pos.Line)+": time."+sel.Sel.Name)
			}
			return true
		})
	}
	return found
}

// adapterRoot returns the adapter a package belongs to ("internal/store/sqlite",
// "internal/driver/process"), or "" for a package that is not an adapter.
// internal/driver itself is the contract, not an adapter.
func adapterRoot(path string) string {
	for _, family := range []string{"internal/store", "internal/driver/"} {
		rest, ok := strings.CutPrefix(path, family)
		if !ok {
			continue
		}
		if family == "internal/store" && rest != "" && rest[0] != '/' {
			continue // e.g. internal/storefront
		}
		rest = strings.TrimPrefix(rest, "/")
		first, _, _ := strings.Cut(rest, "/")
		if first == "" {
			return strings.TrimSuffix(family, "/")
		}
		return strings.TrimSuffix(family, "/") + "/" + first
	}
	return ""
}

// TestOnlyAppImportsAdapters checks that the composition root is the only
// package choosing implementations. Test files may still use adapters (real
// processes in an instance test); only non-test imports count.
func TestOnlyAppImportsAdapters(t *testing.T) {
	pkgs := listInternal(t)
	for _, name := range slices.Sorted(maps.Keys(pkgs)) {
		p := pkgs[name]
		if name == "internal/app" || strings.HasPrefix(name, "internal/app/") {
			continue
		}
		own := adapterRoot(name)
		for _, imp := range p.Imports {
			dep, ok := strings.CutPrefix(imp, module+"/")
			if !ok {
				continue
			}
			root := adapterRoot(dep)
			if root == "" || root == own {
				continue
			}
			t.Errorf("%s imports %s: only internal/app chooses implementations; declare the interface you need and let app pass %s in", name, dep, root)
		}
	}
}

func TestAdapterRoot(t *testing.T) {
	tests := []struct{ path, want string }{
		{"internal/driver", ""},
		{"internal/driver/process", "internal/driver/process"},
		{"internal/driver/process/probe", "internal/driver/process"},
		{"internal/store", "internal/store"},
		{"internal/store/sqlite", "internal/store/sqlite"},
		{"internal/store/sqlite/migrations", "internal/store/sqlite"},
		{"internal/storefront", ""},
		{"internal/autoscaler", ""},
	}
	for _, tt := range tests {
		if got := adapterRoot(tt.path); got != tt.want {
			t.Errorf("adapterRoot(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
}
