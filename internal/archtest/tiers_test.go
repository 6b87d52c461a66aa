package archtest

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

// tiers is the table in docs/architecture.md: imports point down it, never
// up, and not sideways except where sameTier allows. A package missing
// here fails TestEveryPackageHasATier, so a new package gets its place in
// the table (and the doc) when it is added. Adapters are not in it:
// TestOnlyAppImportsAdapters keeps them to the composition root.
var tiers = map[string]int{
	"cmd/ember": 0,

	"internal/cli": 1, "internal/app": 1,

	"internal/gateway": 2, "internal/gateway/openai": 2, "internal/gateway/replicate": 2,
	"internal/usage": 2, "internal/worker": 2, "internal/dashboard": 2,

	"internal/activator": 3, "internal/cluster": 3, "internal/jobs": 3, "internal/controller": 3, "internal/routing": 3,
	"internal/ocr": 3, "internal/ocr/ocrtest": 3, "internal/textmodel": 3, "internal/textmodel/bertgen": 3,

	"internal/instance": 4, "internal/cost": 4,

	"internal/driver": 5, "internal/autoscaler": 5, "internal/keepalive": 5, "internal/route": 5, "internal/ratelimit": 5,
	"internal/auth": 5, "internal/proxy": 5, "internal/webhook": 5, "internal/models": 5, "internal/ortcache": 5,
	"internal/datadir": 5, "internal/cluster/share": 5,

	"internal/spec": 6, "internal/api": 6, "internal/metering": 6, "internal/config": 6,
	"internal/client": 6, "internal/errkind": 6, "internal/problem": 6, "internal/eventually": 6,

	"internal/archtest": 6, // tests only
}

// sameTier are the imports allowed between packages of one tier: the CLI
// runs the server; the gateway mounts its children; the vocabulary leaves
// use each other's words.
func sameTier(from, to string) bool {
	switch {
	case from == "internal/cli" && to == "internal/app":
		return true
	case from == "internal/gateway" && strings.HasPrefix(to, "internal/gateway/"):
		return true
	case from == "internal/worker" && strings.HasPrefix(to, "internal/ocr"):
		return true
	case tiers[from] == 6:
		return true // Go forbids cycles; leaves may share words (metering → api)
	}
	return false
}

// gatewayMustNot are what the HTTP layer reaches only through the
// interfaces it declares, in api types: the instance manager, the control
// loop and its decider, pricing and metering, and the routing service.
var gatewayMustNot = []string{
	"internal/instance", "internal/controller", "internal/autoscaler", "internal/cost",
	"internal/metering", "internal/routing", "internal/jobs",
}

func TestEveryPackageHasATier(t *testing.T) {
	for _, name := range slices.Sorted(maps.Keys(listInternal(t))) {
		if adapterRoot(name) != "" || name == "internal/telemetry" {
			continue
		}
		if _, ok := tiers[name]; !ok {
			t.Errorf("%s has no tier: add it to the table in docs/architecture.md and to tiers here", name)
		}
	}
}

func TestImportsPointDown(t *testing.T) {
	pkgs := listInternal(t)
	for _, name := range slices.Sorted(maps.Keys(pkgs)) {
		from, ok := tiers[name]
		if !ok {
			continue // adapters, or reported by TestEveryPackageHasATier
		}
		for _, imp := range pkgs[name].Imports {
			dep, ok := strings.CutPrefix(imp, module+"/")
			if !ok {
				continue
			}
			to, ok := tiers[dep]
			if !ok {
				continue // adapters: TestOnlyAppImportsAdapters
			}
			switch {
			case to < from:
				t.Errorf("%s (T%d) imports %s (T%d): imports point down the tiers; declare an interface and let app pass the implementation in", name, from, dep, to)
			case to == from && !sameTier(name, dep):
				t.Errorf("%s imports its peer %s (both T%d): peers talk through an interface the consumer declares", name, dep, from)
			}
		}
	}
}

// TestGatewayImportsNoCore keeps the HTTP layer thin: no package under
// internal/gateway depends, even transitively, on the core it fronts.
func TestGatewayImportsNoCore(t *testing.T) {
	pkgs := listInternal(t)
	for _, name := range slices.Sorted(maps.Keys(pkgs)) {
		if name != "internal/gateway" && !strings.HasPrefix(name, "internal/gateway/") {
			continue
		}
		p := pkgs[name]
		for _, bad := range gatewayMustNot {
			if name == "internal/gateway/replicate" && bad == "internal/jobs" {
				continue // the predictions API speaks jobs' request and event types
			}
			if slices.Contains(p.Deps, module+"/"+bad) {
				t.Errorf("%s depends on %s%s: the gateway reaches it through an interface in api types", name, bad, via(pkgs, p, module+"/"+bad))
			}
		}
	}
}

// TestOnlyAppWires: the composition root is imported only by the CLI,
// and the services it builds (instance manager, controller, routing) by
// no package above them but app: everyone else declares an interface.
func TestOnlyAppWires(t *testing.T) {
	built := []string{"internal/app", "internal/instance", "internal/controller", "internal/routing", "internal/usage", "internal/webhook"}
	pkgs := listInternal(t)
	for _, name := range slices.Sorted(maps.Keys(pkgs)) {
		if name == "internal/app" || name == "internal/cli" {
			continue
		}
		for _, imp := range pkgs[name].Imports {
			dep, _ := strings.CutPrefix(imp, module+"/")
			if !slices.Contains(built, dep) || tiers[name] > tiers[dep] {
				continue
			}
			if dep == "internal/instance" && name == "internal/routing" {
				continue // pricing reads the manager's start-time summary type
			}
			t.Errorf("%s imports %s: only app builds and wires it; declare the interface you need", name, dep)
		}
	}
}
