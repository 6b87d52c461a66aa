package driver

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Cadence is how often a driver probes a starting instance.
type Cadence struct {
	// Initial is the first pause; it doubles up to TightMax while the phase
	// is younger than TightFor.
	Initial, TightMax, TightFor time.Duration
	// Ceiling caps the pause afterwards (the spec's health.interval).
	Ceiling time.Duration
	// Timeout bounds one probe (the spec's health.timeout).
	Timeout time.Duration
}

// Next is the pause after a failed probe, elapsed into the phase. While
// the phase is young (TightFor) it doubles from Initial up to TightMax:
// most servers answer within milliseconds of listening, and this keeps the
// cold-start overhead at a few hundred microseconds. Then it is a quarter
// of the time waited so far, so readiness is seen at most ~25% late, up to
// Ceiling: a 60 s model load is probed a few dozen times, not tens of
// thousands (every probe is a line in many servers' access logs).
func (c Cadence) Next(pause, elapsed time.Duration) time.Duration {
	if elapsed < c.TightFor {
		return min(2*pause, c.TightMax)
	}
	return min(max(elapsed/4, c.TightMax), c.Ceiling)
}

// Readiness is one starting instance as the shared probe loop sees it.
type Readiness struct {
	Addr       string // host:port the instance serves on
	HealthPath string // GET it for 2xx; "" = listening is ready
	Cadence    Cadence
	// Listening reports whether Addr serves yet (a TCP connect, or an HTTP
	// exchange where a forwarder accepts before the instance listens),
	// with a reason when not.
	Listening func(ctx context.Context) (bool, string)
	// Health GETs url and reports a 2xx, with the status or error seen.
	Health func(ctx context.Context, url string) (bool, string)
	// Phase records a phase (PhaseListening, PhaseReady) once reached.
	Phase func(name string)
	// Exited closes when the instance ends; Err then says why.
	Exited <-chan struct{}
	Err    func() error
	// Kick, if not nil, makes the loop check Listening at once instead of
	// waiting out its pause, while the port is not open yet: a server
	// usually prints a line right after it starts listening, so the
	// process driver kicks on output. It is ignored once listening, as an
	// HTTP probe there would itself print a line (an access log) and kick
	// again. A kick sooner than KickGap after the last check is deferred
	// to that point, so a chatty start costs at most one check per KickGap.
	Kick <-chan struct{}
}

// KickGap is the least time between two checks of a port that Kick
// brings forward.
const KickGap = 200 * time.Microsecond

// AwaitReady probes until the instance listens (PhaseListening) and then
// until its health path answers 2xx (PhaseReady), pausing as the cadence
// says from the start of each phase. It returns a *StartError when the
// instance exits first or ctx ends, saying which phase it was stuck in.
func AwaitReady(ctx context.Context, r Readiness) error {
	start := time.Now()
	url := ""
	if r.HealthPath != "" {
		path := r.HealthPath
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		url = "http://" + r.Addr + path
	}
	c := r.Cadence
	listening := false
	lastProbe := "port not open"
	pause, phaseStart := c.Initial, start
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	var lastListenCheck time.Time
	for {
		if !listening {
			lastListenCheck = time.Now()
			if ok, _ := r.Listening(ctx); ok {
				listening = true
				r.Phase(PhaseListening)
				if url == "" {
					r.Phase(PhaseReady)
					return nil
				}
				pause, phaseStart = c.Initial, time.Now()
				continue // probe health at once
			}
		} else {
			ok, status := r.Health(ctx, url)
			if ok {
				r.Phase(PhaseReady)
				return nil
			}
			if ctx.Err() == nil { // a probe cut short by ctx says nothing about the instance
				lastProbe = status
			}
		}
		timer.Reset(pause)
		kick := r.Kick
		if listening {
			kick = nil
		}
		kicked := false
		for waiting := true; waiting; {
			select {
			case <-timer.C:
				waiting = false
			case <-kick:
				kick, kicked = nil, true
				timer.Stop() // Go ≥ 1.23: no stale tick to drain
				if gap := time.Since(lastListenCheck); gap < KickGap {
					timer.Reset(KickGap - gap)
					continue
				}
				waiting = false
			case <-r.Exited:
				err := r.Err()
				return &StartError{Reason: err.Error() + " before becoming ready", Err: err}
			case <-ctx.Done():
				phase := "waiting for port " + r.Addr
				if listening {
					phase = "listening, health check " + r.HealthPath + ": " + lastProbe
				}
				return &StartError{
					Reason: fmt.Sprintf("not ready after %s (%s)", time.Since(start).Round(time.Millisecond), phase),
					Err:    ctx.Err(),
				}
			}
		}
		if kicked {
			continue // a check on a hint is not a step of the cadence
		}
		pause = c.Next(pause, time.Since(phaseStart))
	}
}
