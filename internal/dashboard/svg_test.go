package dashboard

import (
	"encoding/xml"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
)

// wellFormed parses s as XML: every chart must be valid SVG.
func wellFormed(t *testing.T, s safe) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader("<root>" + string(s) + "</root>"))
	for {
		_, err := d.Token()
		if err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("not well-formed: %v\n%s", err, s)
			}
			return
		}
	}
}

func TestScale(t *testing.T) {
	tests := []struct {
		name string
		s    scale
		v    float64
		want float64
	}{
		{"linear low end", scale{lo: 0, hi: 10, from: 0, to: 100}, 0, 0},
		{"linear middle", scale{lo: 0, hi: 10, from: 0, to: 100}, 5, 50},
		{"inverted pixels (y)", scale{lo: 0, hi: 10, from: 100, to: 0}, 10, 0},
		{"log decade", scale{lo: 1, hi: 100, log: true, from: 0, to: 100}, 10, 50},
		{"flat range sits in the middle", scale{lo: 3, hi: 3, from: 0, to: 100}, 3, 50},
	}
	for _, tt := range tests {
		if got := tt.s.at(tt.v); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("%s: at(%g) = %g, want %g", tt.name, tt.v, got, tt.want)
		}
	}
	if got := (scale{lo: 1, hi: 1e4, log: true}).ticks(5); len(got) != 5 || got[0] != 1 || got[4] != 1e4 {
		t.Errorf("log ticks = %v, want the five powers of ten", got)
	}
	if got := (scale{lo: 0, hi: 9}).ticks(4); got[1]-got[0] != 2 && got[1]-got[0] != 5 {
		t.Errorf("linear ticks = %v, want a step of 2 or 5", got)
	}
}

func TestLineChartDrawsEverySeriesAndMark(t *testing.T) {
	c := lineChart{Title: "cost <&>", LogX: true, LogY: true, Series: []series{
		{"always-on a", []float64{10, 100, 1000}, []float64{500, 500, 500}},
		{"serverless b", []float64{10, 100, 1000}, []float64{5, 50, 0}}, // 0 is dropped on a log axis
	}, Marks: []mark{{X: 1000, Y: 500, Label: "a = b"}, {X: 100, Y: math.NaN(), Label: "now"}}}
	s := c.svg()
	wellFormed(t, s)
	if got := strings.Count(string(s), "<polyline"); got != 2 {
		t.Errorf("%d polylines, want 2", got)
	}
	if !strings.Contains(string(s), "cost &lt;&amp;&gt;") {
		t.Error("title not escaped")
	}
	if !strings.Contains(string(s), "<circle") || !strings.Contains(string(s), `<line class="mark"`) {
		t.Error("marks missing")
	}
	// the serverless series keeps two points: 0 has no place on a log axis
	i := strings.Index(string(s), `class="line s1" points="`)
	pts := strings.Fields(strings.SplitN(string(s)[i+len(`class="line s1" points="`):], `"`, 2)[0])
	if len(pts) != 2 {
		t.Errorf("serverless points = %v, want 2", pts)
	}
}

func TestTimelineWaterfallBars(t *testing.T) {
	tl := timeline("t", []lane{{Label: "i-1", Segs: []seg{{-300, -200, "starting"}, {-200, -100, "busy"}, {-100, 0, "idle"}}}}, -300, 0, secondsAgo)
	wellFormed(t, tl)
	for _, st := range []string{"st-starting", "st-busy", "st-idle"} {
		if !strings.Contains(string(tl), st) {
			t.Errorf("timeline lacks %s", st)
		}
	}
	w := waterfall("w", []phase{{"spawned", 5}, {"listening", 20}, {"ready", 75}})
	wellFormed(t, w)
	if !strings.Contains(string(w), "total 100.0 ms") {
		t.Errorf("waterfall total missing:\n%s", w)
	}
	b := bars("b", []bar{{Label: "2026-11-29", Parts: []float64{1, 2, 3}}}, usd)
	wellFormed(t, b)
	if !strings.Contains(string(b), "$6.00") {
		t.Errorf("bar total missing:\n%s", b)
	}
}

func TestRecorderTracksTheScaleFromZeroStory(t *testing.T) {
	r := NewRecorder()
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	r.StateChange("f", "i1", "", "starting", t0)
	r.StateChange("f", "i1", "starting", "ready", t0.Add(2*time.Second))
	r.Busy("f", "i1", true, t0.Add(2*time.Second))
	r.requestAt("f", 100*time.Millisecond, 2*time.Second, t0.Add(3*time.Second))
	r.requestAt("f", 300*time.Millisecond, 0, t0.Add(3*time.Second))
	r.Busy("f", "i1", false, t0.Add(3*time.Second))
	r.StateChange("f", "i1", "ready", "stopping", t0.Add(10*time.Second))
	r.StateChange("f", "i1", "stopping", "stopped", t0.Add(11*time.Second))
	r.Sample(t0.Add(11*time.Second), []observed{{Function: api.Function{Name: "f"}}}, nil)
	v := r.function("f", t0.Add(12*time.Second))
	var states []string
	for _, s := range v.Tracks[0].Segs {
		states = append(states, s.State)
	}
	if got, want := strings.Join(states, " → "), "starting → busy → idle → stopping"; got != want {
		t.Errorf("states = %s, want %s", got, want)
	}
	if !v.Tracks[0].Ended || v.Tracks[0].Final != "stopped" {
		t.Errorf("track = %+v, want ended stopped", v.Tracks[0])
	}
	if v.Requests != 2 || v.P50 != 100 || v.P99 != 300 || v.QueueMs != 1000 {
		t.Errorf("now: %d requests p50 %g p99 %g queue %g; want 2, 100, 300, 1000", v.Requests, v.P50, v.P99, v.QueueMs)
	}
}

func TestRecorderIsBounded(t *testing.T) {
	r := NewRecorder()
	at := time.Unix(0, 0)
	for i := range maxTracks * 3 {
		id := "i" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		r.StateChange("f", id, "", "starting", at)
		r.StateChange("f", id, "starting", "stopped", at)
	}
	for range maxLatencies * 2 {
		r.requestAt("f", time.Millisecond, 0, at)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if h := r.fns["f"]; len(h.tracks) > maxTracks || len(h.recent) > maxLatencies {
		t.Errorf("tracks %d (max %d), latencies %d (max %d)", len(h.tracks), maxTracks, len(h.recent), maxLatencies)
	}
}

// TestRecentLatenciesKeepTheNewest: once the window is full, each call
// replaces the oldest, so "p50 now" is over the latest maxLatencies calls.
func TestRecentLatenciesKeepTheNewest(t *testing.T) {
	r := NewRecorder()
	at := time.Unix(1000, 0)
	r.StateChange("f", "i1", "", "starting", at)
	for range maxLatencies {
		r.requestAt("f", 50*time.Millisecond, 0, at)
	}
	for i := range maxLatencies + maxLatencies/2 {
		r.requestAt("f", time.Duration(1+i%2)*time.Millisecond, 0, at.Add(time.Second))
	}
	v := r.function("f", at.Add(2*time.Second))
	if v.Requests != maxLatencies || v.P99 > 2 {
		t.Errorf("requests %d p99 %.1f ms, want %d calls of at most 2 ms (the 50 ms ones overwritten)", v.Requests, v.P99, maxLatencies)
	}
}

func TestSampleForgetsDeletedFunctions(t *testing.T) {
	r := NewRecorder()
	at := time.Unix(100, 0)
	r.requestAt("gone", time.Millisecond, 0, at)
	r.Sample(at, []observed{{Function: api.Function{Name: "kept"}}}, nil)
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.fns["gone"]; ok {
		t.Error("a deleted function's history stayed")
	}
	if h := r.fns["kept"]; h == nil || len(h.samples) != 1 {
		t.Error("the listed function got no sample")
	}
}
