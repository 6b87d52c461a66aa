package auth

import (
	"math"
	"strings"
	"testing"
)

// FuzzParseID checks that whatever a caller sends as a bearer token, the
// id parser never panics and accepts only the documented shape.
func FuzzParseID(f *testing.F) {
	f.Add("ember_0123456789abcdef0123456789abcdef_secret")
	f.Add("ember__")
	f.Add("Bearer ember_x_y")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		id, ok := ParseID(s)
		if !ok {
			if id != "" {
				t.Fatalf("ParseID(%q) = %q, false: want an empty id when refused", s, id)
			}
			return
		}
		if len(id) != 2*idBytes || !strings.HasPrefix(s, KeyPrefix+id+"_") {
			t.Fatalf("ParseID(%q) = %q: not the id part of the key", s, id)
		}
		if strings.Trim(id, "0123456789abcdefABCDEF") != "" {
			t.Fatalf("ParseID(%q) = %q: not hex", s, id)
		}
	})
}

// FuzzParseRate checks that an accepted rate is a finite, non-negative
// number of requests per second: a limiter fed NaN or +Inf limits nothing.
func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"20/s", "600/m", "1000/h", "0", "", "1.5", "NaN", "Inf/s", "-1/s", "1e400"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRate(s)
		if err != nil {
			return
		}
		if math.IsNaN(r) || math.IsInf(r, 0) || r < 0 {
			t.Fatalf("ParseRate(%q) = %v, nil: want a finite rate ≥ 0 or an error", s, r)
		}
	})
}

// FuzzParseTTL checks that an accepted lifetime is positive (or 0 for
// never): an overflowed duration would make a key expire in the past or
// live forever.
func FuzzParseTTL(f *testing.F) {
	for _, s := range []string{"30d", "12h", "90m", "", "1e300d", "0.0000000001d", "-1h", "NaNd"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseTTL(s)
		if err != nil {
			return
		}
		if d < 0 || (d == 0 && strings.TrimSpace(s) != "") {
			t.Fatalf("ParseTTL(%q) = %v, nil: want a positive lifetime or an error", s, d)
		}
	})
}
