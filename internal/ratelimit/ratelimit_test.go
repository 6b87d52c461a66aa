package ratelimit

import (
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestTokenBucket(t *testing.T) {
	tests := []struct {
		name  string
		limit Limit
		// steps: wait, then expect allowed/retry-after
		steps []step
	}{
		{
			name:  "burst then refill",
			limit: Limit{Rate: 1, Burst: 2},
			steps: []step{
				{allowed: true, remaining: 1},
				{allowed: true, remaining: 0},
				{allowed: false, retry: time.Second},
				{wait: 500 * time.Millisecond, allowed: false, retry: 500 * time.Millisecond},
				{wait: 500 * time.Millisecond, allowed: true, remaining: 0},
			},
		},
		{
			name:  "slow rate gives long retry",
			limit: Limit{Rate: 0.5, Burst: 1},
			steps: []step{
				{allowed: true},
				{allowed: false, retry: 2 * time.Second},
				{wait: 2 * time.Second, allowed: true},
			},
		},
		{
			name:  "default burst is one second of rate",
			limit: Limit{Rate: 3},
			steps: []step{
				{allowed: true, remaining: 2}, {allowed: true, remaining: 1}, {allowed: true, remaining: 0},
				{allowed: false, retry: time.Second / 3},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l := New()
				for i, s := range tc.steps {
					time.Sleep(s.wait)
					d, release := l.Acquire(time.Now(), Spec{Key: "k", Name: "key", Limit: tc.limit})
					if d.Allowed != s.allowed {
						t.Fatalf("step %d: allowed = %v, want %v (%+v)", i, d.Allowed, s.allowed, d)
					}
					if s.allowed {
						release()
						if d.Remaining != s.remaining {
							t.Errorf("step %d: remaining = %d, want %d", i, d.Remaining, s.remaining)
						}
						continue
					}
					if release != nil {
						t.Errorf("step %d: refused with a release func", i)
					}
					if d.RetryAfter != s.retry || d.Reason != "rate" {
						t.Errorf("step %d: retry after %v (%s), want %v (rate)", i, d.RetryAfter, d.Reason, s.retry)
					}
				}
			})
		})
	}
}

type step struct {
	wait      time.Duration
	allowed   bool
	remaining int
	retry     time.Duration
}

func TestConcurrencyCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New()
		spec := Spec{Key: "fn:echo", Name: `function "echo"`, Limit: Limit{MaxConcurrency: 2}}
		_, r1 := l.Acquire(time.Now(), spec)
		_, r2 := l.Acquire(time.Now(), spec)
		d, r3 := l.Acquire(time.Now(), spec)
		if d.Allowed || r3 != nil || d.Reason != "concurrency" || d.RetryAfter != ConcurrencyRetryAfter {
			t.Fatalf("third request: %+v, want refused for concurrency", d)
		}
		r1()
		r1() // twice is harmless: must not free r2's slot
		if d, _ := l.Acquire(time.Now(), spec); !d.Allowed {
			t.Fatalf("after one release: %+v, want allowed", d)
		}
		if d, _ := l.Acquire(time.Now(), spec); d.Allowed {
			t.Fatalf("double release freed two slots: %+v", d)
		}
		r2()
	})
}

func TestAllSpecsMustAllow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New()
		key := Spec{Kind: KindAPIKey, Key: "a", Name: "a", Limit: Limit{Rate: 10, Burst: 10}}
		fn := Spec{Kind: KindFunction, Key: "echo", Name: "echo", Limit: Limit{Rate: 1, Burst: 1}}
		if d, _ := l.Acquire(time.Now(), key, fn); !d.Allowed || d.Kind != KindFunction || d.Name != fn.Name {
			t.Fatalf("first: %+v, want allowed, headers from the tighter function bucket", d)
		}
		d, _ := l.Acquire(time.Now(), key, fn)
		if d.Allowed || d.Kind != KindFunction || d.Name != fn.Name {
			t.Fatalf("second: %+v, want refused by the function", d)
		}
		if got, want := d.Err().Error(), `rate limit of function "echo" exceeded; retry in 1s`; got != want {
			t.Errorf("message %q, want %q", got, want)
		}
		// The function's refusal must not have cost the key a token: 9 left.
		if d, _ := l.Acquire(time.Now(), key); !d.Allowed || d.Remaining != 8 {
			t.Errorf("key alone: %+v, want allowed with 8 remaining", d)
		}
	})
}

func TestSweepKeepsState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New()
		busy := Spec{Key: "busy", Limit: Limit{Rate: 1, Burst: 1}}
		idle := Spec{Key: "idle", Limit: Limit{Rate: 1, Burst: 5}}
		l.Acquire(time.Now(), busy)
		l.Acquire(time.Now(), idle)
		time.Sleep(2 * time.Second) // busy refilled to 1 = full; idle at 5 = full
		l.Acquire(time.Now(), busy)
		if got, want := l.Sweep(time.Now()), 1; got != want {
			t.Fatalf("after sweep %d subjects, want %d (only the half-empty bucket)", got, want)
		}
		if d, _ := l.Acquire(time.Now(), busy); d.Allowed {
			t.Error("sweep forgot a spent bucket")
		}
	})
}

// clock is a settable time source for the HTTP test.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestMiddleware429(t *testing.T) {
	c := &clock{now: time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)}
	l := New()
	h := l.Middleware(c.Now, func(r *http.Request) (Spec, bool) {
		if r.URL.Path == "/free" {
			return Spec{}, false
		}
		return Spec{Key: "key:" + r.Header.Get("X-Key"), Name: `API key "` + r.Header.Get("X-Key") + `"`,
			Limit: Limit{Rate: 0.25, Burst: 2}}, true
	})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	srv := httptest.NewServer(h)
	defer srv.Close()

	get := func(path, key string) *http.Response {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set("X-Key", key)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	tests := []struct {
		name                             string
		path, key                        string
		advance                          time.Duration
		status                           int
		retryAfter, limit, remain, reset string
	}{
		{name: "first", path: "/x", key: "a", status: 200, limit: "2", remain: "1", reset: "4"},
		{name: "second", path: "/x", key: "a", status: 200, limit: "2", remain: "0", reset: "8"},
		{name: "refused", path: "/x", key: "a", status: 429, retryAfter: "4", limit: "2", remain: "0", reset: "8"},
		{name: "other key unaffected", path: "/x", key: "b", status: 200, limit: "2", remain: "1", reset: "4"},
		{name: "unlimited path", path: "/free", key: "a", status: 200},
		{name: "partly refilled", path: "/x", key: "a", advance: 3 * time.Second, status: 429, retryAfter: "1", limit: "2", remain: "0", reset: "5"},
		{name: "refilled", path: "/x", key: "a", advance: time.Second, status: 200, limit: "2", remain: "0", reset: "8"},
	}
	for _, tc := range tests {
		c.Add(tc.advance)
		resp := get(tc.path, tc.key)
		h := resp.Header
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
		for _, hv := range []struct{ name, got, want string }{
			{"Retry-After", h.Get("Retry-After"), tc.retryAfter},
			{HeaderLimit, h.Get(HeaderLimit), tc.limit},
			{HeaderRemaining, h.Get(HeaderRemaining), tc.remain},
			{HeaderReset, h.Get(HeaderReset), tc.reset},
		} {
			if hv.got != hv.want {
				t.Errorf("%s: %s = %q, want %q", tc.name, hv.name, hv.got, hv.want)
			}
		}
		if tc.status == 429 && !strings.Contains(resp.Header.Get("Content-Type"), "json") {
			t.Errorf("%s: 429 without a JSON body", tc.name)
		}
	}
}

// TestKindsKeepApart: an API key whose id equals a function's name has a
// bucket of its own; the kind is part of a subject's identity.
func TestKindsKeepApart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New()
		key := Spec{Kind: KindAPIKey, Key: "echo", Name: "ci", Limit: Limit{Rate: 1, Burst: 1}}
		fn := Spec{Kind: KindFunction, Key: "echo", Name: "echo", Limit: Limit{Rate: 1, Burst: 1}}
		if d, _ := l.Acquire(time.Now(), key); !d.Allowed {
			t.Fatalf("key: %+v, want allowed", d)
		}
		if d, _ := l.Acquire(time.Now(), fn); !d.Allowed {
			t.Fatalf("function of the same key string: %+v, want allowed from its own bucket", d)
		}
		l.Forget(KindAPIKey, "echo")
		if d, _ := l.Acquire(time.Now(), key); !d.Allowed {
			t.Errorf("key after Forget: %+v, want a fresh bucket", d)
		}
		if d, _ := l.Acquire(time.Now(), fn); d.Allowed {
			t.Errorf("function after the key's Forget: %+v, want its bucket kept (empty)", d)
		}
	})
}

// BenchmarkAcquire: the per-request cost of a key's and a function's
// limits, rates only (no slot to hold): 0 allocs/op.
func BenchmarkAcquire(b *testing.B) {
	l := New()
	specs := []Spec{
		{Kind: KindAPIKey, Key: "k1", Name: "ci", Limit: Limit{Rate: 1e9, Burst: 1e9}},
		{Kind: KindFunction, Key: "echo", Name: "echo", Limit: Limit{Rate: 1e9, Burst: 1e9}},
	}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		d, release := l.Acquire(now, specs...)
		if !d.Allowed {
			b.Fatal(d)
		}
		release()
	}
}

// TestCanonicalNames: SetHeaders keys the map by these; a name not in
// canonical form would be missed by Header.Get and duplicated by Set.
func TestCanonicalNames(t *testing.T) {
	for name, key := range map[string]string{HeaderLimit: canonicalLimit, HeaderRemaining: canonicalRemaining, HeaderReset: canonicalReset} {
		if http.CanonicalHeaderKey(name) != key {
			t.Errorf("canonical %s = %s, want %s", name, key, http.CanonicalHeaderKey(name))
		}
	}
	h := http.Header{}
	Decision{Allowed: true, Limit: 10, Remaining: 7, Reset: 300 * time.Millisecond}.SetHeaders(h)
	if h.Get(HeaderLimit) != "10" || h.Get(HeaderRemaining) != "7" || h.Get(HeaderReset) != "1" || len(h) != 3 {
		t.Errorf("headers = %v, want limit 10, remaining 7, reset 1", h)
	}
}

// TestSetHeadersValues: small values and large ones are formatted by
// different code (constants, or substrings of one string); both must say
// the same numbers.
func TestSetHeadersValues(t *testing.T) {
	for _, tc := range []struct {
		limit, remaining int
		reset            time.Duration
		want             [3]string
	}{
		{10, 7, 300 * time.Millisecond, [3]string{"10", "7", "1"}},
		{99, 99, 99 * time.Second, [3]string{"99", "99", "99"}},
		{100, 0, 0, [3]string{"100", "0", "0"}},
		{1000000, 999999, time.Second, [3]string{"1000000", "999999", "1"}},
		{5, 4, 100 * time.Second, [3]string{"5", "4", "100"}},
		{math.MaxInt, math.MaxInt - 1, 3 * time.Hour, [3]string{strconv.Itoa(math.MaxInt), strconv.Itoa(math.MaxInt - 1), "10800"}},
	} {
		h := http.Header{}
		Decision{Allowed: true, Limit: tc.limit, Remaining: tc.remaining, Reset: tc.reset}.SetHeaders(h)
		got := [3]string{h.Get(HeaderLimit), h.Get(HeaderRemaining), h.Get(HeaderReset)}
		if got != tc.want || len(h) != 3 {
			t.Errorf("limit %d remaining %d reset %s: headers %v, want %v", tc.limit, tc.remaining, tc.reset, h, tc.want)
		}
	}
}

func TestErrorMessage(t *testing.T) {
	d := Decision{Kind: KindAPIKey, Name: "ci", Reason: "rate", RetryAfter: 1500 * time.Millisecond}
	if got, want := d.Err().Error(), `rate limit of API key "ci" exceeded; retry in 2s`; got != want {
		t.Errorf("Err() = %q, want %q", got, want)
	}
	if (Decision{Allowed: true}).Err() != nil {
		t.Error("allowed decision has an error")
	}
}
