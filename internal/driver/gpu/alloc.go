package gpu

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
)

// ErrNoMatchingGPU: this machine has fewer GPUs of the class than one
// instance asks for, so no instance can ever start here (a deploy error).
var ErrNoMatchingGPU = errors.New("no matching GPU on this server")

// ErrNoFreeGPU: the machine has the GPUs, but other instances hold them
// (a capacity shortage: a start may succeed once one is released).
var ErrNoFreeGPU = errors.New("no free GPU")

// Request asks for Count whole GPUs of Class for Owner (one instance).
// Shared lets the GPUs be held by other Shared requests at the same time
// (resources.gpu.shared: instances that fit in one GPU's memory together);
// an unshared request gets GPUs no one else holds, and keeps them so.
type Request struct {
	Owner  string
	Class  string
	Count  int
	Shared bool
}

// Allocator hands whole GPUs of an inventory to instances. It is safe for
// concurrent use.
type Allocator struct {
	devs []Device
	// why says why the inventory is empty or short ("nvidia-smi not
	// found"), for the errors users see.
	why string

	mu      sync.Mutex        // guards the following
	holders []map[string]bool // per device (as in devs): the owners holding it
	shared  []bool            // per device: its holders asked for sharing
	owned   map[string][]int  // owner → its devices' positions in devs
}

// NewAllocator allocates from devs; why, if not "", says why devs is what
// it is (shown when a request cannot be met).
func NewAllocator(devs []Device, why string) *Allocator {
	devs = slices.Clone(devs)
	slices.SortFunc(devs, func(a, b Device) int { return a.Index - b.Index })
	a := &Allocator{devs: devs, why: why, holders: make([]map[string]bool, len(devs)),
		shared: make([]bool, len(devs)), owned: map[string][]int{}}
	for i := range a.holders {
		a.holders[i] = map[string]bool{}
	}
	return a
}

// Devices lists the inventory.
func (a *Allocator) Devices() []Device { return slices.Clone(a.devs) }

// Check reports whether count GPUs of class exist here at all (free or
// not): the deploy-time check. The error wraps ErrNoMatchingGPU and says
// what the machine has.
func (a *Allocator) Check(class string, count int) error {
	class = strings.ToLower(class)
	have := 0
	for _, d := range a.devs {
		if d.Class == class {
			have++
		}
	}
	if have >= count {
		return nil
	}
	if have == 0 {
		return fmt.Errorf("%w: this server has no %s GPU (%s)", ErrNoMatchingGPU, class, a.summary())
	}
	return fmt.Errorf("%w: one instance asks for %d %s GPUs; this server has %d", ErrNoMatchingGPU, count, class, have)
}

// summary says what the machine has: "GPUs: 2× h100-80gb" or why none.
func (a *Allocator) summary() string {
	if len(a.devs) == 0 {
		if a.why != "" {
			return "it has none: " + a.why
		}
		return "it has none"
	}
	n := map[string]int{}
	for _, d := range a.devs {
		n[d.Class]++
	}
	var parts []string
	for _, c := range slices.Sorted(maps.Keys(n)) {
		parts = append(parts, fmt.Sprintf("%d× %s", n[c], c))
	}
	return "it has " + strings.Join(parts, ", ")
}

// Acquire gives r.Owner r.Count GPUs of r.Class, lowest index first, or
// none: an error wrapping ErrNoMatchingGPU (never satisfiable here) or
// ErrNoFreeGPU (held by others; it names them). A shared request packs
// onto GPUs other shared holders already use before taking a free one, so
// free GPUs stay whole for unshared requests. An owner that already holds
// GPUs gets the same ones back (a retried start).
func (a *Allocator) Acquire(r Request) ([]Device, error) {
	if r.Count <= 0 {
		return nil, nil
	}
	if err := a.Check(r.Class, r.Count); err != nil {
		return nil, err
	}
	class := strings.ToLower(r.Class)
	a.mu.Lock()
	defer a.mu.Unlock()
	if held, ok := a.owned[r.Owner]; ok {
		return a.listLocked(held), nil
	}
	var packed, free []int
	for i, d := range a.devs {
		switch {
		case d.Class != class:
		case len(a.holders[i]) == 0:
			free = append(free, i)
		case r.Shared && a.shared[i]:
			packed = append(packed, i)
		}
	}
	pick := append(packed, free...)
	if len(pick) < r.Count {
		return nil, a.busyLocked(class, r)
	}
	pick = pick[:r.Count]
	for _, i := range pick {
		a.holders[i][r.Owner] = true
		a.shared[i] = r.Shared
	}
	a.owned[r.Owner] = pick
	return a.listLocked(pick), nil
}

func (a *Allocator) listLocked(pos []int) []Device {
	out := make([]Device, len(pos))
	for k, i := range pos {
		out[k] = a.devs[i]
	}
	return out
}

// busyLocked names who holds the class's GPUs. a.mu must be held.
func (a *Allocator) busyLocked(class string, r Request) error {
	var held []string
	total := 0
	for i, d := range a.devs {
		if d.Class != class {
			continue
		}
		total++
		for _, o := range slices.Sorted(maps.Keys(a.holders[i])) {
			held = append(held, fmt.Sprintf("GPU %d by %s", d.Index, o))
		}
	}
	const show = 8
	more := ""
	if len(held) > show {
		more = fmt.Sprintf(" and %d more", len(held)-show)
		held = held[:show]
	}
	mode := "unshared"
	if r.Shared {
		mode = "shared"
	}
	return fmt.Errorf("%w: %d %s %s GPU(s) wanted, all %d held (%s%s); the start is retried when one is released",
		ErrNoFreeGPU, r.Count, mode, class, total, strings.Join(held, ", "), more)
}

// Release gives back what owner holds (no-op if nothing).
func (a *Allocator) Release(owner string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, i := range a.owned[owner] {
		delete(a.holders[i], owner)
		if len(a.holders[i]) == 0 {
			a.shared[i] = false
		}
	}
	delete(a.owned, owner)
}

// Held reports how many owners hold each device, by index (for status and
// tests).
func (a *Allocator) Held() map[int]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[int]int{}
	for i, d := range a.devs {
		if n := len(a.holders[i]); n > 0 {
			out[d.Index] = n
		}
	}
	return out
}
