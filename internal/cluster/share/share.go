// Package share splits each instance's concurrency among the live gateways
// (Knative's throttler capacity split) and keeps the split safe while the
// gateway set changes: a gateway is granted more only once what the others
// may still hold leaves room, so the sum of what gateways may have in flight
// on one instance never exceeds its concurrency. Pure: no I/O, no clock.
package share

// Target is gateway i's share (of n) of an endpoint with concurrency c at
// position j of the function's endpoint list: c/n, plus one for c%n of the
// gateways. The extra ones rotate with j, so when c < n every gateway still
// gets endpoints of its own. The targets of one endpoint sum to c exactly.
// c == 0 (unlimited) gives 0: the caller does not split unlimited endpoints.
func Target(c, n, i, j int) int {
	if c <= 0 || n <= 0 || i < 0 || i >= n || j < 0 {
		return 0
	}
	s := c / n
	if (i-j%n+n)%n < c%n {
		s++
	}
	return s
}

// Endpoint is what the ledger needs of an instance.
type Endpoint struct {
	ID          string
	Concurrency int // 0: unlimited, never split
}

// Ledger remembers, per gateway and endpoint, what each gateway may hold:
// the share last sent to it, the one it last confirmed applying (it may
// still use that one until it confirms the newer), and the in flight it
// reported (requests begun under an older, larger share finish normally).
// Not safe for concurrent use; the caller locks.
type Ledger struct {
	gws map[string]*gateway
}

type gateway struct {
	sent        map[string]int // endpoint → latest share sent
	sentVersion uint64
	prev        map[string]int // shares it may still apply until it confirms sentVersion
	inFlight    map[string]int
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger { return &Ledger{gws: make(map[string]*gateway)} }

func (l *Ledger) gw(id string) *gateway {
	g := l.gws[id]
	if g == nil {
		g = &gateway{sent: map[string]int{}, prev: map[string]int{}, inFlight: map[string]int{}}
		l.gws[id] = g
	}
	return g
}

// held is the most gateway g may have in flight on endpoint e.
func (g *gateway) held(e string) int {
	return max(g.sent[e], g.prev[e], g.inFlight[e])
}

// Grant computes gateway id's shares of one function's endpoints (in list
// order) as gateway index i of n, at state version v, and records them as
// sent. Each share is the target, shrunk to what the other gateways leave:
// concurrency minus everything they may still hold. A share of 0 means the
// gateway does not use that endpoint now.
func (l *Ledger) Grant(id string, i, n int, eps []Endpoint, v uint64) []int {
	g := l.gw(id)
	if v != g.sentVersion {
		// The gateway may still apply what it was sent before until it
		// confirms v: keep the larger of the two as what it may hold.
		for e, s := range g.sent {
			g.prev[e] = max(g.prev[e], s)
		}
		g.sentVersion = v
	}
	out := make([]int, len(eps))
	for j, e := range eps {
		if e.Concurrency <= 0 {
			continue
		}
		others := 0
		for oid, o := range l.gws {
			if oid != id {
				others += o.held(e.ID)
			}
		}
		s := min(Target(e.Concurrency, n, i, j), e.Concurrency-others)
		s = max(s, 0)
		out[j] = s
		g.sent[e.ID] = s
	}
	return out
}

// Confirm records gateway id's report: it applies the state of version
// applied (or a later one) and has inFlight requests on each endpoint.
// Once it applies the latest version it was sent, the older shares no
// longer count. freed reports whether the gateway now holds less on some
// endpoint, i.e. whether another gateway's share may grow.
func (l *Ledger) Confirm(id string, applied uint64, inFlight map[string]int) (freed bool) {
	g := l.gw(id)
	before := make(map[string]int, len(g.sent))
	for e := range g.sent {
		before[e] = g.held(e)
	}
	for e := range g.inFlight {
		before[e] = g.held(e)
	}
	defer func() {
		for e, b := range before {
			if g.held(e) < b {
				freed = true
			}
		}
	}()
	if applied >= g.sentVersion {
		clear(g.prev)
	}
	clear(g.inFlight)
	for e, n := range inFlight {
		if n > 0 {
			g.inFlight[e] = n
		}
	}
	return freed
}

// Drop forgets gateway id (it stopped reporting): what it held is free.
func (l *Ledger) Drop(id string) { delete(l.gws, id) }

// Forget drops endpoint e from every gateway's records (it stopped).
func (l *Ledger) Forget(e string) {
	for _, g := range l.gws {
		delete(g.sent, e)
		delete(g.prev, e)
		delete(g.inFlight, e)
	}
}

// Retain forgets every endpoint not in live (stopped instances), so the
// ledger stays as large as the instances that run.
func (l *Ledger) Retain(live map[string]bool) {
	for _, g := range l.gws {
		for _, m := range []map[string]int{g.sent, g.prev, g.inFlight} {
			for e := range m {
				if !live[e] {
					delete(m, e)
				}
			}
		}
	}
}

// Held is the sum of what every gateway may hold on endpoint e; it never
// exceeds e's concurrency when every grant went through Grant.
func (l *Ledger) Held(e string) int {
	n := 0
	for _, g := range l.gws {
		n += g.held(e)
	}
	return n
}
