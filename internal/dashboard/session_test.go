package dashboard

import (
	"testing"
	"time"
)

func TestSessionsAreBoundedAndExpire(t *testing.T) {
	s := newSessions()
	s.max, s.ttl = 3, time.Hour
	t0 := time.Unix(1000, 0)
	first := s.open("k", "n", t0)
	for i := range 5 {
		s.open("k", "n", t0.Add(time.Duration(i+1)*time.Second))
	}
	if got := len(s.m); got != 3 {
		t.Errorf("%d sessions, want the bound 3", got)
	}
	if s.get(first.id, t0.Add(time.Minute)) != nil {
		t.Error("the oldest session survived past the bound")
	}
	last := s.open("k", "n", t0.Add(time.Minute))
	if s.get(last.id, t0.Add(time.Minute+time.Hour)) != nil {
		t.Error("a session outlived its expiry")
	}
	if last.validCSRF("") || last.validCSRF(last.csrf+"x") || !last.validCSRF(last.csrf) {
		t.Error("csrf check")
	}
	if last.id == last.csrf || len(last.id) != 43 {
		t.Errorf("id %q: want 32 random bytes, distinct from the csrf token", last.id)
	}
}
