package cost

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ErrBadTrace wraps every trace parsing failure.
var ErrBadTrace = errors.New("cost: bad trace")

// Trace is a list of request arrivals, as offsets in seconds from the first,
// with optional per-request service times.
type Trace struct {
	// Arrivals are seconds since the first arrival, ascending.
	Arrivals []float64
	// Durations, when the trace has them, are per-request service seconds
	// (same length as Arrivals); nil otherwise.
	Durations []float64
	// Span is the time the trace covers: last arrival minus first, at least 1s.
	Span float64
	// Tokens holds (context, generated) token counts when the trace has them
	// (the Azure LLM inference format); nil otherwise.
	Tokens [][2]int
}

// RequestsPerDay is the trace's mean rate scaled to a day.
func (t *Trace) RequestsPerDay() float64 {
	if t == nil || len(t.Arrivals) == 0 {
		return 0
	}
	return float64(len(t.Arrivals)) / t.Span * 86400
}

// MeanDuration is the mean of Durations, or 0 when the trace has none.
func (t *Trace) MeanDuration() float64 {
	if t == nil || len(t.Durations) == 0 {
		return 0
	}
	var s float64
	for _, d := range t.Durations {
		s += d
	}
	return s / float64(len(t.Durations))
}

// traceTimeLayout is the Azure public trace's timestamp format,
// e.g. "2023-11-16 18:17:03.9799600".
const traceTimeLayout = "2006-01-02 15:04:05.999999999"

// ParseTrace reads arrivals from r. Two formats are accepted:
//
//   - CSV with a header naming a TIMESTAMP column (case-insensitive), e.g. the
//     Azure LLM inference trace "TIMESTAMP,ContextTokens,GeneratedTokens" with
//     timestamps like "2023-11-16 18:17:03.9799600"; an optional
//     duration/duration_s/seconds column gives service times;
//   - plain lines "UNIX_SECONDS[,DURATION_SECONDS]" (float), no header; blank
//     lines and lines starting with # are skipped.
//
// Arrivals are sorted and made relative to the first.
func ParseTrace(r io.Reader) (*Trace, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var (
		t       Trace
		abs     []float64
		tsCol   = 0
		durCol  = -1
		ctxCol  = -1
		genCol  = -1
		header  bool
		lineNo  int
		started bool
	)
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Split(line, ",")
		for i := range fields {
			fields[i] = strings.TrimSpace(fields[i])
		}
		if !started {
			started = true
			if _, err := strconv.ParseFloat(fields[0], 64); err != nil {
				if _, err := time.Parse(traceTimeLayout, fields[0]); err != nil {
					// A header line.
					header = true
					tsCol = -1
					for i, f := range fields {
						switch strings.ToLower(f) {
						case "timestamp", "time", "ts", "arrival", "arrival_time":
							tsCol = i
						case "duration", "duration_s", "seconds", "service_seconds":
							durCol = i
						case "contexttokens":
							ctxCol = i
						case "generatedtokens":
							genCol = i
						}
					}
					if tsCol < 0 {
						return nil, fmt.Errorf("%w: line 1: no timestamp column in header %q", ErrBadTrace, line)
					}
					continue
				}
			}
			if !header && len(fields) > 1 {
				durCol = 1
			}
		}
		if tsCol >= len(fields) {
			return nil, fmt.Errorf("%w: line %d: missing timestamp column", ErrBadTrace, lineNo)
		}
		ts, err := parseTimestamp(fields[tsCol])
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %w", ErrBadTrace, lineNo, err)
		}
		abs = append(abs, ts)
		if durCol >= 0 {
			if durCol >= len(fields) {
				return nil, fmt.Errorf("%w: line %d: missing duration column", ErrBadTrace, lineNo)
			}
			d, err := strconv.ParseFloat(fields[durCol], 64)
			if err != nil || !(d >= 0) || math.IsInf(d, 0) {
				return nil, fmt.Errorf("%w: line %d: duration %q: want seconds ≥ 0", ErrBadTrace, lineNo, fields[durCol])
			}
			t.Durations = append(t.Durations, d)
		}
		if ctxCol >= 0 && genCol >= 0 && ctxCol < len(fields) && genCol < len(fields) {
			c, err1 := strconv.Atoi(fields[ctxCol])
			g, err2 := strconv.Atoi(fields[genCol])
			if err1 == nil && err2 == nil {
				t.Tokens = append(t.Tokens, [2]int{c, g})
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadTrace, err)
	}
	if len(abs) == 0 {
		return nil, fmt.Errorf("%w: no arrivals", ErrBadTrace)
	}
	if len(t.Tokens) != len(abs) {
		t.Tokens = nil
	}
	if !slices.IsSorted(abs) {
		// Sort arrivals, keeping durations with their requests.
		idx := make([]int, len(abs))
		for i := range idx {
			idx[i] = i
		}
		slices.SortStableFunc(idx, func(a, b int) int {
			switch {
			case abs[a] < abs[b]:
				return -1
			case abs[a] > abs[b]:
				return 1
			}
			return 0
		})
		abs = permute(abs, idx)
		if t.Durations != nil {
			t.Durations = permute(t.Durations, idx)
		}
		if t.Tokens != nil {
			t.Tokens = permute(t.Tokens, idx)
		}
	}
	t0 := abs[0]
	t.Arrivals = make([]float64, len(abs))
	for i, a := range abs {
		t.Arrivals[i] = a - t0
	}
	t.Span = max(t.Arrivals[len(t.Arrivals)-1], 1)
	return &t, nil
}

func permute[T any](s []T, idx []int) []T {
	out := make([]T, len(s))
	for i, j := range idx {
		out[i] = s[j]
	}
	return out
}

// parseTimestamp reads unix seconds (float) or "2006-01-02 15:04:05.9999999" (UTC).
func parseTimestamp(s string) (float64, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		// "NaN" and "Inf" parse as floats; as times they mean nothing and
		// would poison every figure computed from the trace.
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, fmt.Errorf("timestamp %q: not a finite number of seconds", s)
		}
		return f, nil
	}
	for _, layout := range []string{traceTimeLayout, time.RFC3339Nano} {
		if tm, err := time.Parse(layout, s); err == nil {
			return float64(tm.UnixNano()) / 1e9, nil
		}
	}
	return 0, fmt.Errorf("timestamp %q: want unix seconds or \"2006-01-02 15:04:05.999\"", s)
}
