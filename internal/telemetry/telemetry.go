// Package telemetry exports Ember's Prometheus metrics. It owns its own
// registry (no global state) and implements the observer interfaces that
// the gateway and the instance manager declare.
package telemetry

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// InstanceCounter counts live instances by state (instance manager).
type InstanceCounter interface {
	CountByState() map[string]int
}

// Metrics holds the registry and Ember's collectors.
type Metrics struct {
	Registry   *prometheus.Registry
	coldStart  *prometheus.HistogramVec
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	queueWait  *prometheus.HistogramVec
	coldReqs   *prometheus.CounterVec
	transition *prometheus.CounterVec
	// Hybrid routes (gateway.RouteObserver).
	routeDecisions *prometheus.CounterVec
	routeRequests  *prometheus.CounterVec
	// Learned keep-warm (controller.KeepWarmObserver).
	kwArrivals *prometheus.CounterVec
	kwAvoided  *prometheus.CounterVec
	kwIdle     *prometheus.CounterVec

	series sync.Map // function name → *series
}

// series is one function's request series, looked up once per call (a
// sync.Map read) rather than by hashing label values four times: Request
// runs on every call. No series is ever deleted, so a cached one stays
// the registry's.
type series struct {
	ok       prometheus.Counter // ember_requests_total, code 200
	duration prometheus.Observer
	queue    prometheus.Observer
	cold     prometheus.Counter
}

func (m *Metrics) seriesFor(fn string) *series {
	if s, ok := m.series.Load(fn); ok {
		return s.(*series)
	}
	s, _ := m.series.LoadOrStore(fn, &series{
		ok:       m.requests.WithLabelValues(fn, "200"),
		duration: m.duration.WithLabelValues(fn),
		queue:    m.queueWait.WithLabelValues(fn),
		cold:     m.coldReqs.WithLabelValues(fn),
	})
	return s.(*series)
}

// New registers Ember's metrics; instances feeds the ember_instances gauge.
func New(instances InstanceCounter) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	fine := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}
	m := &Metrics{
		Registry: reg,
		coldStart: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ember_cold_start_seconds", Help: "Time spent in each cold-start phase of new instances (phase=total for start to ready).",
			Buckets: fine}, []string{"function", "phase"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ember_requests_total", Help: "Invocations by function and HTTP status."}, []string{"function", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ember_request_duration_seconds", Help: "Invocation latency through Ember, queue wait included.",
			Buckets: fine}, []string{"function"}),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ember_queue_wait_seconds", Help: "Time invocations waited for an instance slot.",
			Buckets: fine}, []string{"function"}),
		coldReqs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ember_cold_requests_total", Help: "Invocations that waited for an instance to start."}, []string{"function"}),
		transition: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ember_instance_transitions_total", Help: "Instance state transitions."}, []string{"function", "to"}),
		routeDecisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ember_route_decisions_total", Help: "Routing decisions (at most about one a second per route while it is called) by route, chosen pool and reason."},
			[]string{"route", "choice", "reason"}),
		routeRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ember_route_requests_total", Help: "Calls to routes by the pool that took them; fallback=true when the chosen pool was down."},
			[]string{"route", "choice", "fallback"}),
	}
	m.kwArrivals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ember_keepwarm_arrivals_total", Help: "Requests after an idle gap of functions with idle_timeout: auto; predicted=true when the gap fell inside the learned window."},
		[]string{"function", "predicted"})
	m.kwAvoided = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ember_keepwarm_cold_starts_avoided_total", Help: "Requests after an idle gap that found an instance the learned keep-warm policy kept or pre-warmed."},
		[]string{"function"})
	m.kwIdle = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ember_keepwarm_idle_seconds_total", Help: "Idle instance-seconds spent by functions with idle_timeout: auto between requests."},
		[]string{"function"})
	reg.MustRegister(m.coldStart, m.requests, m.duration, m.queueWait, m.coldReqs, m.transition, m.routeDecisions, m.routeRequests,
		m.kwArrivals, m.kwAvoided, m.kwIdle)
	if instances != nil {
		reg.MustRegister(&instanceCollector{src: instances, desc: prometheus.NewDesc(
			"ember_instances", "Instances by state.", []string{"state"}, nil)})
	}
	return m
}

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// Request records one invocation (gateway.Observer).
func (m *Metrics) Request(fn string, status int, d, queue time.Duration, cold bool) {
	s := m.seriesFor(fn)
	if status == http.StatusOK {
		s.ok.Inc()
	} else {
		m.requests.WithLabelValues(fn, strconv.Itoa(status)).Inc()
	}
	s.duration.Observe(d.Seconds())
	s.queue.Observe(queue.Seconds())
	if cold {
		s.cold.Inc()
	}
}

// RouteDecision counts one routing decision (gateway.RouteObserver).
func (m *Metrics) RouteDecision(route, choice, reason string) {
	m.routeDecisions.WithLabelValues(route, choice, reason).Inc()
}

// RouteRequest counts one routed call (gateway.RouteObserver).
func (m *Metrics) RouteRequest(route, choice string, fallback bool) {
	m.routeRequests.WithLabelValues(route, choice, strconv.FormatBool(fallback)).Inc()
}

// Arrival counts a request after an idle gap (controller.KeepWarmObserver).
func (m *Metrics) Arrival(fn string, predicted, warm bool) {
	m.kwArrivals.WithLabelValues(fn, strconv.FormatBool(predicted)).Inc()
	if warm {
		m.kwAvoided.WithLabelValues(fn).Inc()
	}
}

// IdleSeconds adds idle instance-seconds (controller.KeepWarmObserver).
func (m *Metrics) IdleSeconds(fn string, s float64) {
	if s > 0 {
		m.kwIdle.WithLabelValues(fn).Add(s)
	}
}

// Phase records one cold-start phase (instance.Observer).
func (m *Metrics) Phase(fn, phase string, d time.Duration) {
	m.coldStart.WithLabelValues(fn, phase).Observe(d.Seconds())
}

// StateChange counts transitions (instance.Observer).
func (m *Metrics) StateChange(fn, id, from, to string, at time.Time) {
	if to != "" {
		m.transition.WithLabelValues(fn, to).Inc()
	}
}

// Busy is part of instance.Observer; metering consumes it, metrics do not.
func (m *Metrics) Busy(fn, id string, busy bool, at time.Time) {}

type instanceCollector struct {
	src  InstanceCounter
	desc *prometheus.Desc
}

func (c *instanceCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *instanceCollector) Collect(ch chan<- prometheus.Metric) {
	for state, n := range c.src.CountByState() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), state)
	}
}
