package usage

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/auth"
	"github.com/ember-run/ember/internal/metering"
)

// fakeRecords holds request records and answers as the stores do: fn's
// (all when empty) in [from, to), newest first, at most limit.
type fakeRecords struct {
	recs []metering.Request // newest first
	off  bool
	asks []string // the functions asked for, in order
	n    int      // calls
}

func (f *fakeRecords) Requests(_ context.Context, fns []string, from, to time.Time, limit int, _ time.Time) ([]metering.Request, error) {
	f.n++
	f.asks = append(f.asks, fns...)
	if f.off {
		return nil, metering.ErrNoRequestRecords
	}
	var out []metering.Request
	for _, fn := range fns {
		n := 0
		for _, r := range f.recs {
			if (fn == "" || r.Function == fn) && !r.At.Before(from) && r.At.Before(to) && n < limit {
				out = append(out, r)
				n++
			}
		}
	}
	return out, nil
}

func TestRequestsHandler(t *testing.T) {
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	var recs []metering.Request
	for i, fn := range []string{"mine", "other", "mine", "also", "mine", "other"} { // newest first, a minute apart
		recs = append(recs, metering.Request{Function: fn, Hardware: "cpu", At: now.Add(-time.Duration(i+1) * time.Minute),
			Status: 200, Duration: 1500 * time.Microsecond, Queue: 250 * time.Microsecond, Cold: i == 0, CostUSD: 0.001})
	}
	alice := &auth.Principal{KeyID: "a", Name: "alice", Scope: auth.ScopeInvoke, Functions: []string{"mine", "also", "mine"}}
	globber := &auth.Principal{KeyID: "g", Name: "globber", Scope: auth.ScopeInvoke, Functions: []string{"mi*"}}
	root := &auth.Principal{KeyID: "r", Name: "root", Scope: auth.ScopeAdmin, Functions: []string{"mine"}}
	tests := []struct {
		name   string
		p      *auth.Principal
		query  string
		off    bool
		status int
		want   []string // functions of the records, in order
		more   bool
		note   bool
	}{
		{"all", nil, "", false, 200, []string{"mine", "other", "mine", "also", "mine", "other"}, false, false},
		{"one function", nil, "?function=other", false, 200, []string{"other", "other"}, false, false},
		{"limit, and more", nil, "?limit=2", false, 200, []string{"mine", "other"}, true, false},
		{"limit equal to what there is", nil, "?limit=6", false, 200, []string{"mine", "other", "mine", "also", "mine", "other"}, false, false},
		{"window", nil, "?from=150s&to=30s", false, 200, []string{"mine", "other"}, false, false},
		{"limited key, all: its functions merged by time", alice, "", false, 200, []string{"mine", "mine", "also", "mine"}, false, false},
		{"limited key, merged then limited", alice, "?limit=3", false, 200, []string{"mine", "mine", "also"}, true, false},
		{"limited key, its function", alice, "?function=also", false, 200, []string{"also"}, false, false},
		{"limited key, another function", alice, "?function=other", false, 403, nil, false, false},
		{"pattern key, all", globber, "", false, 400, nil, false, false},
		{"pattern key, a function it covers", globber, "?function=mine", false, 200, []string{"mine", "mine", "mine"}, false, false},
		{"pattern key, another function", globber, "?function=other", false, 403, nil, false, false},
		{"admin key with a list sees all", root, "?limit=2", false, 200, []string{"mine", "other"}, true, false},
		{"records off", nil, "", true, 200, nil, false, true},
		{"limit 0", nil, "?limit=0", false, 400, nil, false, false},
		{"limit too large", nil, "?limit=1001", false, 400, nil, false, false},
		{"limit not a number", nil, "?limit=ten", false, 400, nil, false, false},
		{"to before from", nil, "?from=1h&to=2h", false, 400, nil, false, false},
		{"a time the stores cannot hold", nil, "?to=9999-12-31", false, 400, nil, false, false},
		{"bad function name", nil, "?function=Not_A_Name", false, 400, nil, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := &fakeRecords{recs: recs, off: tc.off}
			h := NewRequestsHandler(src)
			h.now = func() time.Time { return now }
			req := httptest.NewRequest("GET", "/v1/usage/requests"+tc.query, nil)
			if tc.p != nil {
				req = req.WithContext(auth.NewContext(req.Context(), tc.p))
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != tc.status {
				t.Fatalf("status %d %s, want %d", w.Code, w.Body, tc.status)
			}
			if tc.status == 200 && src.n != 1 {
				t.Errorf("%d reads of the meter, want 1 (each flushes)", src.n)
			}
			if tc.status != 200 {
				if len(src.asks) != 0 {
					t.Errorf("refused, yet read records of %q", src.asks)
				}
				if tc.status == 403 && strings.Contains(w.Body.String(), "other") {
					t.Errorf("refusal names the function: %s", w.Body)
				}
				return
			}
			var out api.UsageRequests
			if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range out.Requests {
				got = append(got, r.Function)
			}
			if !slices.Equal(got, tc.want) || out.More != tc.more || (len(out.Notes) > 0) != tc.note {
				t.Errorf("functions %v more %v notes %q, want %v more %v note %v", got, out.More, out.Notes, tc.want, tc.more, tc.note)
			}
			if len(out.Requests) > 0 {
				r := out.Requests[0]
				if r.DurationMs != 1.5 || r.QueueMs != 0.25 || r.Status != 200 || r.CostUSD != 0.001 || r.At.Location() != time.UTC {
					t.Errorf("first record = %+v, want 1.5 ms, 0.25 ms queued, 200, $0.001, in UTC", r)
				}
			}
		})
	}
}
