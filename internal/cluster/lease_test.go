package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/ember-run/ember/internal/eventually"
)

// TestElectionFailover: two candidates on one Lease (client-go's fake
// clientset); one leads and the Lease names its address; when it stops,
// the other takes over and gateways find the new address.
func TestElectionFailover(t *testing.T) {
	client := fake.NewClientset()
	led := make(chan string, 2)
	mk := func(name, addr string) *Election {
		e, err := NewElection(ElectOptions{Client: client, Namespace: "ember", Name: "ember-controller",
			Identity: Identity(name, addr), LeaseDuration: 600 * time.Millisecond,
			RenewDeadline: 400 * time.Millisecond, RetryPeriod: 100 * time.Millisecond},
			func(ctx context.Context) { led <- name; <-ctx.Done() })
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	a, b := mk("ctl-a", "127.0.0.1:7001"), mk("ctl-b", "127.0.0.1:7002")
	ctxA, stopA := context.WithCancel(context.Background())
	doneA := make(chan error, 1)
	go func() { doneA <- a.Run(ctxA) }()
	if first := <-led; first != "ctl-a" {
		t.Fatalf("first leader %s", first)
	}
	ctxB, stopB := context.WithCancel(context.Background())
	defer stopB()
	doneB := make(chan error, 1)
	go func() { doneB <- b.Run(ctxB) }()

	addr, err := LeaderAddr(context.Background(), client, "ember", "ember-controller")
	if err != nil || addr != "127.0.0.1:7001" {
		t.Fatalf("LeaderAddr = %q, %v; want a's address", addr, err)
	}
	if ok, _ := a.Leading(); !ok {
		t.Error("a does not say it leads")
	}
	eventually.True(t, 10*time.Second, 10*time.Millisecond, "b sees a as the holder", func() bool {
		ok, holder := b.Leading()
		return !ok && holder == "ctl-a_127.0.0.1:7001"
	})
	stopA() // releases the lease
	if err := <-doneA; err != nil {
		t.Errorf("a's Run after its ctx ended: %v, want nil", err)
	}
	select {
	case next := <-led:
		if next != "ctl-b" {
			t.Fatalf("next leader %s", next)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("b did not take over")
	}
	addr, err = LeaderAddr(context.Background(), client, "ember", "ember-controller")
	if err != nil || addr != "127.0.0.1:7002" {
		t.Errorf("LeaderAddr after failover = %q, %v; want b's address", addr, err)
	}
	stopB()
	if err := <-doneB; err != nil && !errors.Is(err, ErrLostLeadership) {
		t.Errorf("b's Run: %v", err)
	}
}

func TestAddrOf(t *testing.T) {
	tests := []struct {
		id, addr string
		ok       bool
	}{
		{"ember-controller-0_10.1.2.3:8080", "10.1.2.3:8080", true},
		{"host_with_underscores_127.0.0.1:1", "127.0.0.1:1", true},
		{"noaddr", "", false},
		{"trailing_", "", false},
	}
	for _, tt := range tests {
		addr, ok := AddrOf(tt.id)
		if addr != tt.addr || ok != tt.ok {
			t.Errorf("AddrOf(%q) = %q, %v; want %q, %v", tt.id, addr, ok, tt.addr, tt.ok)
		}
	}
}
