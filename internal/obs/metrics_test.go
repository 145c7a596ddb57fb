package obs

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"net/http/httptest"
)

// What a request pays for metrics: a counter and a histogram observation.
// Compare with a hello-go request's ~50 µs (docs/benchmarks.md).
func BenchmarkRequestMetrics(b *testing.B) {
	m := NewMetrics("sfo")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Request("shop", "fn", 200, 1500*time.Microsecond)
		}
	})
}

// The pull collectors render what their read functions return, parsed by
// Prometheus' own parser.
func TestCollect(t *testing.T) {
	t.Parallel()
	m := NewMetrics("sfo")
	m.Collect("verge_test_things", "Things.", GaugeValue, "sfo", []string{"app"}, func() []Gauge {
		return []Gauge{{Labels: []string{"a"}, Value: 2}, {Labels: []string{"b"}, Value: 3}}
	})
	m.Request("a", "fn", 200, time.Millisecond)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	if err != nil {
		t.Fatal(err)
	}
	f := fams["verge_test_things"]
	if f == nil || len(f.Metric) != 2 || f.Metric[0].GetGauge().GetValue()+f.Metric[1].GetGauge().GetValue() != 5 {
		t.Fatalf("verge_test_things: %v", f)
	}
	if c := fams["verge_http_requests_total"]; c == nil || c.Metric[0].GetCounter().GetValue() != 1 {
		t.Fatalf("verge_http_requests_total: %v", c)
	}
}

// The memory a PoP's metrics hold for 200 apps, each with two functions
// that answered three status codes, used CPU and hit a limit, and the time
// one scrape of all of it takes. Reported as heap bytes per app.
func BenchmarkMetrics200Apps(b *testing.B) {
	const apps = 200
	var before, after runtime.MemStats
	for range b.N {
		runtime.GC()
		runtime.ReadMemStats(&before)
		m := NewMetrics("sfo")
		for a := range apps {
			app := fmt.Sprintf("app-%03d", a)
			for _, fn := range []string{"web", "api"} {
				for _, code := range []int{200, 404, 500} {
					m.Request(app, fn, code, time.Millisecond)
				}
				m.GuestCPU.WithLabelValues(app, fn).Add(0.001)
				m.LimitHits.WithLabelValues(app, fn, "cpu_time").Inc()
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/apps, "heap-B/app")
		start := time.Now()
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		b.ReportMetric(float64(time.Since(start).Microseconds()), "scrape-µs")
		b.ReportMetric(float64(rec.Body.Len()), "scrape-B")
		runtime.KeepAlive(m)
	}
}

// Served counts a request, its CPU time and its limit; with VERGE_METRICS=off
// it counts nothing.
func TestServed(t *testing.T) {
	for _, off := range []bool{false, true} {
		if off {
			t.Setenv("VERGE_METRICS", "off")
		}
		m := NewMetrics("p")
		m.Served("a", "fn", 429, time.Millisecond, 2*time.Second, "cpu_time")
		want := 1.0
		if off {
			want = 0
		}
		if got := testutil.ToFloat64(m.Requests.WithLabelValues("a", "fn", "429")); got != want {
			t.Errorf("off=%v: requests %v, want %v", off, got, want)
		}
		if got := testutil.ToFloat64(m.GuestCPU.WithLabelValues("a", "fn")); got != 2*want {
			t.Errorf("off=%v: guest CPU %v, want %v", off, got, 2*want)
		}
		if got := testutil.ToFloat64(m.LimitHits.WithLabelValues("a", "fn", "cpu_time")); got != want {
			t.Errorf("off=%v: limit hits %v, want %v", off, got, want)
		}
	}
}

// AppServed counts what Served counts, in the same series, whichever
// function and status come first.
func TestAppServed(t *testing.T) {
	t.Parallel()
	m := NewMetrics("sfo")
	served := m.AppServed("shop")
	for range 3 {
		served("fn", 200, time.Millisecond, 2*time.Millisecond, "")
	}
	served("fn", 500, time.Millisecond, time.Millisecond, "cpu_time")
	served("other", 200, time.Millisecond, 0, "")
	m.Served("shop", "fn", 200, time.Millisecond, time.Millisecond, "")
	for _, c := range []struct {
		labels []string
		want   float64
	}{{[]string{"shop", "fn", "200"}, 4}, {[]string{"shop", "fn", "500"}, 1}, {[]string{"shop", "other", "200"}, 1}} {
		if got := testutil.ToFloat64(m.Requests.WithLabelValues(c.labels...)); got != c.want {
			t.Errorf("requests%v = %v, want %v", c.labels, got, c.want)
		}
	}
	if got := testutil.ToFloat64(m.GuestCPU.WithLabelValues("shop", "fn")); got < 0.0079 || got > 0.0081 {
		t.Errorf("guest CPU = %v s, want 0.008", got)
	}
	if got := testutil.ToFloat64(m.LimitHits.WithLabelValues("shop", "fn", "cpu_time")); got != 1 {
		t.Errorf("limit hits = %v, want 1", got)
	}
	if got := testutil.CollectAndCount(m.RequestDuration); got != 2 {
		t.Errorf("%d duration series, want 2", got)
	}
}
