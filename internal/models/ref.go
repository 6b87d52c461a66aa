package models

import (
	"errors"
	"fmt"
	"strings"
)

// ErrBadRef is wrapped by errors about a reference that cannot be parsed.
var ErrBadRef = errors.New("models: bad reference")

// npmRef is a parsed "npm:<name>@<version>" reference.
type npmRef struct {
	Name    string // "@scope/name" or "name"
	Version string // exact version or dist-tag
}

func (r npmRef) String() string { return "npm:" + r.Name + "@" + r.Version }

// IsRemote reports whether ref names a registry package rather than a local
// path.
func IsRemote(ref string) bool { return strings.HasPrefix(ref, "npm:") }

// parseNPMRef parses "npm:@scope/name@1.2.3" or "npm:name@1.2.3". A version is
// required: an unpinned model would change under a deployed function.
func parseNPMRef(ref string) (npmRef, error) {
	s, ok := strings.CutPrefix(ref, "npm:")
	if !ok {
		return npmRef{}, fmt.Errorf("%w: %q: want npm:<name>@<version>", ErrBadRef, ref)
	}
	// The version separator is the last '@' that is not the scope's leading one.
	i := strings.LastIndexByte(s, '@')
	if i <= 0 {
		return npmRef{}, fmt.Errorf("%w: %q: missing @<version>", ErrBadRef, ref)
	}
	r := npmRef{Name: s[:i], Version: s[i+1:]}
	if r.Version == "" {
		return npmRef{}, fmt.Errorf("%w: %q: empty version", ErrBadRef, ref)
	}
	name := strings.TrimPrefix(r.Name, "@")
	parts := strings.Split(name, "/")
	scoped := strings.HasPrefix(r.Name, "@")
	if (scoped && len(parts) != 2) || (!scoped && len(parts) != 1) {
		return npmRef{}, fmt.Errorf("%w: %q: bad package name %q", ErrBadRef, ref, r.Name)
	}
	for _, p := range append(parts, r.Version) {
		if p == "" || p == "." || p == ".." || strings.ContainsAny(p, "/\\ \t\n?#%") {
			return npmRef{}, fmt.Errorf("%w: %q: bad component %q", ErrBadRef, ref, p)
		}
	}
	return r, nil
}

// pinned reports whether the version is an exact version (immutable on the
// registry), which is what makes caching the ref → digest mapping sound.
// Dist-tags such as "latest" move, so they are resolved on every pull.
func (r npmRef) pinned() bool {
	return r.Version[0] >= '0' && r.Version[0] <= '9'
}

// metadataPath is the registry path of the version document; npm wants the
// scope's slash escaped.
func (r npmRef) metadataPath() string {
	return "/" + strings.Replace(r.Name, "/", "%2f", 1) + "/" + r.Version
}
