package main

import (
	"context"
	"testing"
	"time"

	"github.com/verge-edge/verge/bench/internal/harness"
	"github.com/verge-edge/verge/bench/internal/harness/harnesstest"
)

// tiny is a configuration every scenario finishes quickly with: three PoPs
// (ord central, sfo, iad), a few writes, short runs.
func tiny() config {
	c := defaultConfig()
	c.pops = 3
	c.noSync = true
	c.delayRate, c.delayFor = 50, 400*time.Millisecond
	c.rates, c.rateFor, c.rateDocs, c.writers = []int{400, 100}, 300*time.Millisecond, 10, 8
	c.isolate, c.partitionFor, c.partitionDocs = "iad", time.Second, 60
	c.convergeMax = 20 * time.Second
	return c
}

// asJSON is r as its readers see it: a JSON object with a scenario, its
// env, whether its goal was met and its summary.
func asJSON(t *testing.T, r harness.Result) map[string]any {
	t.Helper()
	return harnesstest.JSON(t, r, "scenario", "env", "goal_met")
}

var num = harnesstest.Num

func TestDelaySmoke(t *testing.T) {
	t.Parallel()
	cfg := tiny()
	r, err := runDelay(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := asJSON(t, r)
	if m["scenario"] != "delay" || m["from"] != "sfo" {
		t.Errorf("scenario %v from %v", m["scenario"], m["from"])
	}
	writes := num(t, m, "writes")
	if writes != 20 { // 50/s for 0.4 s
		t.Errorf("writes = %v, want 20", writes)
	}
	dests, _ := m["destinations"].([]any)
	if len(dests) != cfg.pops-1 {
		t.Fatalf("%d destinations, want %d", len(dests), cfg.pops-1)
	}
	for _, x := range dests {
		d := x.(map[string]any)
		if d["pop"] == "sfo" {
			t.Errorf("the writer is listed as a destination")
		}
		if v := num(t, d, "visible"); v != writes {
			t.Errorf("%v: %v of %v writes visible", d["pop"], v, writes)
		}
		ow, p50, p99, mx, goal := num(t, d, "one_way_ms"), num(t, d, "p50_ms"), num(t, d, "p99_ms"), num(t, d, "max_ms"), num(t, d, "goal_ms")
		if !(ow > 0 && p50 <= p99 && p99 <= mx && goal > ow) {
			t.Errorf("%v: one-way %v p50 %v p99 %v max %v goal %v", d["pop"], ow, p50, p99, mx, goal)
		}
		// A write cannot be visible sooner than one way after it left
		// (early writes count as 0, so compare the maximum).
		if mx < ow {
			t.Errorf("%v: every write visible within %v ms over a %v ms link", d["pop"], mx, ow)
		}
	}
}

func TestRateSmoke(t *testing.T) {
	t.Parallel()
	cfg := tiny()
	r, err := runRate(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := asJSON(t, r)
	runs, _ := m["runs"].([]any)
	if len(runs) != len(cfg.rates) {
		t.Fatalf("%d runs, want %d", len(runs), len(cfg.rates))
	}
	for i, x := range runs {
		run := x.(map[string]any)
		want := float64(cfg.rates[i]) * cfg.rateFor.Seconds()
		if w := num(t, run, "writes"); w != want {
			t.Errorf("run %d: %v writes, want %v", i, w, want)
		}
		if run["converged"] != true {
			t.Errorf("run %d: the PoPs did not all reach the final counts", i)
		}
		if num(t, run, "batches_per_s_limit") != 20 {
			t.Errorf("run %d: limit %v, want 20 (50 ms window)", i, run["batches_per_s_limit"])
		}
		links, _ := run["links"].([]any)
		if len(links) != cfg.pops-1 {
			t.Fatalf("run %d: %d links, want %d", i, len(links), cfg.pops-1)
		}
		for _, y := range links {
			l := y.(map[string]any)
			if l["from"] != "sfo" || l["to"] == "sfo" {
				t.Errorf("run %d: link %v→%v", i, l["from"], l["to"])
			}
			w := num(t, run, "writes")
			if num(t, l, "batches") < 1 || num(t, l, "payload_bytes_per_s") <= 0 || num(t, l, "wire_bytes_per_s") <= 0 {
				t.Errorf("run %d: link %v: %v", i, l["to"], l)
			}
			// Coalescing never adds items: each stands for at least one
			// write (the previous run had drained before this one began).
			if items := num(t, l, "items"); items < 1 || items > w {
				t.Errorf("run %d: link %v: %v items for %v writes", i, l["to"], items, w)
			}
		}
	}
}

func TestPartitionSmoke(t *testing.T) {
	t.Parallel()
	cfg := tiny()
	r, err := runPartition(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := asJSON(t, r)
	docs, iso, other := num(t, m, "docs"), num(t, m, "written_isolated"), num(t, m, "written_elsewhere")
	if docs != float64(cfg.partitionDocs) || iso+other != docs || iso == 0 || other == 0 {
		t.Errorf("docs %v: %v at the isolated PoP, %v elsewhere", docs, iso, other)
	}
	if m["converged"] != true || num(t, m, "json_mismatches") != 0 || num(t, m, "state_mismatches") != 0 {
		t.Errorf("converged %v, %v JSON and %v state mismatches", m["converged"], m["json_mismatches"], m["state_mismatches"])
	}
	// The partition held: the isolated PoP had none of the others' writes,
	// and none of them had any of its.
	missing, _ := m["missing_at_heal"].(map[string]any)
	if len(missing) != cfg.pops {
		t.Fatalf("missing_at_heal: %v", missing)
	}
	for id, v := range missing {
		n, _ := v.(float64)
		if id == cfg.isolate && n != other {
			t.Errorf("the isolated PoP lacked %v documents at the heal, want %v (all the others wrote)", n, other)
		}
		if id != cfg.isolate && n < iso {
			t.Errorf("%s lacked %v documents at the heal, want at least the %v the isolated PoP wrote", id, n, iso)
		}
	}
	at, _ := m["converge_ms_at"].(map[string]any)
	if len(at) != cfg.pops {
		t.Errorf("converge_ms_at: %v", at)
	}
	for id, v := range at {
		if v.(float64) > num(t, m, "converge_ms") {
			t.Errorf("%s converged at %v ms, after the whole network (%v ms)", id, v, m["converge_ms"])
		}
	}
}

func TestConfigCheck(t *testing.T) {
	t.Parallel()
	c := defaultConfig()
	if err := c.check(); err != nil {
		t.Fatalf("default configuration: %v", err)
	}
	for name, mod := range map[string]func(*config){
		"too few PoPs":         func(c *config) { c.pops = 1 },
		"isolate unknown":      func(c *config) { c.isolate = "xyz" },
		"isolate beyond -pops": func(c *config) { c.pops = 3 }, // syd is the 6th
		"writer unknown":       func(c *config) { c.rateAt = "nowhere" },
		"no window":            func(c *config) { c.window = 0 },
		"one partition doc":    func(c *config) { c.partitionDocs = 1 },
	} {
		c := defaultConfig()
		mod(&c)
		if err := c.check(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
