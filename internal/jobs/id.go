package jobs

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"strings"
	"sync"
	"time"
)

// idEncoding is base32hex in lower case: its alphabet is in ASCII order, so
// IDs sort by their time prefix and the list can page by ID.
var idEncoding = base32.NewEncoding(strings.ToLower("0123456789ABCDEFGHIJKLMNOPQRSTUV")).WithPadding(base32.NoPadding)

// idGen makes 26-character IDs: 8 bytes of strictly increasing Unix
// nanoseconds then 8 random bytes.
type idGen struct {
	mu   sync.Mutex // guards last
	last int64
}

func (g *idGen) next(now time.Time) string {
	g.mu.Lock()
	t := now.UnixNano()
	if t <= g.last {
		t = g.last + 1
	}
	g.last = t
	g.mu.Unlock()
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(t))
	_, _ = rand.Read(b[8:]) // crypto/rand.Read never fails
	return idEncoding.EncodeToString(b[:])
}

// validID reports whether id could be an ID (cheap guard for cursors).
func validID(id string) bool {
	if len(id) != 26 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'v') {
			return false
		}
	}
	return true
}
