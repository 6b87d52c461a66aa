package app

import (
	"time"

	"github.com/ember-run/ember/internal/api"
	"github.com/ember-run/ember/internal/controller"
	"github.com/ember-run/ember/internal/gateway"
	"github.com/ember-run/ember/internal/instance"
)

// The gateway reads functions and instances in api terms only; these
// views translate the controller's and the manager's own types.

// registryView is the controller as gateway.Registry: a function's record
// carries the last scaling decision in its status.
type registryView struct{ *controller.Controller }

func (v registryView) Get(name string) (api.Function, bool) {
	rec, d, ok := v.Controller.Get(name)
	if ok {
		rec.Status.Desired, rec.Status.Panic, rec.Status.Reason = d.Desired, d.Panic, d.Reason
		rec.Status.KeepWarm, _ = v.Controller.KeepWarmStatus(name)
	}
	return rec, ok
}

// instancesView is the manager as gateway.Instances.
type instancesView struct{ *instance.Manager }

func (v instancesView) Status(fn string, now time.Time) (api.FunctionStatus, bool) {
	s, ok := v.Manager.Summary(fn, now)
	if !ok {
		return api.FunctionStatus{}, false
	}
	return api.FunctionStatus{State: s.State, Requests: s.Requests, Ready: s.Ready, Starting: s.Starting, Failed: s.Failed,
		InFlight: s.InFlight, MinNow: s.MinNow, LastError: s.LastError, ColdStarts: s.ColdStarts}, true
}

var (
	_ gateway.Registry  = registryView{}
	_ gateway.Instances = instancesView{}
)

// usageSpecs is what usage reads of functions: specs from the manager and,
// from the controller, since when each function exists (usage.Deployed).
type usageSpecs struct {
	*instance.Manager
	ctl *controller.Controller
}

func (u usageSpecs) DeployedAt(name string) (time.Time, bool) {
	rec, _, ok := u.ctl.Get(name)
	return rec.CreatedAt, ok && !rec.CreatedAt.IsZero()
}
