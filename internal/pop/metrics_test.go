package pop

import (
	"context"
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/verge-edge/verge/crdt"
)

// /metrics is Prometheus' text format, parsed by Prometheus' own parser,
// behind the operator token, and it counts what happened.
func TestMetrics(t *testing.T) {
	t.Parallel()
	n := newDeployNet(t, "c", "a")
	n.waitLinks()
	n.deployed(appDir(t, "shop", "hello.wasm", "[[collection]]\nname = \"carts\"\nscope = \"local\"\n"))
	n.deployed(appDir(t, "trap", "trap.wasm", ""))
	for i := 0; i < 5; i++ {
		n.get("a", "shop", "/")
	}
	n.get("a", "trap", "/")
	if _, err := n.pops["a"].Spot.Claim(context.Background(), "shop", "users", "ada", "u1"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.pops["a"].Docs.Update(context.Background(), "shop", "carts", "u1", []crdt.Op{{Op: "set", Path: "n", Value: []byte("1")}}); err != nil {
		t.Fatal(err)
	}

	if code, _ := scrapeMetrics(t, n.pops["a"].AdminAddr(), ""); code != 401 {
		t.Fatalf("/metrics without the token: %d", code)
	}
	_, fams := scrapeMetrics(t, n.pops["a"].AdminAddr(), "tok")
	for _, c := range []struct {
		name   string
		labels map[string]string
		min    float64
	}{
		{"verge_http_requests_total", map[string]string{"app": "shop", "function": "fn", "code": "200", "pop": "a"}, 5},
		{"verge_http_requests_total", map[string]string{"app": "trap", "code": "500"}, 1},
		{"verge_http_request_duration_seconds", map[string]string{"app": "shop"}, 5},
		{"verge_guest_cpu_seconds_total", map[string]string{"app": "shop"}, 0},
		{"verge_spot_operations_total", map[string]string{"op": "claim", "outcome": "ok"}, 1},
		{"verge_spot_operation_duration_seconds", map[string]string{"op": "claim"}, 1},
		{"verge_store_commits_total", nil, 1},
		{"verge_store_commit_duration_seconds", nil, 1},
		{"verge_replication_unacked_entries", map[string]string{"peer": "c"}, -1},
		{"verge_replication_lag_seconds", map[string]string{"peer": "c"}, 0},
		{"verge_app_version_info", map[string]string{"app": "shop"}, 1},
		{"verge_guest_instances", map[string]string{"app": "shop", "state": "idle"}, 1},
		{"verge_guest_instance_starts_total", map[string]string{"app": "shop"}, 1},
		{"verge_antientropy_repaired_documents_total", nil, 0},
	} {
		v, ok := metricValue(fams, c.name, c.labels)
		if !ok || v < c.min {
			t.Errorf("%s%v = %v (found %v), want at least %v", c.name, c.labels, v, ok, c.min)
		}
	}
	// Names follow Prometheus' conventions.
	for name, f := range fams {
		if f.GetType() == dto.MetricType_COUNTER && !strings.HasSuffix(name, "_total") {
			t.Errorf("counter %s does not end in _total", name)
		}
		if strings.Contains(name, "duration") && !strings.HasSuffix(name, "_seconds") {
			t.Errorf("%s is a duration not in seconds", name)
		}
	}
}

// scrapeMetrics reads a PoP's /metrics with Prometheus' parser.
func scrapeMetrics(t *testing.T, admin, token string) (int, map[string]*dto.MetricFamily) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+admin+"/metrics", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return resp.StatusCode, nil
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("the metrics do not parse: %v", err)
	}
	return 200, fams
}

// metricValue is the value of the first series of name whose labels
// include labels (a histogram's: its sample count).
func metricValue(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}
