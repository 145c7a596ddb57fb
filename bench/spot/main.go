// Command spot measures the single point of truth (SPOT) and the hybrid
// threshold of bounded stocks as a PoP assembles them: several PoPs
// (internal/pop) run in this process, each dialing its peers through its
// own emulated WAN link layer (internal/netsim), with real stores in a
// temporary directory removed at the end. The centre's SPOT engine always
// fsyncs (JetStream sync_always); the PoPs' document stores do too unless
// -nosync.
//
//	go run ./bench/spot [-scenario all|latency|throughput|threshold] [-pops 6] [-base 2ms] [-scale 1] [-nosync]
//	    [-latency-ops 100]
//	    [-tput-for 5s] [-tput-conc 1,64]
//	    [-stock-at fra] [-threshold 1000] [-grant 100] [-above-takes 1000] [-below-takes 50]
//	    [-stock-conc 16] [-stock-for 3s]
//
// Scenarios:
//
//   - latency: claim (distinct keys), take (a stock not declared in the
//     manifest: always at the centre) and UpdateDoc (at the right
//     revision), called the way functions call them, serially from every
//     PoP at once over the WAN at real-world latency. Per PoP, p50/p99 next
//     to the round trip to the centre and to a bare request over the same
//     link (what the emulation and NATS cost alone); goal one round trip +
//     2 ms.
//   - throughput: claims/s on distinct keys and takes/s on one hot counter
//     directly on the centre's engine, at each concurrency of -tput-conc.
//   - threshold: a declared stock at one edge PoP, well above its
//     threshold (served from the PoP's escrow) and at it (every take at the
//     centre), next to a local document write at the same PoP; then takes/s
//     with -stock-conc concurrent takers against writes/s.
//
// Every scenario starts its own PoPs. Each scenario's JSON object goes to
// stdout as it finishes; a one-line summary per scenario goes to stderr at
// the end.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bc "github.com/verge-edge/verge/bench/internal/cluster"
	"github.com/verge-edge/verge/bench/internal/harness"
	"github.com/verge-edge/verge/crdt"
	"github.com/verge-edge/verge/internal/netsim"
)

const (
	appName    = "bench"
	localColl  = "counts" // local scope: a write costs one fsync at the PoP
	openStock  = "open"   // not declared: every take at the centre
	plentyName = "plenty" // declared, restocked far above the threshold
	scarceName = "scarce" // declared, restocked to the threshold
)

// declsFor are the app's collection and stocks: the harness calls the PoPs'
// services directly, so the app has no function.
func declsFor(threshold, grant int64) string {
	return fmt.Sprintf(`
[[collection]]
name = %q
scope = "local"

[[counter]]
name = %q
threshold = %d
grant = %d

[[counter]]
name = %q
threshold = %d
grant = %d
`, localColl, plentyName, threshold, grant, scarceName, threshold, grant)
}

type config struct {
	pops    int
	noSync  bool
	base    time.Duration
	scale   float64
	verbose bool

	latencyOps int

	tputFor  time.Duration
	tputConc []int

	stockAt    string
	threshold  int64
	grant      int64
	aboveTakes int
	belowTakes int
	stockConc  int
	stockFor   time.Duration
}

func defaultConfig() config {
	return config{
		pops: 6, base: 2 * time.Millisecond, scale: 1,
		latencyOps: 100,
		tputFor:    5 * time.Second, tputConc: []int{1, 64},
		stockAt: "fra", threshold: 1000, grant: 100, aboveTakes: 1000, belowTakes: 50,
		stockConc: 16, stockFor: 3 * time.Second,
	}
}

// bench names the scenarios and runs them.
var bench = &harness.Command{Name: "bench/spot", Scenarios: []string{"latency", "throughput", "threshold"}}

func main() {
	cfg := defaultConfig()
	scenario := bench.ScenarioFlag()
	flag.IntVar(&cfg.pops, "pops", cfg.pops, "number of PoPs (2..10; the first, ord, is central)")
	flag.BoolVar(&cfg.noSync, "nosync", false, "acknowledge document writes (and escrow changes) before fsync; the SPOT engine always fsyncs")
	flag.DurationVar(&cfg.base, "base", cfg.base, "fixed one-way cost per link (netsim Model.Base)")
	flag.Float64Var(&cfg.scale, "scale", cfg.scale, "WAN latency scale for latency and threshold (1 real-world)")
	flag.BoolVar(&cfg.verbose, "v", false, "log the PoPs' warnings to stderr")
	flag.IntVar(&cfg.latencyOps, "latency-ops", cfg.latencyOps, "latency: operations of each kind per PoP")
	flag.DurationVar(&cfg.tputFor, "tput-for", cfg.tputFor, "throughput: how long each run lasts")
	conc := flag.String("tput-conc", "1,64", "throughput: comma-separated concurrencies, one run each")
	flag.StringVar(&cfg.stockAt, "stock-at", cfg.stockAt, "threshold: the edge PoP that takes")
	flag.Int64Var(&cfg.threshold, "threshold", cfg.threshold, "threshold: the declared stocks' threshold")
	flag.Int64Var(&cfg.grant, "grant", cfg.grant, "threshold: the declared stocks' grant")
	flag.IntVar(&cfg.aboveTakes, "above-takes", cfg.aboveTakes, "threshold: serial takes above the threshold")
	flag.IntVar(&cfg.belowTakes, "below-takes", cfg.belowTakes, "threshold: serial takes at the threshold (each a round trip)")
	flag.IntVar(&cfg.stockConc, "stock-conc", cfg.stockConc, "threshold: concurrent takers for takes/s (0 skips)")
	flag.DurationVar(&cfg.stockFor, "stock-for", cfg.stockFor, "threshold: how long the concurrent runs last")
	bench.Parse()
	var err error
	if cfg.tputConc, err = harness.ParseInts(*conc, "1,64"); err != nil {
		bench.Fatalf("-tput-conc %q: %v", *conc, err)
	}
	if err := cfg.check(); err != nil {
		bench.Fatalf("%v", err)
	}
	bench.Run(bench.Select(*scenario), func(ctx context.Context, s string) (harness.Result, error) { return runScenario(ctx, cfg, s) })
}

func (c *config) check() error {
	if err := bc.CheckPoPs(c.pops); err != nil {
		return err
	}
	ids := bc.IDs(c.pops)
	if !slices.Contains(ids[1:], c.stockAt) {
		return fmt.Errorf("-stock-at %q: want an edge PoP, one of %v", c.stockAt, ids[1:])
	}
	switch {
	case c.scale < 0 || c.base < 0:
		return errors.New("-scale and -base must be ≥ 0")
	case c.latencyOps < 1:
		return errors.New("-latency-ops must be positive")
	case c.tputFor <= 0 || len(c.tputConc) == 0:
		return errors.New("-tput-for must be positive and -tput-conc list at least one concurrency")
	case c.grant < 1 || c.threshold < 0:
		return errors.New("-grant must be positive and -threshold ≥ 0")
	case c.aboveTakes < 1 || c.belowTakes < 1:
		return errors.New("-above-takes and -below-takes must be positive")
	case int64(c.belowTakes) > c.threshold:
		// The scarce stock holds exactly the threshold: more takes than
		// that would run it dry and measure refusals instead of sales.
		return fmt.Errorf("-below-takes %d: at most -threshold (%d), the units the stock at the threshold holds", c.belowTakes, c.threshold)
	case c.stockConc < 0 || (c.stockConc > 0 && c.stockFor <= 0):
		return errors.New("-stock-conc must be ≥ 0 and -stock-for positive")
	}
	return nil
}

func runScenario(ctx context.Context, cfg config, name string) (harness.Result, error) {
	switch name {
	case "latency":
		return runLatency(ctx, cfg)
	case "throughput":
		return runThroughput(ctx, cfg)
	case "threshold":
		return runThreshold(ctx, cfg)
	}
	return nil, fmt.Errorf("no scenario %q", name)
}

// env is what every result records about the machine and the setup.
type env struct {
	Go           string   `json:"go"`
	CPUs         int      `json:"cpus"`
	PoPs         []string `json:"pops"`
	NoSync       bool     `json:"nosync"`
	LatencyScale float64  `json:"latency_scale"`
	BaseMs       float64  `json:"base_ms"`
	StartupMs    float64  `json:"startup_ms"`
	// FsyncP50Ms is the disk's cost of a 4 KiB append and fsync in the
	// PoPs' directory, measured before the PoPs start: the floor of every
	// durable write below.
	FsyncP50Ms float64 `json:"fsync_p50_ms"`
	FsyncP99Ms float64 `json:"fsync_p99_ms"`
}

// ---- the cluster ----

type cluster struct {
	*bc.Cluster
	env env
}

// startCluster starts cfg.pops PoPs over a WAN of model m and waits until
// every edge reaches the centre's SPOT.
func startCluster(ctx context.Context, cfg config, m netsim.Model) (_ *cluster, err error) {
	man, err := bc.DataManifest(appName, declsFor(cfg.threshold, cfg.grant))
	if err != nil {
		return nil, err
	}
	cc, err := bc.Start(ctx, bc.Options{PoPs: cfg.pops, Model: m, Manifest: man, NoSync: cfg.noSync, Verbose: cfg.verbose})
	if err != nil {
		return nil, err
	}
	c := &cluster{Cluster: cc}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	fsync, err := fsyncCost(cc.Dir, 200)
	if err != nil {
		return nil, fmt.Errorf("measuring fsync in %s: %w", cc.Dir, err)
	}
	// An edge's SPOT client fails fast while its link to the centre is
	// not up yet: wait until every edge gets an answer.
	for _, id := range c.IDs {
		err := bc.Wait(ctx, 60*time.Second, 20*time.Millisecond, func() error {
			_, err := c.PoPs[id].Spot.Counter(ctx, appName, "warm")
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("%s did not reach the centre's SPOT within 60 s of starting: %w", id, err)
		}
	}
	if m.Scale == 0 {
		m.Base = 0 // no delay at all: do not report one
	}
	c.env = env{
		Go: runtime.Version(), CPUs: runtime.NumCPU(), PoPs: c.IDs, NoSync: cfg.noSync,
		LatencyScale: m.Scale, BaseMs: harness.Ms(m.Base), StartupMs: harness.Ms(cc.Started),
		FsyncP50Ms: harness.Ms(harness.Percentile(fsync, 0.5)), FsyncP99Ms: harness.Ms(harness.Percentile(fsync, 0.99)),
	}
	return c, nil
}

func (c *cluster) close() { c.Cluster.Close() }

// rtt is the round trip from an edge PoP to the centre over its dialed
// link: netsim delays both directions on the dialing side, so a request
// and its reply cost exactly twice the one-way latency.
func (c *cluster) rtt(id string) time.Duration {
	for _, l := range c.Layers[id].Links() {
		if l.Peer == c.Central {
			return 2 * l.OneWay
		}
	}
	return 0
}

// fsyncCost times n appends of 4 KiB, each followed by an fsync, sorted.
func fsyncCost(dir string, n int) ([]time.Duration, error) {
	f, err := os.CreateTemp(dir, "fsync-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	out := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		if _, err := f.Write(buf); err != nil {
			return nil, err
		}
		if err := f.Sync(); err != nil {
			return nil, err
		}
		out = append(out, time.Since(t0))
	}
	slices.Sort(out)
	return out, nil
}

func incrOp(path string, n int) crdt.Op {
	return crdt.Op{Op: "increment", Path: path, Value: json.RawMessage(strconv.Itoa(n))}
}

// stats summarises latencies (sorted in place).
type stats struct {
	N     int     `json:"n"`
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
}

func summarize(v []time.Duration) stats {
	slices.Sort(v)
	return stats{N: len(v), P50Ms: harness.Ms(harness.Percentile(v, 0.5)), P99Ms: harness.Ms(harness.Percentile(v, 0.99)), MaxMs: harness.Ms(harness.Percentile(v, 1))}
}

// timed runs fn from workers goroutines until d has passed (or fn fails)
// and returns every call's latency, the first error and the elapsed time.
// Each worker gets its index, for keys of its own.
func timed(ctx context.Context, workers int, d time.Duration, fn func(ctx context.Context, w int) error) ([]time.Duration, time.Duration, error) {
	var mu sync.Mutex
	var all []time.Duration
	start := time.Now()
	end := start.Add(d)
	err := harness.Workers(ctx, workers, func(ctx context.Context, w int) error {
		var lat []time.Duration
		defer func() {
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
		for ctx.Err() == nil && time.Now().Before(end) {
			t0 := time.Now()
			if err := fn(ctx, w); err != nil {
				return err
			}
			lat = append(lat, time.Since(t0))
		}
		return nil
	})
	return all, time.Since(start), err
}

// ---- latency ----

type latencyResult struct {
	Scenario string `json:"scenario"`
	Env      env    `json:"env"`
	Central  string `json:"central"`
	OpsEach  int    `json:"ops_each"` // per operation kind and PoP
	// Rows: the centre first (its functions call the engine in-process;
	// round trip 0), then every edge PoP.
	Rows    []latencyRow `json:"pops"`
	Met     bool         `json:"goal_met"` // every row's p50 within its goal
	P99Met  bool         `json:"p99_within_goal"`
	PingMet bool         `json:"goal_met_over_ping"`
	Summary string       `json:"summary"`
}

type latencyRow struct {
	PoP    string  `json:"pop"`
	RTTMs  float64 `json:"rtt_ms"`  // 2 × the one-way latency of the link to the centre
	GoalMs float64 `json:"goal_ms"` // RTT + 2 ms
	// Ping is a bare request over the same link to a handler at the
	// centre that does no I/O (the mesh's incarnation query): the round
	// trip as the emulated WAN and NATS deliver it, with no SPOT work.
	// Absent at the centre, which calls its engine in-process.
	Ping    *stats `json:"mesh_ping,omitempty"`
	Claim   opRow  `json:"claim"`
	Take    opRow  `json:"take"`
	Update  opRow  `json:"update_doc"`
	Met     bool   `json:"goal_met"`
	PingMet bool   `json:"goal_met_over_ping"`
}

type opRow struct {
	stats
	// OverP50Ms is what the operation costs beyond the round trip: the
	// centre's work (an fsync), the PoP's and the client's.
	OverP50Ms float64 `json:"over_rtt_p50_ms"`
	// OverPingP50Ms is what it costs beyond a bare request over the same
	// link: the SPOT's own share.
	OverPingP50Ms float64 `json:"over_ping_p50_ms"`
	Met           bool    `json:"goal_met"` // p50 ≤ goal
	P99Met        bool    `json:"p99_within_goal"`
	// PingMet: p50 ≤ the measured bare round trip (ping p50) + 2 ms, the
	// goal with the emulation's own cost per round trip taken out.
	PingMet bool `json:"goal_met_over_ping"`
}

const latencySlack = 2 * time.Millisecond

func (r *latencyResult) SummaryLine() string { return r.Summary }

func runLatency(ctx context.Context, cfg config) (*latencyResult, error) {
	c, err := startCluster(ctx, cfg, netsim.Model{Base: cfg.base, Scale: cfg.scale})
	if err != nil {
		return nil, err
	}
	defer c.close()
	// Enough of the undeclared stock for every take, restocked at the centre.
	if _, err := c.PoPs[c.Central].Spot.Restock(ctx, appName, openStock, int64(cfg.pops*(cfg.latencyOps+10))); err != nil {
		return nil, fmt.Errorf("restocking %s: %w", openStock, err)
	}
	r := &latencyResult{Scenario: "latency", Env: c.env, Central: c.Central, OpsEach: cfg.latencyOps, Met: true, P99Met: true, PingMet: true}
	// The centre alone first: its row is the engine's own cost, free of
	// the load the edges put on it. Then every edge at once, each one
	// caller, as independent PoPs would.
	rows := map[string]latencyRow{}
	var mu sync.Mutex
	measure := func(id string) error {
		row, err := spotLatency(ctx, c, id, cfg.latencyOps)
		if err != nil {
			return fmt.Errorf("at %s: %w", id, err)
		}
		mu.Lock()
		rows[id] = row
		mu.Unlock()
		return nil
	}
	bench.Progress("latency: %d of each operation at %s", cfg.latencyOps, c.Central)
	if err := measure(c.Central); err != nil {
		return nil, err
	}
	bench.Progress("latency: %d of each operation at every edge PoP at once", cfg.latencyOps)
	var wg sync.WaitGroup
	errs := make([]error, len(c.IDs))
	for i, id := range c.IDs[1:] {
		wg.Go(func() { errs[i] = measure(id) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var parts []string
	for _, id := range c.IDs {
		row := rows[id]
		r.Rows = append(r.Rows, row)
		r.Met = r.Met && row.Met
		r.PingMet = r.PingMet && row.PingMet
		for _, o := range []opRow{row.Claim, row.Take, row.Update} {
			r.P99Met = r.P99Met && o.P99Met
		}
		mark := ""
		if !row.Met {
			mark = "!"
		}
		ping := ""
		if row.Ping != nil {
			ping = fmt.Sprintf(" ping %.1f", row.Ping.P50Ms)
		}
		parts = append(parts, fmt.Sprintf("%s rtt %.1f%s: %.1f/%.1f/%.1f%s", id, row.RTTMs, ping, row.Claim.P50Ms, row.Take.P50Ms, row.Update.P50Ms, mark))
	}
	r.Summary = fmt.Sprintf("latency: claim/take/update p50 ms per PoP (goal rtt + 2 ms): %s; goal %s at p50 (%s over the measured ping), %s at p99",
		strings.Join(parts, ", "), harness.MetWord(r.Met), harness.MetWord(r.PingMet), harness.MetWord(r.P99Met))
	return r, nil
}

// spotLatency calls claim, take and UpdateDoc n times each at PoP id, one
// after the other (interleaved, so that all three see the same
// conditions), after a few calls of each left out as warm-up.
func spotLatency(ctx context.Context, c *cluster, id string, n int) (latencyRow, error) {
	p := c.PoPs[id]
	const warm = 5
	var claims, takes, updates, pings []time.Duration
	doc := "doc-" + id
	var rev uint64
	for i := range n + warm {
		t0 := time.Now()
		cl, err := p.Spot.Claim(ctx, appName, "users", fmt.Sprintf("%s-%06d", id, i), "user-at-"+id)
		t1 := time.Now()
		if err != nil {
			return latencyRow{}, fmt.Errorf("claim: %w", err)
		}
		if !cl.Claimed {
			return latencyRow{}, fmt.Errorf("claim of a fresh key refused (owner %q)", cl.Owner)
		}
		tk, err := p.Stock.Take(ctx, appName, openStock, 1)
		t2 := time.Now()
		if err != nil {
			return latencyRow{}, fmt.Errorf("take: %w", err)
		}
		if !tk.OK || tk.Local {
			return latencyRow{}, fmt.Errorf("take of the undeclared stock: ok %v, local %v; want a sale at the centre", tk.OK, tk.Local)
		}
		_, newRev, err := p.Spot.UpdateDoc(ctx, appName, doc, rev, []crdt.Op{incrOp("n", 1)})
		t3 := time.Now()
		if err != nil {
			return latencyRow{}, fmt.Errorf("update_doc at revision %d: %w", rev, err)
		}
		if newRev != rev+1 {
			return latencyRow{}, fmt.Errorf("update_doc at revision %d returned revision %d", rev, newRev)
		}
		rev = newRev
		if id != c.Central {
			if _, err := p.Mesh.Request(ctx, c.Central, "inc", []byte(id)); err != nil {
				return latencyRow{}, fmt.Errorf("mesh ping: %w", err)
			}
		}
		t4 := time.Now()
		if i >= warm {
			pings = append(pings, t4.Sub(t3))
			claims = append(claims, t1.Sub(t0))
			takes = append(takes, t2.Sub(t1))
			updates = append(updates, t3.Sub(t2))
		}
	}
	rtt := c.rtt(id)
	goal := rtt + latencySlack
	var ping stats
	row := latencyRow{PoP: id, RTTMs: harness.Ms(rtt), GoalMs: harness.Ms(goal)}
	if id != c.Central {
		ping = summarize(pings)
		row.Ping = &ping
	}
	op := func(v []time.Duration) opRow {
		s := summarize(v)
		return opRow{stats: s, OverP50Ms: harness.Round(s.P50Ms-harness.Ms(rtt), 3), OverPingP50Ms: harness.Round(s.P50Ms-ping.P50Ms, 3),
			Met: harness.Percentile(v, 0.5) <= goal, P99Met: harness.Percentile(v, 0.99) <= goal,
			PingMet: s.P50Ms <= ping.P50Ms+harness.Ms(latencySlack)}
	}
	row.Claim, row.Take, row.Update = op(claims), op(takes), op(updates)
	row.Met = row.Claim.Met && row.Take.Met && row.Update.Met
	row.PingMet = row.Claim.PingMet && row.Take.PingMet && row.Update.PingMet
	return row, nil
}

// ---- throughput ----

type throughputResult struct {
	Scenario string    `json:"scenario"`
	Env      env       `json:"env"`
	At       string    `json:"at"`
	Runs     []tputRun `json:"runs"`
	Summary  string    `json:"summary"`
}

type tputRun struct {
	Op          string  `json:"op"` // claim (distinct keys) or take (one hot counter)
	Concurrency int     `json:"concurrency"`
	Ops         int     `json:"ops"`
	DurationMs  float64 `json:"duration_ms"`
	OpsPerS     float64 `json:"ops_per_s"`
	Latency     stats   `json:"latency"`
	// Exact: every claim succeeded; the counter fell by exactly the takes.
	Exact bool `json:"exact"`
}

func (r *throughputResult) SummaryLine() string { return r.Summary }

func runThroughput(ctx context.Context, cfg config) (*throughputResult, error) {
	// No WAN: only the centre works.
	c, err := startCluster(ctx, cfg, netsim.Model{})
	if err != nil {
		return nil, err
	}
	defer c.close()
	e := c.PoPs[c.Central].Spot
	const hot = "hot"
	const stocked = math.MaxInt64 / 2
	if _, err := e.Restock(ctx, appName, hot, stocked); err != nil {
		return nil, err
	}
	r := &throughputResult{Scenario: "throughput", Env: c.env, At: c.Central}
	var keys atomic.Int64
	for _, op := range []string{"claim", "take"} {
		for _, conc := range cfg.tputConc {
			bench.Progress("throughput: %s at concurrency %d for %v", op, conc, cfg.tputFor)
			before, err := e.Counter(ctx, appName, hot)
			if err != nil {
				return nil, err
			}
			var refused atomic.Int64
			fn := func(ctx context.Context, _ int) error {
				if op == "claim" {
					cl, err := e.Claim(ctx, appName, "t", "k"+strconv.FormatInt(keys.Add(1), 36), "o")
					if err == nil && !cl.Claimed {
						refused.Add(1)
					}
					return err
				}
				t, err := e.Take(ctx, appName, hot, 1)
				if err == nil && !t.OK {
					refused.Add(1)
				}
				return err
			}
			lat, elapsed, err := timed(ctx, conc, cfg.tputFor, fn)
			if err != nil {
				return nil, fmt.Errorf("%s at concurrency %d: %w", op, conc, err)
			}
			run := tputRun{Op: op, Concurrency: conc, Ops: len(lat), DurationMs: harness.Ms(elapsed),
				OpsPerS: harness.Round(float64(len(lat))/elapsed.Seconds(), 1), Latency: summarize(lat), Exact: refused.Load() == 0}
			if op == "take" {
				after, err := e.Counter(ctx, appName, hot)
				if err != nil {
					return nil, err
				}
				run.Exact = run.Exact && before-after == int64(len(lat))
			}
			r.Runs = append(r.Runs, run)
		}
	}
	var parts []string
	for _, run := range r.Runs {
		exact := ""
		if !run.Exact {
			exact = " NOT EXACT"
		}
		parts = append(parts, fmt.Sprintf("%s×%d %.0f/s (p50 %.1f p99 %.1f ms)%s", run.Op, run.Concurrency, run.OpsPerS, run.Latency.P50Ms, run.Latency.P99Ms, exact))
	}
	r.Summary = fmt.Sprintf("throughput at %s (fsync %.2f ms): %s", c.Central, c.env.FsyncP50Ms, strings.Join(parts, ", "))
	return r, nil
}

// ---- threshold ----

type thresholdResult struct {
	Scenario  string  `json:"scenario"`
	Env       env     `json:"env"`
	At        string  `json:"at"`
	RTTMs     float64 `json:"rtt_ms"`
	Threshold int64   `json:"threshold"`
	Grant     int64   `json:"grant"`
	// Above: a stock restocked far above its threshold. Below: one at its
	// threshold, where every take is a sale at the centre.
	Above stockPhase `json:"above"`
	Below stockPhase `json:"below"`
	// Concurrent: takes/s with -stock-conc takers against local writes/s
	// (one hot document; a document per writer). Absent with -stock-conc 0.
	Concurrent *stockConcurrent `json:"concurrent,omitempty"`
	// Accounted: the plenty stock's units at the centre, in every PoP's
	// escrow and sold add up to what was restocked (never oversold).
	Accounted bool `json:"accounted"`
	// Met: above the threshold every take is local, none waits on the
	// WAN, and the p50 is within 1 ms of the local write's.
	Met     bool   `json:"goal_met"`
	Summary string `json:"summary"`
}

type stockPhase struct {
	Counter       string  `json:"counter"`
	CentreBefore  int64   `json:"centre_stock_before"`
	Takes         int     `json:"takes"`
	Local         int     `json:"local"`
	LocalFraction float64 `json:"local_fraction"`
	// WANWaits counts takes that took at least half the round trip: they
	// waited on the centre (a sale there, an inline refill, or the
	// background refill holding the escrow).
	WANWaits  int     `json:"wan_waits"`
	Take      stats   `json:"take"`
	Write     stats   `json:"local_write"`
	OverWrite float64 `json:"take_minus_write_p50_ms"`
}

type stockConcurrent struct {
	Concurrency int     `json:"concurrency"`
	TakesPerS   float64 `json:"takes_per_s"`
	TakeLocal   float64 `json:"take_local_fraction"`
	Take        stats   `json:"take"`
	HotPerS     float64 `json:"hot_doc_writes_per_s"`
	Hot         stats   `json:"hot_doc_write"`
	SpreadPerS  float64 `json:"distinct_doc_writes_per_s"`
	Spread      stats   `json:"distinct_doc_write"`
}

func (r *thresholdResult) SummaryLine() string { return r.Summary }

const localSlack = time.Millisecond

func runThreshold(ctx context.Context, cfg config) (*thresholdResult, error) {
	c, err := startCluster(ctx, cfg, netsim.Model{Base: cfg.base, Scale: cfg.scale})
	if err != nil {
		return nil, err
	}
	defer c.close()
	centre := c.PoPs[c.Central].Spot
	at := c.PoPs[cfg.stockAt]
	// Far above the threshold: enough for every take here, at every
	// other PoP's escrow, and the concurrent run, and never near the
	// threshold.
	plenty := cfg.threshold + 100*cfg.grant*int64(cfg.pops) + int64(cfg.aboveTakes) + 1_000_000
	if _, err := centre.Restock(ctx, appName, plentyName, plenty); err != nil {
		return nil, err
	}
	if _, err := centre.Restock(ctx, appName, scarceName, cfg.threshold); err != nil {
		return nil, err
	}
	// Let the background loop fill the escrow: the measurement starts
	// where a PoP is in steady state, not at its first grant.
	deadline := time.Now().Add(10 * time.Second)
	for at.Stock.Escrowed(appName, plentyName) < cfg.grant {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s holds %d units of %s in escrow 10 s after the restock, want a grant of %d", cfg.stockAt, at.Stock.Escrowed(appName, plentyName), plentyName, cfg.grant)
		}
		if err := bc.Sleep(ctx, 10*time.Millisecond); err != nil {
			return nil, err
		}
	}
	rtt := c.rtt(cfg.stockAt)
	r := &thresholdResult{Scenario: "threshold", Env: c.env, At: cfg.stockAt, RTTMs: harness.Ms(rtt), Threshold: cfg.threshold, Grant: cfg.grant}
	var sold atomic.Int64
	phase := func(counter string, n int) (stockPhase, error) {
		bench.Progress("threshold: %d takes of %s at %s, each followed by a local write", n, counter, cfg.stockAt)
		before, err := centre.Counter(ctx, appName, counter)
		if err != nil {
			return stockPhase{}, err
		}
		ph := stockPhase{Counter: counter, CentreBefore: before, Takes: n}
		takes := make([]time.Duration, 0, n)
		writes := make([]time.Duration, 0, n)
		for range n {
			t0 := time.Now()
			t, err := at.Stock.Take(ctx, appName, counter, 1)
			t1 := time.Now()
			if err != nil {
				return ph, fmt.Errorf("take of %s: %w", counter, err)
			}
			if !t.OK {
				return ph, fmt.Errorf("take of %s refused with %d remaining", counter, t.Remaining)
			}
			if counter == plentyName {
				sold.Add(1)
			}
			if _, err := at.Docs.Update(ctx, appName, localColl, "c-"+cfg.stockAt, []crdt.Op{incrOp("n", 1)}); err != nil {
				return ph, fmt.Errorf("local write: %w", err)
			}
			t2 := time.Now()
			if t.Local {
				ph.Local++
			}
			if 2*t1.Sub(t0) >= rtt {
				ph.WANWaits++
			}
			takes = append(takes, t1.Sub(t0))
			writes = append(writes, t2.Sub(t1))
		}
		ph.LocalFraction = harness.Round(float64(ph.Local)/float64(n), 4)
		ph.Take, ph.Write = summarize(takes), summarize(writes)
		ph.OverWrite = harness.Round(ph.Take.P50Ms-ph.Write.P50Ms, 3)
		return ph, nil
	}
	if r.Above, err = phase(plentyName, cfg.aboveTakes); err != nil {
		return nil, err
	}
	if r.Below, err = phase(scarceName, cfg.belowTakes); err != nil {
		return nil, err
	}
	if cfg.stockConc > 0 {
		cc := &stockConcurrent{Concurrency: cfg.stockConc}
		bench.Progress("threshold: %d concurrent takers of %s at %s for %v", cfg.stockConc, plentyName, cfg.stockAt, cfg.stockFor)
		var local atomic.Int64
		lat, el, err := timed(ctx, cfg.stockConc, cfg.stockFor, func(ctx context.Context, _ int) error {
			t, err := at.Stock.Take(ctx, appName, plentyName, 1)
			if err == nil && !t.OK {
				err = fmt.Errorf("take of %s refused with %d remaining", plentyName, t.Remaining)
			}
			if err == nil {
				sold.Add(1)
				if t.Local {
					local.Add(1)
				}
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		cc.TakesPerS, cc.Take = harness.Round(float64(len(lat))/el.Seconds(), 1), summarize(lat)
		cc.TakeLocal = harness.Round(float64(local.Load())/float64(max(1, len(lat))), 4)
		bench.Progress("threshold: %d concurrent writers of one document at %s for %v", cfg.stockConc, cfg.stockAt, cfg.stockFor)
		lat, el, err = timed(ctx, cfg.stockConc, cfg.stockFor, func(ctx context.Context, _ int) error {
			_, err := at.Docs.Update(ctx, appName, localColl, "hot", []crdt.Op{incrOp("n", 1)})
			return err
		})
		if err != nil {
			return nil, err
		}
		cc.HotPerS, cc.Hot = harness.Round(float64(len(lat))/el.Seconds(), 1), summarize(lat)
		bench.Progress("threshold: %d concurrent writers of a document each at %s for %v", cfg.stockConc, cfg.stockAt, cfg.stockFor)
		lat, el, err = timed(ctx, cfg.stockConc, cfg.stockFor, func(ctx context.Context, w int) error {
			_, err := at.Docs.Update(ctx, appName, localColl, "w"+strconv.Itoa(w), []crdt.Op{incrOp("n", 1)})
			return err
		})
		if err != nil {
			return nil, err
		}
		cc.SpreadPerS, cc.Spread = harness.Round(float64(len(lat))/el.Seconds(), 1), summarize(lat)
		r.Concurrent = cc
	}
	// A background refill may be between its take at the centre and its
	// credit at a PoP: the sum is exact once it lands.
	deadline = time.Now().Add(3 * time.Second)
	for {
		total, err := centre.Counter(ctx, appName, plentyName)
		if err != nil {
			return nil, err
		}
		for _, id := range c.IDs {
			total += c.PoPs[id].Stock.Escrowed(appName, plentyName)
		}
		if r.Accounted = total+sold.Load() == plenty; r.Accounted || time.Now().After(deadline) {
			break
		}
		if err := bc.Sleep(ctx, 20*time.Millisecond); err != nil {
			return nil, err
		}
	}
	a := r.Above
	r.Met = r.Accounted && a.Local == a.Takes && a.WANWaits == 0 && a.Take.P50Ms <= a.Write.P50Ms+harness.Ms(localSlack)
	conc := ""
	if cc := r.Concurrent; cc != nil {
		conc = fmt.Sprintf("; ×%d: %.0f takes/s vs %.0f writes/s one doc, %.0f distinct docs", cc.Concurrency, cc.TakesPerS, cc.HotPerS, cc.SpreadPerS)
	}
	r.Summary = fmt.Sprintf("threshold at %s (rtt %.0f ms, threshold %d, grant %d): above: %.1f%% local, %d WAN waits, take p50/p99 %.2f/%.2f ms vs local write %.2f/%.2f ms; below: %.1f%% local, take p50/p99 %.1f/%.1f ms%s; accounted %v; goal %s",
		cfg.stockAt, r.RTTMs, cfg.threshold, cfg.grant, 100*a.LocalFraction, a.WANWaits, a.Take.P50Ms, a.Take.P99Ms, a.Write.P50Ms, a.Write.P99Ms,
		100*r.Below.LocalFraction, r.Below.Take.P50Ms, r.Below.Take.P99Ms, conc, r.Accounted, harness.MetWord(r.Met))
	return r, nil
}
