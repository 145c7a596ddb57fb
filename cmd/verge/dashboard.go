package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/verge-edge/verge/internal/admin"
	"github.com/verge-edge/verge/internal/deploy"
	"github.com/verge-edge/verge/internal/obs"
)

//go:embed dashboard.html
var dashboardPage []byte

func runDashboard(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dashboard", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("net", "", "the network's directory (verge net up --dir)")
	listen := fs.String("listen", "127.0.0.1:8090", "address to serve the dashboard on (loopback only: it shows what the operator token reaches)")
	jaeger := fs.String("jaeger", "", "a trace viewer's URL (Jaeger's UI); slow requests link to their trace there")
	every := fs.Duration("every", time.Second, "how often the PoPs are asked")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: verge dashboard --net DIR [--listen ADDR] [--jaeger URL]\n\nServes a live page: every PoP and link on a world map, replication lag,\nthe version each PoP serves and rollouts, request rates and errors, SPOT latency,\nand recent slow requests.\n\nflags:")
		fs.PrintDefaults()
	}
	if pos, err := parseInterspersed(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return &usageError{"verge dashboard takes no arguments"}
	}
	if !admin.IsLoopback(*listen) {
		return &usageError{fmt.Sprintf("--listen %s: the dashboard shows what the operator token reaches; serve it on loopback", *listen)}
	}
	nf, err := readNet(*dir)
	if err != nil {
		return err
	}
	d := &dashboard{net: nf, jaeger: strings.TrimRight(*jaeger, "/"), subs: map[chan []byte]bool{}, prev: map[string]counters{}}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go d.poll(ctx, *every)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(dashboardPage)
	})
	mux.HandleFunc("GET /snapshot", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(d.latest())
	})
	mux.HandleFunc("GET /events", d.events)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	fmt.Fprintf(stdout, "verge: dashboard http://%s\n", ln.Addr())
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	return nil
}

// dashboard polls the PoPs and pushes snapshots to the pages watching.
type dashboard struct {
	net    *netFile
	jaeger string

	mu   sync.Mutex
	snap []byte
	subs map[chan []byte]bool
	prev map[string]counters // per PoP, the counters at the last poll
}

// counters are what rates are computed from.
type counters struct {
	at                          time.Time
	requests, errors            float64
	spotCount, spotSum          float64
	spotOK, spotUnavailable     float64
	replicationBatches, applied float64
}

// snapshot is what the page draws.
type snapshot struct {
	At     time.Time        `json:"at"`
	Jaeger string           `json:"jaeger,omitempty"`
	PoPs   []popView        `json:"pops"`
	Apps   []deploy.AppView `json:"apps"`
}

type popView struct {
	ID      string            `json:"id"`
	Region  string            `json:"region"`
	Lat     float64           `json:"lat"`
	Lon     float64           `json:"lon"`
	Central bool              `json:"central"`
	Up      bool              `json:"up"`
	Links   []linkView        `json:"links"`
	Serving map[string]string `json:"serving"`
	RPS     float64           `json:"rps"`
	ErrRPS  float64           `json:"errors_rps"`
	SpotMs  float64           `json:"spot_ms"` // mean latency of SPOT operations since the last poll
	Slow    []obs.Slow        `json:"slow"`
}

type linkView struct {
	Peer        string   `json:"peer"`
	Connected   bool     `json:"connected"`
	Partitioned bool     `json:"partitioned"`
	OneWayMs    float64  `json:"one_way_ms"`
	Unacked     *uint64  `json:"unacked"`
	LagSeconds  *float64 `json:"lag_s,omitempty"`
}

func (d *dashboard) latest() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.snap == nil {
		return []byte("{}")
	}
	return d.snap
}

// events streams snapshots as server-sent events.
func (d *dashboard) events(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	ch := make(chan []byte, 4)
	d.mu.Lock()
	d.subs[ch] = true
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.subs, ch)
		d.mu.Unlock()
	}()
	rc := http.NewResponseController(w)
	send := func(b []byte) bool {
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send(d.latest()) {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case b := <-ch:
			if !send(b) {
				return
			}
		}
	}
}

func (d *dashboard) poll(ctx context.Context, every time.Duration) {
	for {
		d.pollOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

func (d *dashboard) pollOnce(ctx context.Context) {
	s := snapshot{At: time.Now().UTC(), Jaeger: d.jaeger}
	views := make([]popView, len(d.net.PoPs))
	var wg sync.WaitGroup
	for i, p := range d.net.PoPs {
		wg.Go(func() { views[i] = d.pollPoP(ctx, p) })
		if p.Central {
			wg.Go(func() {
				var out struct {
					Apps []deploy.AppView `json:"apps"`
				}
				if d.get(ctx, p, "/v1/apps", &out) == nil {
					s.Apps = out.Apps
				}
			})
		}
	}
	wg.Wait()
	s.PoPs = views
	b, _ := json.Marshal(s)
	d.mu.Lock()
	d.snap = b
	for ch := range d.subs {
		select {
		case ch <- b:
		default: // a page too slow for one snapshot a second gets the next
		}
	}
	d.mu.Unlock()
}

func (d *dashboard) get(ctx context.Context, p netPoP, path string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 800*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+p.Admin+path, nil)
	req.Header.Set("Authorization", "Bearer "+d.net.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	if path == "/metrics" {
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(resp.Body)
		if err != nil {
			return err
		}
		*(v.(*map[string]*dto.MetricFamily)) = fams
		return nil
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(v)
}

func (d *dashboard) pollPoP(ctx context.Context, p netPoP) popView {
	v := popView{ID: p.ID, Region: p.Region, Lat: p.Lat, Lon: p.Lon, Central: p.Central, Links: []linkView{}, Serving: map[string]string{}, Slow: []obs.Slow{}}
	var links struct {
		Links []struct {
			Peer        string  `json:"peer"`
			Connected   bool    `json:"connected"`
			Partitioned bool    `json:"partitioned"`
			OneWayMs    float64 `json:"one_way_ms"`
			Unacked     *uint64 `json:"unacked"`
		} `json:"links"`
	}
	if err := d.get(ctx, p, "/v1/net/links", &links); err != nil {
		return v // down, or not answering: that is what the page shows
	}
	v.Up = true
	var fams map[string]*dto.MetricFamily
	d.get(ctx, p, "/metrics", &fams)
	lag := map[string]float64{}
	for _, m := range family(fams, "verge_replication_lag_seconds") {
		lag[label(m, "peer")] = m.GetGauge().GetValue()
	}
	for _, l := range links.Links {
		lv := linkView{Peer: l.Peer, Connected: l.Connected, Partitioned: l.Partitioned, OneWayMs: l.OneWayMs, Unacked: l.Unacked}
		if s, ok := lag[l.Peer]; ok {
			lv.LagSeconds = &s
		}
		v.Links = append(v.Links, lv)
	}
	var apps struct {
		Serving map[string]string `json:"serving"`
	}
	if d.get(ctx, p, "/v1/apps", &apps) == nil && apps.Serving != nil {
		v.Serving = apps.Serving
	}
	var slow struct {
		Slow []obs.Slow `json:"slow"`
	}
	if d.get(ctx, p, "/v1/slow", &slow) == nil && slow.Slow != nil {
		v.Slow = slow.Slow
	}
	now := counters{at: time.Now()}
	for _, m := range family(fams, "verge_http_requests_total") {
		now.requests += m.GetCounter().GetValue()
		if strings.HasPrefix(label(m, "code"), "5") {
			now.errors += m.GetCounter().GetValue()
		}
	}
	for _, m := range family(fams, "verge_spot_operation_duration_seconds") {
		now.spotCount += float64(m.GetHistogram().GetSampleCount())
		now.spotSum += m.GetHistogram().GetSampleSum()
	}
	d.mu.Lock()
	prev, ok := d.prev[p.ID]
	d.prev[p.ID] = now
	d.mu.Unlock()
	if ok {
		secs := now.at.Sub(prev.at).Seconds()
		v.RPS = max(0, (now.requests-prev.requests)/secs)
		v.ErrRPS = max(0, (now.errors-prev.errors)/secs)
		if n := now.spotCount - prev.spotCount; n > 0 {
			v.SpotMs = 1000 * (now.spotSum - prev.spotSum) / n
		}
	}
	return v
}

func family(fams map[string]*dto.MetricFamily, name string) []*dto.Metric {
	if f := fams[name]; f != nil {
		return f.Metric
	}
	return nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.Label {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
