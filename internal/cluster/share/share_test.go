package share

import (
	"fmt"
	"testing"
)

func TestTargetSumsToConcurrency(t *testing.T) {
	for c := 0; c <= 9; c++ {
		for n := 1; n <= 5; n++ {
			for j := 0; j < 6; j++ {
				sum := 0
				for i := range n {
					s := Target(c, n, i, j)
					if s < c/n || s > c/n+1 {
						t.Fatalf("Target(%d,%d,%d,%d) = %d, want c/n or c/n+1", c, n, i, j, s)
					}
					sum += s
				}
				if sum != c {
					t.Errorf("c=%d n=%d j=%d: shares sum to %d", c, n, j, sum)
				}
			}
		}
	}
}

func TestTargetTable(t *testing.T) {
	tests := []struct {
		c, n, i, j, want int
	}{
		{4, 1, 0, 0, 4},
		{4, 2, 0, 0, 2},
		{4, 2, 1, 0, 2},
		{4, 3, 0, 0, 2}, // 4 = 2+1+1, the extra to gateway j%n
		{4, 3, 1, 0, 1},
		{4, 3, 1, 1, 2}, // rotated: endpoint 1's extra goes to gateway 1
		{1, 2, 0, 0, 1}, // c < n: one gateway per endpoint...
		{1, 2, 1, 0, 0},
		{1, 2, 1, 1, 1}, // ...and the next endpoint to the other gateway
		{0, 2, 0, 0, 0}, // unlimited: not split
		{4, 2, 2, 0, 0}, // index out of range
	}
	for _, tt := range tests {
		if got := Target(tt.c, tt.n, tt.i, tt.j); got != tt.want {
			t.Errorf("Target(c=%d, n=%d, i=%d, j=%d) = %d, want %d", tt.c, tt.n, tt.i, tt.j, got, tt.want)
		}
	}
}

// step is one event the leader sees, in order.
type step struct {
	grant   string // gateway to grant, as index i of n
	i, n    int
	confirm string // gateway that confirms version v with inFlight on e
	applied uint64
	flight  int
	drop    string
	v       uint64
	want    int // the share granted (grant steps)
}

// TestLedgerShrinkFirst: when a gateway joins, the one that held the whole
// instance must confirm its smaller share before the newcomer gets any, and
// at no step do the gateways together hold more than the concurrency.
func TestLedgerShrinkFirst(t *testing.T) {
	const c = 4
	eps := []Endpoint{{ID: "e", Concurrency: c}}
	tests := []struct {
		name  string
		steps []step
	}{
		{"alone gets everything", []step{{grant: "a", i: 0, n: 1, v: 1, want: 4}}},
		{"join waits for the shrink", []step{
			{grant: "a", i: 0, n: 1, v: 1, want: 4},
			{confirm: "a", applied: 1, flight: 4},
			{grant: "b", i: 1, n: 2, v: 2, want: 0}, // a may hold 4
			{grant: "a", i: 0, n: 2, v: 2, want: 2}, // a shrinks to 2...
			{grant: "b", i: 1, n: 2, v: 2, want: 0}, // ...but has not confirmed
			{confirm: "a", applied: 2, flight: 3},   // confirmed, still 3 in flight from before
			{grant: "b", i: 1, n: 2, v: 3, want: 1}, // only what is free now
			{confirm: "a", applied: 3, flight: 1},   // its old requests ended
			{grant: "b", i: 1, n: 2, v: 4, want: 2}, // the full share
		}},
		{"a dead gateway frees its share", []step{
			{grant: "a", i: 0, n: 2, v: 1, want: 2},
			{grant: "b", i: 1, n: 2, v: 1, want: 2},
			{drop: "a"},
			{grant: "b", i: 0, n: 1, v: 2, want: 4},
		}},
		{"a gateway that leaves does not give its share before it confirms", []step{
			{grant: "a", i: 0, n: 2, v: 1, want: 2},
			{grant: "b", i: 1, n: 2, v: 1, want: 2},
			{confirm: "a", applied: 1, flight: 2},
			{grant: "b", i: 0, n: 1, v: 2, want: 2}, // a still live and holding 2
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLedger()
			for k, s := range tt.steps {
				switch {
				case s.grant != "":
					got := l.Grant(s.grant, s.i, s.n, eps, s.v)
					if got[0] != s.want {
						t.Fatalf("step %d: grant to %s = %d, want %d", k, s.grant, got[0], s.want)
					}
				case s.confirm != "":
					l.Confirm(s.confirm, s.applied, map[string]int{"e": s.flight})
				case s.drop != "":
					l.Drop(s.drop)
				}
				if h := l.Held("e"); h > c {
					t.Fatalf("step %d: gateways may hold %d > concurrency %d", k, h, c)
				}
			}
		})
	}
}

// TestLedgerNeverOverCommits grants and confirms in every interleaving of
// a gateway set that grows from 1 to 4 and back, and checks the bound.
func TestLedgerNeverOverCommits(t *testing.T) {
	for c := 1; c <= 7; c++ {
		t.Run(fmt.Sprint("c=", c), func(t *testing.T) {
			l := NewLedger()
			eps := []Endpoint{{ID: "x", Concurrency: c}, {ID: "y", Concurrency: c}}
			ids := []string{"g0", "g1", "g2", "g3"}
			v := uint64(0)
			for _, n := range []int{1, 2, 3, 4, 3, 2, 1} {
				v++
				for round := range 3 {
					for i := range n {
						got := l.Grant(ids[i], i, n, eps, v)
						if round == 2 {
							l.Confirm(ids[i], v, map[string]int{"x": got[0], "y": got[1]})
						}
					}
					for _, e := range []string{"x", "y"} {
						if h := l.Held(e); h > c {
							t.Fatalf("n=%d round %d: %d held on %s > %d", n, round, h, e, c)
						}
					}
				}
				for _, id := range ids[n:] {
					l.Drop(id)
				}
			}
		})
	}
}

func TestConfirmFreed(t *testing.T) {
	l := NewLedger()
	eps := []Endpoint{{ID: "e", Concurrency: 4}}
	l.Grant("a", 0, 1, eps, 1)
	if l.Confirm("a", 1, nil) {
		t.Fatal("confirming the share already held freed something, want false")
	}
	l.Grant("a", 0, 2, eps, 2)
	if !l.Confirm("a", 2, nil) {
		t.Fatal("confirming a smaller share frees the difference, want true")
	}
}

func TestRetainForgetsStoppedEndpoints(t *testing.T) {
	l := NewLedger()
	l.Grant("a", 0, 1, []Endpoint{{ID: "x", Concurrency: 2}, {ID: "y", Concurrency: 2}}, 1)
	l.Retain(map[string]bool{"y": true})
	if l.Held("x") != 0 || l.Held("y") != 2 {
		t.Errorf("held x=%d y=%d, want 0 and 2", l.Held("x"), l.Held("y"))
	}
}
