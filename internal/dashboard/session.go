package dashboard

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"
)

// Sessions are held in memory only: a restart signs everyone out. The id
// in the cookie is 256 random bits; the key it was opened with stays on
// the server, so each request can re-check it (revoked, expired).
const (
	maxSessions = 1024
	sessionTTL  = 12 * time.Hour
	cookieName  = "ember_session"
)

type session struct {
	id      string
	csrf    string
	key     string // the API key, to re-check on every request
	name    string // the key's name, shown in the header
	expires time.Time
}

type sessions struct {
	mu   sync.Mutex // guards m
	m    map[string]*session
	max  int
	ttl  time.Duration
	rand func([]byte) // crypto/rand.Read; replaced in tests only
}

func newSessions() *sessions {
	return &sessions{m: map[string]*session{}, max: maxSessions, ttl: sessionTTL,
		rand: func(b []byte) { _, _ = rand.Read(b) }}
}

func (s *sessions) token() string {
	b := make([]byte, 32)
	s.rand(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// open starts a session for key. At the bound, expired sessions go first,
// then the one closest to expiry: a flood of sign-ins cannot grow memory.
func (s *sessions) open(key, name string, now time.Time) *session {
	ss := &session{id: s.token(), csrf: s.token(), key: key, name: name, expires: now.Add(s.ttl)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= s.max {
		var oldest *session
		for id, o := range s.m {
			if !now.Before(o.expires) {
				delete(s.m, id)
				continue
			}
			if oldest == nil || o.expires.Before(oldest.expires) {
				oldest = o
			}
		}
		if len(s.m) >= s.max && oldest != nil {
			delete(s.m, oldest.id)
		}
	}
	s.m[ss.id] = ss
	return ss
}

// get returns the live session with id, or nil.
func (s *sessions) get(id string, now time.Time) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.m[id]
	if ss == nil {
		return nil
	}
	if !now.Before(ss.expires) {
		delete(s.m, id)
		return nil
	}
	return ss
}

func (s *sessions) close(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

// validCSRF compares a form's token with the session's in constant time.
func (ss *session) validCSRF(token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(ss.csrf)) == 1
}
