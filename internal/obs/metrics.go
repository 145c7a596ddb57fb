package obs

import (
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are a PoP's Prometheus metrics, in a registry of their own (tests
// run several PoPs in one process). What happens on the request path is
// counted as it happens; what a component already counts (replication,
// the store, escrows, instances) is read when scraped, through Collect
// functions, so that it costs nothing in between.
type Metrics struct {
	reg *prometheus.Registry

	Requests        *prometheus.CounterVec
	RequestDuration *prometheus.HistogramVec
	GuestCPU        *prometheus.CounterVec
	LimitHits       *prometheus.CounterVec
	SpotOps         *prometheus.CounterVec
	SpotDuration    *prometheus.HistogramVec
	StoreCommit     prometheus.Histogram

	// off: VERGE_METRICS=off, requests are not counted (Served records
	// nothing); what a PoP reads when scraped is still served. It exists
	// to measure what counting costs (bench/http -trace nometrics).
	off bool
}

// NewMetrics returns the metrics of PoP pop (a constant label on every
// series).
func NewMetrics(pop string) *Metrics {
	reg := prometheus.NewRegistry()
	labels := prometheus.Labels{"pop": pop}
	m := &Metrics{reg: reg, off: os.Getenv("VERGE_METRICS") == "off"}
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m.Requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "verge_http_requests_total",
		Help: "Requests an app served at this PoP, by function and HTTP status code.", ConstLabels: labels}, []string{"app", "function", "code"})
	m.RequestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "verge_http_request_duration_seconds",
		Help: "Time from a request's arrival at the app to its response, at this PoP.", ConstLabels: labels,
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"app", "function"})
	m.GuestCPU = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "verge_guest_cpu_seconds_total",
		Help: "CPU time guests used (thread CPU clock once a request yields; its time in the guest before).", ConstLabels: labels}, []string{"app", "function"})
	m.LimitHits = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "verge_limit_hits_total",
		Help: "Requests stopped by a limit, by kind (cpu_time, wall_time, memory, request_body, response_body, concurrency).", ConstLabels: labels}, []string{"app", "function", "kind"})
	m.SpotOps = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "verge_spot_operations_total",
		Help: "Operations on the single point of truth from this PoP, by outcome (ok, conflict, invalid, unavailable, unknown, error).", ConstLabels: labels}, []string{"op", "outcome"})
	m.SpotDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "verge_spot_operation_duration_seconds",
		Help: "Latency of operations on the single point of truth, as this PoP saw it.", ConstLabels: labels,
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}, []string{"op"})
	m.StoreCommit = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "verge_store_commit_duration_seconds",
		Help: "Time to write and fsync one group of the store's writes.", ConstLabels: labels,
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25}})
	for _, c := range []prometheus.Collector{m.Requests, m.RequestDuration, m.GuestCPU, m.LimitHits, m.SpotOps, m.SpotDuration, m.StoreCommit,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		f(c)
	}
	return m
}

// Handler serves the metrics in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Request records one request an app served here.
func (m *Metrics) Request(app, function string, code int, d time.Duration) {
	if m == nil {
		return
	}
	m.Requests.WithLabelValues(app, function, strconv.Itoa(code)).Inc()
	m.RequestDuration.WithLabelValues(app, function).Observe(d.Seconds())
}

// Served records one request a guest served: its count and latency, the
// guest's CPU time, and the limit that stopped it if one did.
func (m *Metrics) Served(app, function string, code int, d, cpu time.Duration, limit string) {
	if m == nil || m.off {
		return
	}
	m.Request(app, function, code, d)
	m.GuestCPU.WithLabelValues(app, function).Add(cpu.Seconds())
	if limit != "" {
		m.LimitHits.WithLabelValues(app, function, limit).Inc()
	}
}

// AppServed returns Served for app's requests, with the series of each
// function and status looked up once: a series lookup hashes its label
// values and takes the vector's lock, three times a request through Served.
// Series are never deleted, so the ones it keeps stay those of the
// registry.
func (m *Metrics) AppServed(app string) func(function string, code int, d, cpu time.Duration, limit string) {
	if m == nil || m.off {
		return func(string, int, time.Duration, time.Duration, string) {}
	}
	type key struct {
		function string
		code     int
	}
	type series struct {
		requests prometheus.Counter
		duration prometheus.Observer
		cpu      prometheus.Counter
	}
	var mu sync.Mutex
	var known atomic.Pointer[map[key]*series] // replaced whole on a new series
	known.Store(&map[key]*series{})
	return func(function string, code int, d, cpu time.Duration, limit string) {
		k := key{function, code}
		s := (*known.Load())[k]
		if s == nil {
			mu.Lock()
			old := *known.Load()
			if s = old[k]; s == nil {
				s = &series{m.Requests.WithLabelValues(app, function, strconv.Itoa(code)),
					m.RequestDuration.WithLabelValues(app, function), m.GuestCPU.WithLabelValues(app, function)}
				next := make(map[key]*series, len(old)+1)
				for k, v := range old {
					next[k] = v
				}
				next[k] = s
				known.Store(&next)
			}
			mu.Unlock()
		}
		s.requests.Inc()
		s.duration.Observe(d.Seconds())
		s.cpu.Add(cpu.Seconds())
		if limit != "" {
			m.LimitHits.WithLabelValues(app, function, limit).Inc()
		}
	}
}

// Gauge is one series of a collected gauge or counter: its label values
// and value.
type Gauge struct {
	Labels []string
	Value  float64
}

// Collect registers a metric read when scraped: kind is prometheus's
// GaugeValue or CounterValue; read returns the series.
func (m *Metrics) Collect(name, help string, kind prometheus.ValueType, pop string, labels []string, read func() []Gauge) {
	m.reg.MustRegister(&collector{desc: prometheus.NewDesc(name, help, labels, prometheus.Labels{"pop": pop}), kind: kind, read: read})
}

type collector struct {
	desc *prometheus.Desc
	kind prometheus.ValueType
	read func() []Gauge
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for _, g := range c.read() {
		ch <- prometheus.MustNewConstMetric(c.desc, c.kind, g.Value, g.Labels...)
	}
}

// Value types for Collect.
const (
	GaugeValue   = prometheus.GaugeValue
	CounterValue = prometheus.CounterValue
)
