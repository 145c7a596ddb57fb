// Command replication measures replication between PoPs: several PoPs
// (internal/pop) run in this process, each dialing its peers through its
// own emulated WAN link layer (internal/netsim), with real stores (fsync
// on unless -nosync) in a temporary directory removed at the end.
//
//	go run ./bench/replication [-scenario all|delay|rate|partition] [-pops 6] [-nosync]
//	    [-delay-rate 200] [-delay-for 10s] [-base 2ms]
//	    [-rates 10000,1000] [-rate-for 10s] [-rate-scale 0] [-rate-at sfo|all]
//	    [-partition-for 30s] [-partition-docs 10000] [-isolate syd]
//
// Scenarios:
//
//   - delay: writes at one PoP over the WAN at real-world latencies; per
//     destination, the time from a write's acknowledgement to its
//     visibility there (pop.Options.Applied), against the goal one-way
//     latency + batch window + 5 ms.
//   - rate: a fixed rate of increments spread over a hundred hot global
//     documents; per link, batches, items and bytes per second, to show
//     that a link carries at most one batch per window whatever the rate.
//   - partition: one PoP cut off from all others while both sides write
//     distinct documents; after the heal, the time until every PoP holds
//     every document (goal ≤ 2 s).
//
// Every scenario starts its own PoPs (latency scales differ; a netsim
// connection keeps the model it was dialed with). Each scenario's JSON
// object goes to stdout as it finishes; a one-line summary per scenario
// goes to stderr at the end.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math"
	"os"
	"runtime"
	"runtime/pprof"
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
	"github.com/verge-edge/verge/internal/store"
)

const (
	appName = "bench"
	hotColl = "hot" // global: every PoP replicates it
)

// decls are the app's collections: the harness drives each PoP's data
// service directly, so the app has no function.
const decls = `
[[collection]]
name = "hot"
scope = "global"

[[collection]]
name = "carts"
scope = "local"
`

type config struct {
	pops        int
	noSync      bool
	window      time.Duration
	antiEntropy time.Duration
	verbose     bool

	delayFrom string
	delayRate float64
	delayFor  time.Duration
	base      time.Duration

	rates     []int
	rateFor   time.Duration
	rateScale float64
	rateAt    string
	rateDocs  int
	writers   int

	isolate       string
	partitionFor  time.Duration
	partitionDocs int
	convergeMax   time.Duration
}

func defaultConfig() config {
	return config{
		pops: 6, window: 50 * time.Millisecond, antiEntropy: 5 * time.Second,
		delayFrom: "sfo", delayRate: 200, delayFor: 10 * time.Second, base: 2 * time.Millisecond,
		rates: []int{10000, 1000}, rateFor: 10 * time.Second, rateAt: "sfo", rateDocs: 100, writers: 64,
		isolate: "syd", partitionFor: 30 * time.Second, partitionDocs: 10000, convergeMax: 60 * time.Second,
	}
}

// bench names the scenarios and runs them.
var bench = &harness.Command{Name: "bench/replication", Scenarios: []string{"delay", "rate", "partition"}}

func main() {
	cfg := defaultConfig()
	scenario := bench.ScenarioFlag()
	flag.IntVar(&cfg.pops, "pops", cfg.pops, "number of PoPs (2..10; the first, ord, is central)")
	flag.BoolVar(&cfg.noSync, "nosync", false, "acknowledge writes before fsync")
	flag.DurationVar(&cfg.window, "window", cfg.window, "replication batch window")
	flag.DurationVar(&cfg.antiEntropy, "anti-entropy", cfg.antiEntropy, "anti-entropy period")
	flag.BoolVar(&cfg.verbose, "v", false, "log the PoPs' warnings to stderr")
	flag.StringVar(&cfg.delayFrom, "from", cfg.delayFrom, "delay: the PoP that writes")
	flag.Float64Var(&cfg.delayRate, "delay-rate", cfg.delayRate, "delay: writes per second")
	flag.DurationVar(&cfg.delayFor, "delay-for", cfg.delayFor, "delay: how long to write")
	flag.DurationVar(&cfg.base, "base", cfg.base, "delay: fixed one-way cost per link (netsim Model.Base)")
	rates := flag.String("rates", "10000,1000", "rate: comma-separated target writes per second, one run each")
	flag.DurationVar(&cfg.rateFor, "rate-for", cfg.rateFor, "rate: how long each run writes")
	flag.Float64Var(&cfg.rateScale, "rate-scale", cfg.rateScale, "rate: WAN latency scale (0 none, 1 real-world)")
	flag.StringVar(&cfg.rateAt, "rate-at", cfg.rateAt, "rate: the PoP that writes, or all")
	flag.IntVar(&cfg.rateDocs, "rate-docs", cfg.rateDocs, "rate: hot documents the writes are spread over")
	flag.IntVar(&cfg.writers, "writers", cfg.writers, "rate and partition: concurrent writers")
	flag.StringVar(&cfg.isolate, "isolate", cfg.isolate, "partition: the PoP cut off from all others")
	flag.DurationVar(&cfg.partitionFor, "partition-for", cfg.partitionFor, "partition: how long the partition lasts")
	flag.IntVar(&cfg.partitionDocs, "partition-docs", cfg.partitionDocs, "partition: distinct documents written during it, half at the isolated PoP")
	flag.DurationVar(&cfg.convergeMax, "converge-max", cfg.convergeMax, "partition and rate: give up waiting for convergence after this long")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	bench.Parse()
	var err error
	if cfg.rates, err = harness.ParseInts(*rates, "10000,1000"); err != nil {
		bench.Fatalf("-rates %q: %v", *rates, err)
	}
	if err := cfg.check(); err != nil {
		bench.Fatalf("%v", err)
	}
	run := bench.Select(*scenario)

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			bench.Fatalf("-cpuprofile: %v", err)
		}
		defer pprof.StopCPUProfile()
	}
	bench.Run(run, func(ctx context.Context, s string) (harness.Result, error) { return runScenario(ctx, cfg, s) })
}

func (c *config) check() error {
	if err := bc.CheckPoPs(c.pops); err != nil {
		return err
	}
	ids := bc.IDs(c.pops)
	if !slices.Contains(ids, c.delayFrom) {
		return fmt.Errorf("-from %q: not among the PoPs %v", c.delayFrom, ids)
	}
	if c.rateAt != "all" && !slices.Contains(ids, c.rateAt) {
		return fmt.Errorf("-rate-at %q: want all or one of %v", c.rateAt, ids)
	}
	if !slices.Contains(ids, c.isolate) {
		return fmt.Errorf("-isolate %q: not among the PoPs %v", c.isolate, ids)
	}
	switch {
	case c.window <= 0 || c.antiEntropy <= 0:
		return errors.New("-window and -anti-entropy must be positive")
	case c.delayRate <= 0 || c.delayFor <= 0:
		return errors.New("-delay-rate and -delay-for must be positive")
	case c.rateFor <= 0 || c.rateDocs < 1 || c.writers < 1 || c.rateScale < 0:
		return errors.New("-rate-for, -rate-docs and -writers must be positive, -rate-scale ≥ 0")
	case c.partitionFor <= 0 || c.partitionDocs < 2 || c.convergeMax <= 0:
		return errors.New("-partition-for and -converge-max must be positive, -partition-docs ≥ 2")
	}
	return nil
}

func runScenario(ctx context.Context, cfg config, name string) (harness.Result, error) {
	switch name {
	case "delay":
		return runDelay(ctx, cfg)
	case "rate":
		return runRate(ctx, cfg)
	case "partition":
		return runPartition(ctx, cfg)
	}
	return nil, fmt.Errorf("no scenario %q", name)
}

// env is what every result records about the machine and the setup.
type env struct {
	Go           string   `json:"go"`
	CPUs         int      `json:"cpus"`
	PoPs         []string `json:"pops"`
	NoSync       bool     `json:"nosync"`
	WindowMs     float64  `json:"window_ms"`
	LatencyScale float64  `json:"latency_scale"`
	BaseMs       float64  `json:"base_ms"`
	StartupMs    float64  `json:"startup_ms"`
}

// ---- the cluster ----

// hook receives every Applied call of every PoP: at is the PoP that
// applied, from the peer whose batch it was.
type hook func(at, from string, keys []store.Key)

type cluster struct {
	*bc.Cluster
	cfg  config
	hook atomic.Pointer[hook]
	env  env
}

// startCluster starts cfg.pops PoPs over a WAN of model m and waits until
// every PoP replicates to every other (a write at each is visible at all).
func startCluster(ctx context.Context, cfg config, m netsim.Model) (_ *cluster, err error) {
	man, err := bc.DataManifest(appName, decls)
	if err != nil {
		return nil, err
	}
	c := &cluster{cfg: cfg}
	cc, err := bc.Start(ctx, bc.Options{
		PoPs: cfg.pops, Model: m, Manifest: man, Window: cfg.window, AntiEntropy: cfg.antiEntropy,
		NoSync: cfg.noSync, Verbose: cfg.verbose,
		Applied: func(at, from string, keys []store.Key) {
			if h := c.hook.Load(); h != nil {
				(*h)(at, from, keys)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	c.Cluster = cc
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	// Warm up: a write at every PoP, visible at every PoP, means every
	// link is connected and every sender knows its peer's watermark.
	want := map[string]string{}
	for _, id := range c.IDs {
		doc, err := c.PoPs[id].Docs.Update(ctx, appName, hotColl, "warm-"+id, []crdt.Op{setOp("at", strconv.Quote(id))})
		if err != nil {
			return nil, fmt.Errorf("warm-up write at %s: %w", id, err)
		}
		want["warm-"+id] = string(doc)
	}
	err = bc.Wait(ctx, 60*time.Second, 10*time.Millisecond, func() error {
		for _, id := range c.IDs {
			for key, doc := range want {
				if got, _, _ := c.PoPs[id].Docs.Get(appName, hotColl, key); string(got) != doc {
					return fmt.Errorf("the PoPs did not replicate to each other within 60 s of starting (%s lacks %s)", id, key)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if m.Scale == 0 {
		m.Base = 0 // no delay at all: do not report one
	}
	c.env = env{
		Go: runtime.Version(), CPUs: runtime.NumCPU(), PoPs: c.IDs, NoSync: cfg.noSync,
		WindowMs: harness.Ms(cfg.window), LatencyScale: m.Scale, BaseMs: harness.Ms(m.Base), StartupMs: harness.Ms(cc.Started),
	}
	return c, nil
}

func (c *cluster) setHook(h hook) {
	if h == nil {
		c.hook.Store(nil)
		return
	}
	c.hook.Store(&h)
}

func (c *cluster) close() { c.Cluster.Close() }

func (c *cluster) oneWay(from, to string) time.Duration { return c.OneWay(from, to) }

func setOp(path, v string) crdt.Op { return crdt.Op{Op: "set", Path: path, Value: json.RawMessage(v)} }

func incrOp(path string, n int) crdt.Op {
	return crdt.Op{Op: "increment", Path: path, Value: json.RawMessage(strconv.Itoa(n))}
}

// pace calls fn(i) for i in [0, n) from workers goroutines, write i due at
// start + i/rate (open loop: a slow write does not delay the schedule of
// the others, up to the number of workers). It returns when all are done,
// with the time the first was due and the time the last finished.
func pace(ctx context.Context, n int, rate float64, workers int, fn func(i int) error) (start, end time.Time, err error) {
	var next atomic.Int64
	start = time.Now()
	err = harness.Workers(ctx, min(workers, n), func(ctx context.Context, _ int) error {
		for ctx.Err() == nil {
			i := int(next.Add(1) - 1)
			if i >= n {
				return nil
			}
			due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				if bc.Sleep(ctx, d) != nil {
					return nil
				}
			}
			if err := fn(i); err != nil {
				return err
			}
		}
		return nil
	})
	return start, time.Now(), err
}

// ---- delay ----

type delayResult struct {
	Scenario     string      `json:"scenario"`
	Env          env         `json:"env"`
	From         string      `json:"from"`
	Writes       int         `json:"writes"`
	TargetPerS   float64     `json:"target_writes_per_s"`
	AchievedPerS float64     `json:"achieved_writes_per_s"`
	WriteP50Ms   float64     `json:"write_ack_p50_ms"` // the write itself, fsync included
	Dests        []delayDest `json:"destinations"`
	Met          bool        `json:"goal_met"`
	Summary      string      `json:"summary"`
}

type delayDest struct {
	PoP      string  `json:"pop"`
	OneWayMs float64 `json:"one_way_ms"`
	Visible  int     `json:"visible"`
	// Early counts writes applied at the destination before the writer's
	// Update returned (possible: the entry is shipped once durable, which
	// may be a moment before the acknowledgement is observed); their
	// latency counts as 0.
	Early  int     `json:"early"`
	P50Ms  float64 `json:"p50_ms"`
	P99Ms  float64 `json:"p99_ms"`
	MaxMs  float64 `json:"max_ms"`
	GoalMs float64 `json:"goal_ms"`  // one-way + window + 5 ms
	Met    bool    `json:"goal_met"` // p99 ≤ goal
}

func (r *delayResult) SummaryLine() string { return r.Summary }

func runDelay(ctx context.Context, cfg config) (*delayResult, error) {
	m := netsim.Model{Base: cfg.base, Scale: 1}
	c, err := startCluster(ctx, cfg, m)
	if err != nil {
		return nil, err
	}
	defer c.close()

	n := max(1, int(cfg.delayRate*cfg.delayFor.Seconds()))
	name := func(i int) string { return fmt.Sprintf("d%06d", i) }
	acks := make([]time.Time, n)
	took := make([]time.Duration, n)
	var mu sync.Mutex
	seen := map[string][]time.Time{} // destination → visibility time per write
	for _, id := range c.IDs {
		if id != cfg.delayFrom {
			seen[id] = make([]time.Time, n)
		}
	}
	visible := map[string]int{}
	c.setHook(func(at, from string, keys []store.Key) {
		now := time.Now()
		if from != cfg.delayFrom {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, k := range keys {
			if k.Collection != hotColl || len(k.Doc) != 7 || k.Doc[0] != 'd' {
				continue
			}
			i, err := strconv.Atoi(k.Doc[1:])
			if err != nil || i < 0 || i >= n || !seen[at][i].IsZero() {
				continue
			}
			seen[at][i] = now
			visible[at]++
		}
	})
	defer c.setHook(nil)

	w := c.PoPs[cfg.delayFrom].Docs
	start, end, err := pace(ctx, n, cfg.delayRate, 8, func(i int) error {
		t0 := time.Now()
		_, err := w.Update(ctx, appName, hotColl, name(i), []crdt.Op{setOp("i", strconv.Itoa(i))})
		now := time.Now()
		mu.Lock()
		acks[i], took[i] = now, now.Sub(t0)
		mu.Unlock()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("writing at %s: %w", cfg.delayFrom, err)
	}
	// Wait (bounded) for every write to be visible everywhere.
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		done := true
		for id := range seen {
			done = done && visible[id] == n
		}
		mu.Unlock()
		if done || time.Now().After(deadline) {
			break
		}
		if err := bc.Sleep(ctx, 10*time.Millisecond); err != nil {
			return nil, err
		}
	}
	c.setHook(nil)

	mu.Lock()
	defer mu.Unlock()
	r := &delayResult{Scenario: "delay", Env: c.env, From: cfg.delayFrom, Writes: n, TargetPerS: cfg.delayRate,
		AchievedPerS: harness.Round(float64(n)/end.Sub(start).Seconds(), 1), Met: true}
	slices.Sort(took)
	r.WriteP50Ms = harness.Ms(harness.Percentile(took, 0.5))
	var parts []string
	for _, id := range c.IDs {
		if id == cfg.delayFrom {
			continue
		}
		d := delayDest{PoP: id, OneWayMs: harness.Ms(c.oneWay(cfg.delayFrom, id)), Visible: visible[id]}
		var lat []time.Duration
		for i, t := range seen[id] {
			if t.IsZero() {
				continue
			}
			l := t.Sub(acks[i])
			if l < 0 {
				d.Early++
				l = 0
			}
			lat = append(lat, l)
		}
		slices.Sort(lat)
		goal := c.oneWay(cfg.delayFrom, id) + cfg.window + 5*time.Millisecond
		d.P50Ms, d.P99Ms, d.MaxMs = harness.Ms(harness.Percentile(lat, 0.5)), harness.Ms(harness.Percentile(lat, 0.99)), harness.Ms(harness.Percentile(lat, 1))
		d.GoalMs = harness.Ms(goal)
		d.Met = d.Visible == n && harness.Percentile(lat, 0.99) <= goal
		r.Met = r.Met && d.Met
		r.Dests = append(r.Dests, d)
		mark := ""
		if !d.Met {
			mark = "!"
		}
		parts = append(parts, fmt.Sprintf("%s p50 %.0f p99 %.0f/%.0f%s", id, d.P50Ms, d.P99Ms, d.GoalMs, mark))
	}
	r.Summary = fmt.Sprintf("delay: %d writes at %s, %.0f/s; ack→visible ms (p99/goal): %s; goal %s",
		n, cfg.delayFrom, r.AchievedPerS, strings.Join(parts, ", "), harness.MetWord(r.Met))
	return r, nil
}

// ---- rate ----

type rateResult struct {
	Scenario string    `json:"scenario"`
	Env      env       `json:"env"`
	WriteAt  string    `json:"write_at"` // a PoP id or "all"
	Docs     int       `json:"docs"`
	Writers  int       `json:"writers"`
	Runs     []rateRun `json:"runs"`
	// Independent: the busiest link's batches per second differ between
	// runs by less than 20% while the write rate differs by more than 2x.
	Independent bool   `json:"batches_independent_of_rate"`
	Met         bool   `json:"goal_met"`
	Summary     string `json:"summary"`
}

type rateRun struct {
	TargetPerS   int     `json:"target_writes_per_s"`
	Writes       int     `json:"writes"`
	AchievedPerS float64 `json:"achieved_writes_per_s"`
	SecondsMs    float64 `json:"duration_ms"`
	// LimitPerS is one batch per window, per link.
	LimitPerS      float64    `json:"batches_per_s_limit"`
	MaxBatchesPerS float64    `json:"max_batches_per_s"`
	Links          []rateLink `json:"links"`
	// Converged: every PoP reached every document's final count; DrainMs
	// is how long after the last acknowledged write.
	Converged bool    `json:"converged"`
	DrainMs   float64 `json:"drain_ms"`
	Met       bool    `json:"goal_met"`
}

type rateLink struct {
	From string `json:"from"`
	To   string `json:"to"`
	// What the sender's replicator sent (Replicator.Links).
	Batches       uint64  `json:"batches"`
	Items         uint64  `json:"items"`
	BatchesPerS   float64 `json:"batches_per_s"`
	ItemsPerS     float64 `json:"items_per_s"`
	ItemsPerBatch float64 `json:"items_per_batch"`
	BytesPerS     float64 `json:"payload_bytes_per_s"`
	BytesPerWrite float64 `json:"payload_bytes_per_write"`
	// Everything on the wire from sender to receiver (netsim counters:
	// batches, acks of the peer's batches, requests, NATS protocol).
	WireBytesPerS float64 `json:"wire_bytes_per_s"`
}

func (r *rateResult) SummaryLine() string { return r.Summary }

type linkSnap struct {
	sent map[[2]string][3]uint64 // batches, items, bytes
	wire map[[2]string]uint64
}

func (c *cluster) snapLinks() linkSnap {
	s := linkSnap{sent: map[[2]string][3]uint64{}, wire: map[[2]string]uint64{}}
	for _, from := range c.IDs {
		for to, st := range c.PoPs[from].Repl.Links() {
			s.sent[[2]string{from, to}] = [3]uint64{st.Batches, st.Items, st.Bytes}
		}
		// Bytes from A to B: what A writes on its connection to B's
		// server, plus what B reads on its connection to A's server
		// (netsim delays and counts on the dialing side only).
		for _, l := range c.Layers[from].Links() {
			s.wire[[2]string{from, l.Peer}] += l.Out.Bytes
			s.wire[[2]string{l.Peer, from}] += l.In.Bytes
		}
	}
	return s
}

func runRate(ctx context.Context, cfg config) (*rateResult, error) {
	m := netsim.Model{Base: cfg.base, Scale: cfg.rateScale}
	c, err := startCluster(ctx, cfg, m)
	if err != nil {
		return nil, err
	}
	defer c.close()
	writers := c.IDs
	if cfg.rateAt != "all" {
		writers = []string{cfg.rateAt}
	}
	r := &rateResult{Scenario: "rate", Env: c.env, WriteAt: cfg.rateAt, Docs: cfg.rateDocs, Writers: cfg.writers, Met: true}
	for run, rate := range cfg.rates {
		bench.Progress("rate: %d writes/s for %v", rate, cfg.rateFor)
		n := max(1, int(float64(rate)*cfg.rateFor.Seconds()))
		doc := func(i int) string { return fmt.Sprintf("r%d-%03d", run, i%cfg.rateDocs) }
		before := c.snapLinks()
		start, end, err := pace(ctx, n, float64(rate), cfg.writers, func(i int) error {
			at := writers[i%len(writers)]
			_, err := c.PoPs[at].Docs.Update(ctx, appName, hotColl, doc(i), []crdt.Op{incrOp("n", 1)})
			return err
		})
		after := c.snapLinks()
		if err != nil {
			return nil, fmt.Errorf("writing at %d/s: %w", rate, err)
		}
		secs := end.Sub(start).Seconds()
		rr := rateRun{TargetPerS: rate, Writes: n, AchievedPerS: harness.Round(float64(n)/secs, 1), SecondsMs: harness.Ms(end.Sub(start)),
			LimitPerS: harness.Round(1/cfg.window.Seconds(), 2)}
		for _, from := range writers {
			for _, to := range c.IDs {
				if to == from {
					continue
				}
				k := [2]string{from, to}
				a, b := after.sent[k], before.sent[k]
				l := rateLink{From: from, To: to, Batches: a[0] - b[0], Items: a[1] - b[1],
					BatchesPerS: harness.Round(float64(a[0]-b[0])/secs, 2), ItemsPerS: harness.Round(float64(a[1]-b[1])/secs, 1),
					BytesPerS: harness.Round(float64(a[2]-b[2])/secs, 0), WireBytesPerS: harness.Round(float64(after.wire[k]-before.wire[k])/secs, 0)}
				if a[0] > b[0] {
					l.ItemsPerBatch = harness.Round(float64(a[1]-b[1])/float64(a[0]-b[0]), 1)
				}
				l.BytesPerWrite = harness.Round(float64(a[2]-b[2])/float64(n/len(writers)), 2)
				rr.MaxBatchesPerS = max(rr.MaxBatchesPerS, l.BatchesPerS)
				rr.Links = append(rr.Links, l)
			}
		}
		// Every PoP must end with every document at its count: replication
		// kept up, nothing lost.
		want := make([]int, cfg.rateDocs)
		for i := range n {
			want[i%cfg.rateDocs]++
		}
		rr.Converged, rr.DrainMs, err = c.waitCounts(ctx, doc, want, end, cfg.convergeMax)
		if err != nil {
			return nil, err
		}
		// At most one batch per window and link; one more for the windows
		// cut by the measurement's edges.
		limit := float64(end.Sub(start)/cfg.window + 2)
		rr.Met = rr.Converged
		for _, l := range rr.Links {
			rr.Met = rr.Met && float64(l.Batches) <= limit
		}
		r.Met = r.Met && rr.Met
		r.Runs = append(r.Runs, rr)
	}
	var parts []string
	lo, hi := math.Inf(1), 0.0
	loRate, hiRate := math.Inf(1), 0.0
	for _, rr := range r.Runs {
		var items, bytes float64
		for _, l := range rr.Links {
			items += l.ItemsPerS
			bytes += l.BytesPerS
		}
		k := float64(len(rr.Links))
		parts = append(parts, fmt.Sprintf("%.0f/s (target %d): ≤%.1f batches/s per link (limit %.0f), %.0f items/s, %.0f kB/s per link avg%s",
			rr.AchievedPerS, rr.TargetPerS, rr.MaxBatchesPerS, rr.LimitPerS, items/k, bytes/k/1e3, map[bool]string{true: "", false: ", NOT CONVERGED"}[rr.Converged]))
		lo, hi = min(lo, rr.MaxBatchesPerS), max(hi, rr.MaxBatchesPerS)
		loRate, hiRate = min(loRate, rr.AchievedPerS), max(hiRate, rr.AchievedPerS)
	}
	r.Independent = len(r.Runs) > 1 && hiRate > 2*loRate && hi <= 1.2*lo
	r.Summary = fmt.Sprintf("rate: writes at %s over %d docs: %s; goal %s", cfg.rateAt, cfg.rateDocs, strings.Join(parts, "; "), harness.MetWord(r.Met))
	return r, nil
}

// waitCounts waits until every PoP reads want[i] as document doc(i)'s n.
func (c *cluster) waitCounts(ctx context.Context, doc func(int) string, want []int, since time.Time, bound time.Duration) (bool, float64, error) {
	deadline := time.Now().Add(bound)
	for {
		ok := true
	check:
		for _, id := range c.IDs {
			for i, w := range want {
				b, found, err := c.PoPs[id].Docs.Get(appName, hotColl, doc(i))
				if err != nil {
					return false, 0, err
				}
				var v struct{ N int }
				if !found || json.Unmarshal(b, &v) != nil || v.N != w {
					ok = false
					break check
				}
			}
		}
		if ok {
			return true, harness.Ms(time.Since(since)), nil
		}
		if time.Now().After(deadline) {
			return false, 0, nil
		}
		if err := bc.Sleep(ctx, 5*time.Millisecond); err != nil {
			return false, 0, err
		}
	}
}

// ---- partition ----

type partitionResult struct {
	Scenario         string  `json:"scenario"`
	Env              env     `json:"env"`
	Isolated         string  `json:"isolated"`
	PartitionMs      float64 `json:"partition_ms"`
	Docs             int     `json:"docs"`
	WrittenIsolated  int     `json:"written_isolated"`
	WrittenElsewhere int     `json:"written_elsewhere"`
	AchievedPerS     float64 `json:"achieved_writes_per_s"`
	// MissingAtHeal is, per PoP, how many of the documents it did not
	// hold when the partition healed.
	MissingAtHeal map[string]int `json:"missing_at_heal"`
	Converged     bool           `json:"converged"`
	ConvergeMs    float64        `json:"converge_ms"` // from the heal until every PoP holds every document
	// ConvergeMsAt is, per PoP, from the heal until it held every document.
	ConvergeMsAt map[string]float64 `json:"converge_ms_at"`
	// FirstBatchMsAt is, per PoP, from the heal until it applied a first
	// batch from a peer (reconnection and watermark exchange included).
	FirstBatchMsAt map[string]float64 `json:"first_batch_ms_at"`
	// From the heal until convergence, over all links: what log shipping
	// sent (items, payload bytes), and all bytes on the wire (shipping,
	// acks, anti-entropy digests, keys and states, NATS protocol).
	HealBatchItems uint64  `json:"heal_batch_items"`
	HealBatchBytes uint64  `json:"heal_batch_bytes"`
	HealWireBytes  uint64  `json:"heal_wire_bytes"`
	GoalMs         float64 `json:"goal_ms"`
	// After convergence, every document is compared at every PoP: as
	// JSON with what its writer acknowledged, and as stored CRDT state
	// (anti-entropy's digests hash the state bytes, so replicas whose
	// states differ byte-wise are repaired over and over).
	JSONMismatches  int    `json:"json_mismatches"`
	StateMismatches int    `json:"state_mismatches"`
	Met             bool   `json:"goal_met"`
	Summary         string `json:"summary"`
}

func (r *partitionResult) SummaryLine() string { return r.Summary }

const convergeGoal = 2 * time.Second

func runPartition(ctx context.Context, cfg config) (*partitionResult, error) {
	c, err := startCluster(ctx, cfg, netsim.Model{})
	if err != nil {
		return nil, err
	}
	defer c.close()
	iso := cfg.isolate
	var others []string
	for _, id := range c.IDs {
		if id != iso {
			others = append(others, id)
		}
	}
	n := cfg.partitionDocs
	name := func(i int) string { return fmt.Sprintf("p%06d", i) }
	// Even documents at the isolated PoP, odd ones round-robin elsewhere.
	writer := func(i int) string {
		if i%2 == 0 {
			return iso
		}
		return others[(i/2)%len(others)]
	}
	expect := make([]string, n)

	cut := time.Now()
	c.Layers[iso].PartitionAll()
	for _, id := range others {
		if err := c.Layers[id].Partition(iso); err != nil {
			return nil, err
		}
	}
	// Spread the writes over most of the partition, leaving time for the
	// connected side to replicate among itself.
	spread := cfg.partitionFor * 8 / 10
	start, end, err := pace(ctx, n, float64(n)/max(spread.Seconds(), 1e-3), cfg.writers, func(i int) error {
		doc, err := c.PoPs[writer(i)].Docs.Update(ctx, appName, hotColl, name(i), []crdt.Op{setOp("i", strconv.Itoa(i)), setOp("at", strconv.Quote(writer(i)))})
		expect[i] = string(doc)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("writing during the partition: %w", err)
	}
	if err := bc.Sleep(ctx, time.Until(cut.Add(cfg.partitionFor))); err != nil {
		return nil, err
	}
	r := &partitionResult{Scenario: "partition", Env: c.env, Isolated: iso, Docs: n, MissingAtHeal: map[string]int{}, ConvergeMsAt: map[string]float64{},

		AchievedPerS: harness.Round(float64(n)/end.Sub(start).Seconds(), 1), GoalMs: harness.Ms(convergeGoal)}
	for i := range n {
		if writer(i) == iso {
			r.WrittenIsolated++
		} else {
			r.WrittenElsewhere++
		}
	}
	// What each PoP lacks, in write order; polled from the back, since
	// shipping follows the writers' logs.
	missing := map[string][]int{}
	for _, id := range c.IDs {
		for i := range n {
			if !c.has(id, name(i), expect[i]) {
				missing[id] = append(missing[id], i)
			}
		}
		r.MissingAtHeal[id] = len(missing[id])
	}

	healed := time.Now()
	r.PartitionMs = harness.Ms(healed.Sub(cut))
	var fmu sync.Mutex
	first := map[string]float64{}
	c.setHook(func(at, from string, keys []store.Key) {
		now := time.Now()
		fmu.Lock()
		defer fmu.Unlock()
		if _, ok := first[at]; !ok {
			first[at] = harness.Ms(now.Sub(healed))
		}
	})
	defer c.setHook(nil)
	before := c.snapLinks()
	c.Layers[iso].HealAll()
	for _, id := range others {
		if err := c.Layers[id].Heal(iso); err != nil {
			return nil, err
		}
	}
	deadline := healed.Add(cfg.convergeMax)
	for {
		left := 0
		for _, id := range c.IDs {
			l := missing[id]
			for len(l) > 0 && c.has(id, name(l[len(l)-1]), expect[l[len(l)-1]]) {
				l = l[:len(l)-1]
			}
			missing[id] = l
			left += len(l)
			if _, done := r.ConvergeMsAt[id]; !done && len(l) == 0 {
				r.ConvergeMsAt[id] = harness.Ms(time.Since(healed))
			}
		}
		if left == 0 {
			r.Converged, r.ConvergeMs = true, harness.Ms(time.Since(healed))
			break
		}
		if time.Now().After(deadline) {
			break
		}
		if err := bc.Sleep(ctx, 2*time.Millisecond); err != nil {
			return nil, err
		}
	}
	c.setHook(nil)
	fmu.Lock()
	r.FirstBatchMsAt = maps.Clone(first)
	fmu.Unlock()
	after := c.snapLinks()
	for k, a := range after.sent {
		r.HealBatchBytes += a[2] - before.sent[k][2]
		r.HealBatchItems += a[1] - before.sent[k][1]
	}
	for k, a := range after.wire {
		r.HealWireBytes += a - before.wire[k]
	}
	// Full check: every document at every PoP, as JSON and as state.
	for i := range n {
		var first []byte
		for j, id := range c.IDs {
			if !c.has(id, name(i), expect[i]) {
				r.JSONMismatches++
			}
			st, _, err := c.PoPs[id].Store.Get(store.Key{App: appName, Collection: hotColl, Doc: name(i)})
			if err != nil {
				return nil, err
			}
			if j == 0 {
				first = st
			} else if string(st) != string(first) {
				r.StateMismatches++
			}
		}
	}
	r.Met = r.Converged && r.JSONMismatches == 0 && r.ConvergeMs <= r.GoalMs
	conv := "NOT CONVERGED"
	if r.Converged {
		conv = fmt.Sprintf("converged %.0f ms after the heal", r.ConvergeMs)
	}
	r.Summary = fmt.Sprintf("partition: %s cut off %.1f s, %d docs written (%d there, %d elsewhere), missing at heal %d (%s) / %d (others max); %s (goal %.0f ms), %d JSON / %d state mismatches; goal %s",
		iso, r.PartitionMs/1e3, n, r.WrittenIsolated, r.WrittenElsewhere, r.MissingAtHeal[iso], iso, maxOther(r.MissingAtHeal, iso),
		conv, r.GoalMs, r.JSONMismatches, r.StateMismatches, harness.MetWord(r.Met))
	return r, nil
}

func maxOther(m map[string]int, skip string) int {
	v := 0
	for id, n := range m {
		if id != skip {
			v = max(v, n)
		}
	}
	return v
}

// has reports whether PoP id reads doc as want.
func (c *cluster) has(id, doc, want string) bool {
	got, found, err := c.PoPs[id].Docs.Get(appName, hotColl, doc)
	return err == nil && found && string(got) == want
}
