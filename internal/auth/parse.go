package auth

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ParseRate reads a request rate: "20/s", "600/m", "1000/h", or a bare
// number of requests per second. "" and "0" mean unlimited (0).
func ParseRate(s string) (float64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	num, unit, hasUnit := strings.Cut(s, "/")
	n, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	// NaN and ±Inf parse as floats but limit nothing: refuse them.
	if err != nil || !(n >= 0) || math.IsInf(n, 0) {
		return 0, fmt.Errorf("invalid rate %q (want e.g. 20/s, 600/m, 1000/h)", s)
	}
	per := time.Second
	if hasUnit {
		switch strings.TrimSpace(unit) {
		case "s", "sec", "second":
		case "m", "min", "minute":
			per = time.Minute
		case "h", "hour":
			per = time.Hour
		default:
			return 0, fmt.Errorf("invalid rate %q: unit must be s, m or h", s)
		}
	}
	return n / per.Seconds(), nil
}

// maxTTLDays bounds key lifetimes (100 years): far beyond any real use,
// well inside time.Duration's range.
const maxTTLDays = 36500

// ParseTTL reads a lifetime: a Go duration ("12h", "90m") or a number of
// days ("30d"). "" means never (0).
func ParseTTL(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(days, 64)
		// !(n > 0) also refuses NaN; the upper bound keeps the conversion
		// from overflowing into a negative (already expired) duration.
		if err != nil || !(n > 0) || n > maxTTLDays {
			return 0, fmt.Errorf("invalid lifetime %q (want e.g. 30d, 12h; at most %dd)", s, maxTTLDays)
		}
		return time.Duration(n * float64(24*time.Hour)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("invalid lifetime %q (want e.g. 30d, 12h)", s)
	}
	return d, nil
}
