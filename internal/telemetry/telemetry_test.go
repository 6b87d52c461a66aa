package telemetry

import (
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// TestRequestSeries: a call lands in its function's series and its
// status's, whether the series was cached or not.
func TestRequestSeries(t *testing.T) {
	m := New(nil)
	m.Request("a", 200, 2*time.Millisecond, 0, true)
	m.Request("a", 200, 3*time.Millisecond, time.Millisecond, false)
	m.Request("a", 503, time.Millisecond, 0, false)
	m.Request("b", 200, time.Millisecond, 0, false)

	got := gather(t, m)
	want := map[string]float64{
		`ember_requests_total{function="a",code="200"}`: 2,
		`ember_requests_total{function="a",code="503"}`: 1,
		`ember_requests_total{function="b",code="200"}`: 1,
		`ember_cold_requests_total{function="a"}`:       1,
		`ember_cold_requests_total{function="b"}`:       0,
		`ember_request_duration_seconds{function="a"}`:  3,
		`ember_request_duration_seconds{function="b"}`:  1,
		`ember_queue_wait_seconds{function="a"}`:        3,
		`ember_queue_wait_seconds{function="b"}`:        1,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected series %s = %v", k, got[k])
		}
	}
}

// gather returns the request series: counters' values and histograms'
// sample counts, keyed name{labels}.
func gather(t *testing.T, m *Metrics) map[string]float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "ember_requests_total", "ember_cold_requests_total", "ember_request_duration_seconds", "ember_queue_wait_seconds":
		default:
			continue
		}
		for _, mt := range mf.GetMetric() {
			out[mf.GetName()+labels(mt)] = value(mt)
		}
	}
	return out
}

func labels(mt *dto.Metric) string {
	var fn, code string
	for _, l := range mt.GetLabel() {
		switch l.GetName() {
		case "function":
			fn = l.GetValue()
		case "code":
			code = l.GetValue()
		}
	}
	if code != "" {
		return `{function="` + fn + `",code="` + code + `"}`
	}
	return `{function="` + fn + `"}`
}

func value(mt *dto.Metric) float64 {
	if h := mt.GetHistogram(); h != nil {
		return float64(h.GetSampleCount())
	}
	return mt.GetCounter().GetValue()
}

func BenchmarkRequest(b *testing.B) {
	m := New(nil)
	b.ReportAllocs()
	for b.Loop() {
		m.Request("acme/chat", 200, 3*time.Millisecond, 0, false)
	}
}
