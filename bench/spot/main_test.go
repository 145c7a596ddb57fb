package main

import (
	"context"
	"testing"
	"time"

	"github.com/verge-edge/verge/bench/internal/harness"
	"github.com/verge-edge/verge/bench/internal/harness/harnesstest"
)

// tiny is a configuration every scenario finishes quickly with: three PoPs
// (ord central, sfo, iad), a few operations, short runs.
func tiny() config {
	c := defaultConfig()
	c.pops = 3
	c.noSync = true
	c.latencyOps = 5
	c.tputFor, c.tputConc = 200*time.Millisecond, []int{1, 8}
	c.stockAt, c.threshold, c.grant = "iad", 20, 10
	c.aboveTakes, c.belowTakes = 40, 5
	c.stockConc, c.stockFor = 4, 200*time.Millisecond
	return c
}

// asJSON is r as its readers see it: a JSON object with a scenario, its
// env (the PoPs, the disk's fsync cost) and its summary.
func asJSON(t *testing.T, r harness.Result) map[string]any {
	t.Helper()
	m := harnesstest.JSON(t, r, "scenario", "env")
	env, _ := m["env"].(map[string]any)
	if pops, _ := env["pops"].([]any); len(pops) != 3 {
		t.Errorf("env.pops = %v, want 3 PoPs", env["pops"])
	}
	if num(t, env, "fsync_p50_ms") <= 0 || num(t, env, "fsync_p50_ms") > num(t, env, "fsync_p99_ms") {
		t.Errorf("fsync p50 %v p99 %v", env["fsync_p50_ms"], env["fsync_p99_ms"])
	}
	return m
}

var (
	num = harnesstest.Num
	obj = harnesstest.Obj
)

// checkStats checks a latency summary: n samples, ordered percentiles.
func checkStats(t *testing.T, what string, s map[string]any, n float64) {
	t.Helper()
	if got := num(t, s, "n"); got != n {
		t.Errorf("%s: n = %v, want %v", what, got, n)
	}
	p50, p99, mx := num(t, s, "p50_ms"), num(t, s, "p99_ms"), num(t, s, "max_ms")
	if !(p50 > 0 && p50 <= p99 && p99 <= mx) {
		t.Errorf("%s: p50 %v p99 %v max %v", what, p50, p99, mx)
	}
}

func TestLatencySmoke(t *testing.T) {
	t.Parallel()
	cfg := tiny()
	r, err := runLatency(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := asJSON(t, r)
	if m["scenario"] != "latency" || m["central"] != "ord" || num(t, m, "ops_each") != 5 {
		t.Errorf("scenario %v central %v ops_each %v", m["scenario"], m["central"], m["ops_each"])
	}
	rows, _ := m["pops"].([]any)
	if len(rows) != cfg.pops {
		t.Fatalf("%d rows, want %d", len(rows), cfg.pops)
	}
	for i, x := range rows {
		row := x.(map[string]any)
		id := row["pop"]
		rtt, goal := num(t, row, "rtt_ms"), num(t, row, "goal_ms")
		if goal != rtt+2 {
			t.Errorf("%v: goal %v for a %v ms round trip, want rtt + 2 ms", id, goal, rtt)
		}
		if i == 0 {
			if id != "ord" || rtt != 0 || row["mesh_ping"] != nil {
				t.Errorf("first row %v: rtt %v ping %v; want the centre, in-process", id, rtt, row["mesh_ping"])
			}
		} else {
			if id == "ord" || rtt <= 0 {
				t.Errorf("row %d: %v with a %v ms round trip", i, id, rtt)
			}
			checkStats(t, id.(string)+" ping", obj(t, row, "mesh_ping"), 5)
		}
		for _, op := range []string{"claim", "take", "update_doc"} {
			s := obj(t, row, op)
			checkStats(t, id.(string)+" "+op, s, 5)
			// netsim holds each direction for the one-way latency: no
			// call to the centre can answer sooner than a round trip.
			if p50 := num(t, s, "p50_ms"); p50 < rtt {
				t.Errorf("%v %s: p50 %v ms under the %v ms round trip", id, op, p50, rtt)
			}
			if over := num(t, s, "over_rtt_p50_ms"); over != harness.Round(num(t, s, "p50_ms")-rtt, 3) {
				t.Errorf("%v %s: over_rtt_p50_ms %v", id, op, over)
			}
		}
	}
}

func TestThroughputSmoke(t *testing.T) {
	t.Parallel()
	cfg := tiny()
	r, err := runThroughput(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := asJSON(t, r)
	if m["at"] != "ord" {
		t.Errorf("at %v, want the centre", m["at"])
	}
	runs, _ := m["runs"].([]any)
	if len(runs) != 2*len(cfg.tputConc) {
		t.Fatalf("%d runs, want %d", len(runs), 2*len(cfg.tputConc))
	}
	for i, x := range runs {
		run := x.(map[string]any)
		wantOp := []string{"claim", "take"}[i/len(cfg.tputConc)]
		if run["op"] != wantOp || num(t, run, "concurrency") != float64(cfg.tputConc[i%len(cfg.tputConc)]) {
			t.Errorf("run %d: %v at %v", i, run["op"], run["concurrency"])
		}
		ops := num(t, run, "ops")
		if ops < 1 || num(t, run, "ops_per_s") <= 0 {
			t.Errorf("run %d: %v ops, %v/s", i, ops, run["ops_per_s"])
		}
		// Every claim of a fresh key wins; the counter falls by the takes.
		if run["exact"] != true {
			t.Errorf("run %d (%v): not exact", i, run["op"])
		}
		checkStats(t, "run", obj(t, run, "latency"), ops)
	}
}

func TestThresholdSmoke(t *testing.T) {
	t.Parallel()
	cfg := tiny()
	r, err := runThreshold(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := asJSON(t, r)
	if m["at"] != "iad" || num(t, m, "threshold") != 20 || num(t, m, "grant") != 10 {
		t.Errorf("at %v threshold %v grant %v", m["at"], m["threshold"], m["grant"])
	}
	rtt := num(t, m, "rtt_ms")
	if rtt <= 0 {
		t.Fatalf("rtt %v", rtt)
	}
	above, below := obj(t, m, "above"), obj(t, m, "below")
	if above["counter"] != "plenty" || num(t, above, "takes") != 40 || num(t, above, "centre_stock_before") <= 20 {
		t.Errorf("above: %v", above)
	}
	// Far above the threshold takes are served from the escrow; a few wait
	// for a grant while the escrow's grant grows to the demand (each
	// doubling follows one such wait, up to 64 times the declared grant).
	if num(t, above, "local") < 40-8 {
		t.Errorf("above the threshold: %v of 40 takes local", above["local"])
	}
	checkStats(t, "above take", obj(t, above, "take"), 40)
	checkStats(t, "above write", obj(t, above, "local_write"), 40)
	// At the threshold every take is a sale at the centre: a round trip.
	if below["counter"] != "scarce" || num(t, below, "centre_stock_before") != 20 {
		t.Errorf("below: %v", below)
	}
	if num(t, below, "local") != 0 || num(t, below, "wan_waits") != 5 {
		t.Errorf("at the threshold: %v local, %v of 5 takes waited on the WAN", below["local"], below["wan_waits"])
	}
	bt := obj(t, below, "take")
	checkStats(t, "below take", bt, 5)
	if num(t, bt, "p50_ms") < rtt {
		t.Errorf("a take at the centre in %v ms over a %v ms round trip", bt["p50_ms"], rtt)
	}
	cc := obj(t, m, "concurrent")
	if num(t, cc, "concurrency") != 4 || num(t, cc, "takes_per_s") <= 0 || num(t, cc, "hot_doc_writes_per_s") <= 0 || num(t, cc, "distinct_doc_writes_per_s") <= 0 {
		t.Errorf("concurrent: %v", cc)
	}
	if num(t, cc, "take_local_fraction") < 0.5 {
		t.Errorf("concurrent takes above the threshold: %v local", cc["take_local_fraction"])
	}
	// Never oversold, nothing lost: centre + escrows + sold = restocked.
	if m["accounted"] != true {
		t.Errorf("the stock's units do not add up")
	}
}

func TestConfigCheck(t *testing.T) {
	t.Parallel()
	c := defaultConfig()
	if err := c.check(); err != nil {
		t.Fatalf("default configuration: %v", err)
	}
	if tc := tiny(); tc.check() != nil {
		err := tc.check()
		t.Fatalf("tiny configuration: %v", err)
	}
	for name, mod := range map[string]func(*config){
		"too few PoPs":            func(c *config) { c.pops = 1 },
		"stock at the centre":     func(c *config) { c.stockAt = "ord" },
		"stock at an unknown PoP": func(c *config) { c.stockAt = "xyz" },
		"stock beyond -pops":      func(c *config) { c.pops = 3 }, // fra is the 4th
		"no grant":                func(c *config) { c.grant = 0 },
		"more takes than stock":   func(c *config) { c.belowTakes = int(c.threshold) + 1 },
		"no throughput run":       func(c *config) { c.tputConc = nil },
		"negative scale":          func(c *config) { c.scale = -1 },
		"concurrent with no time": func(c *config) { c.stockFor = 0 },
		"no latency ops":          func(c *config) { c.latencyOps = 0 },
	} {
		c := defaultConfig()
		mod(&c)
		if err := c.check(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
