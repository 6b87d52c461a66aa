package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Identity is a controller's Lease holder identity: its name and the
// address gateways reach it on, so the Lease names where the leader is.
func Identity(name, advertise string) string { return name + "_" + advertise }

// AddrOf returns the address part of a holder identity.
func AddrOf(identity string) (string, bool) {
	i := strings.LastIndexByte(identity, '_')
	if i < 0 || i == len(identity)-1 {
		return "", false
	}
	return identity[i+1:], true
}

// ErrNoLeader is returned while the Lease has no holder.
var ErrNoLeader = errors.New("no controller holds the lease")

// LeaderAddr reads the Lease and returns its holder's address.
func LeaderAddr(ctx context.Context, c kubernetes.Interface, namespace, name string) (string, error) {
	l, err := c.CoordinationV1().Leases(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("lease %s/%s: %w", namespace, name, err)
	}
	if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
		return "", fmt.Errorf("lease %s/%s: %w", namespace, name, ErrNoLeader)
	}
	addr, ok := AddrOf(*l.Spec.HolderIdentity)
	if !ok {
		return "", fmt.Errorf("lease %s/%s: holder %q has no address (want name_host:port)", namespace, name, *l.Spec.HolderIdentity)
	}
	return addr, nil
}

// ElectOptions configure leader election on a coordination.k8s.io Lease.
type ElectOptions struct {
	Client                                    kubernetes.Interface
	Namespace, Name, Identity                 string
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	Logger                                    *slog.Logger
}

// ErrLostLeadership is returned by Elect when this controller led and
// stopped leading: the caller exits (as kube-controller-manager does) so
// that nothing it started keeps acting beside the new leader.
var ErrLostLeadership = errors.New("lost the controller lease")

// Election is one controller's candidacy.
type Election struct {
	opts    ElectOptions
	leading atomic.Bool
	elector *leaderelection.LeaderElector
}

// NewElection checks the options and builds the elector.
func NewElection(o ElectOptions, lead func(ctx context.Context)) (*Election, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Election{opts: o}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: o.Namespace, Name: o.Name},
		Client:     o.Client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: o.Identity},
	}
	el, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   o.LeaseDuration,
		RenewDeadline:   o.RenewDeadline,
		RetryPeriod:     o.RetryPeriod,
		ReleaseOnCancel: true, // a clean stop hands over at once
		Name:            o.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				e.leading.Store(true)
				o.Logger.Info("leading", "lease", o.Namespace+"/"+o.Name, "identity", o.Identity)
				lead(ctx)
			},
			OnStoppedLeading: func() { e.leading.Store(false) },
			OnNewLeader: func(id string) {
				o.Logger.Info("controller leader", "identity", id)
			},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("leader election: %w", err)
	}
	e.elector = el
	return e, nil
}

// Leading reports whether this controller leads now, and else the holder.
func (e *Election) Leading() (bool, string) {
	if e.leading.Load() && e.elector.IsLeader() {
		return true, e.opts.Identity
	}
	return false, e.elector.GetLeader()
}

// Run campaigns until ctx ends (nil) or leadership, once held, is lost
// (ErrLostLeadership).
func (e *Election) Run(ctx context.Context) error {
	e.elector.Run(ctx) // returns when ctx ends or leadership is lost
	led := e.leading.Swap(false)
	if ctx.Err() != nil {
		return nil
	}
	if led {
		return ErrLostLeadership
	}
	return nil
}
