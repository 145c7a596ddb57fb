package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/verge-edge/verge/bench/internal/harness"
)

// ---- noisy: fair shares between apps ----
//
// App "hog" runs a function that never returns (internal/wasm/testdata
// loop.wasm: it burns its whole CPU limit, 50 ms, and is stopped) at
// -hog-c connections; app "light" serves examples/hello-go at -light-c.
// Each round measures light alone and beside hog (alternating which comes
// first); the result is the median of the rounds.

type noisyResult struct {
	Scenario       string    `json:"scenario"`
	LoadAvg        string    `json:"load_avg"`
	Rounds         int       `json:"rounds"`
	HogConns       int       `json:"hog_conns"`
	LightConns     int       `json:"light_conns"`
	SecondsPerRun  float64   `json:"seconds_per_run"`
	AloneRPS       []int     `json:"light_alone_rps"`
	BesideRPS      []int     `json:"light_beside_hog_rps"`
	AloneP99Ms     []float64 `json:"light_alone_p99_ms"`
	BesideP99Ms    []float64 `json:"light_beside_hog_p99_ms"`
	HogRPS         []int     `json:"hog_rps"`
	ThroughputRate float64   `json:"throughput_beside_vs_alone"`
	P99Ratio       float64   `json:"p99_beside_vs_alone"`
}

func (r noisyResult) SummaryLine() string {
	return fmt.Sprintf("noisy (load %s): light (hello-go, c=%d) beside hog (CPU limit burner, c=%d), median of %d: %d vs %d req/s alone = %.2fx (goal >= 0.8x: %s); p99 %.2f vs %.2f ms = %.2fx (goal <= 2x: %s); hog %d req/s",
		r.LoadAvg, r.LightConns, r.HogConns, r.Rounds, medianInt(r.BesideRPS), medianInt(r.AloneRPS), r.ThroughputRate, harness.MetWord(r.ThroughputRate >= 0.8),
		harness.Median(r.BesideP99Ms), harness.Median(r.AloneP99Ms), r.P99Ratio, harness.MetWord(r.P99Ratio <= 2), medianInt(r.HogRPS))
}

func medianInt(v []int) int {
	f := make([]float64, len(v))
	for i, x := range v {
		f[i] = float64(x)
	}
	return int(harness.Median(f))
}

// hogApp writes the hog app: a verge function that loops until its CPU
// limit stops it.
func hogApp(work string) (string, error) {
	dir := filepath.Join(work, "hog")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	mod, err := os.ReadFile("internal/wasm/testdata/loop.wasm")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "loop.wasm"), mod, 0o644); err != nil {
		return "", err
	}
	manifest := "name = \"hog\"\n[[function]]\nname = \"loop\"\nmodule = \"loop.wasm\"\nexecutor = \"verge\"\nroutes = [\"/*\"]\n"
	return dir, os.WriteFile(filepath.Join(dir, "verge.toml"), []byte(manifest), 0o644)
}

// latencies runs a closed loop of conns clients against app's /hello for d
// and returns its throughput and 99th percentile latency.
func latencies(ctx context.Context, httpAddr, app string, conns int, d time.Duration) (int, time.Duration, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var mu sync.Mutex
	var lat []time.Duration
	var bad atomic.Int64
	deadline := time.Now().Add(d)
	err := harness.Workers(ctx, conns, func(ctx context.Context, w int) error {
		var mine []time.Duration
		defer func() { mu.Lock(); lat = append(lat, mine...); mu.Unlock() }()
		for time.Now().Before(deadline) {
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+httpAddr+"/hello?name=bench", nil)
			req.Host = app + ".localhost"
			start := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				bad.Add(1)
				continue
			}
			mine = append(mine, time.Since(start))
		}
		return nil
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		return 0, 0, err
	}
	if bad.Load() > 0 {
		return 0, 0, fmt.Errorf("%d of %s's requests failed", bad.Load(), app)
	}
	slices.Sort(lat)
	return int(float64(len(lat)) / d.Seconds()), harness.Percentile(lat, 0.99), nil
}

// hogLoad keeps conns requests to hog in flight until stopped; it returns
// how many completed (each ends at hog's CPU limit, an error response).
func hogLoad(ctx context.Context, httpAddr string, conns int) (stop func() int) {
	ctx, cancel := context.WithCancel(ctx)
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}
	client := &http.Client{Transport: tr, Timeout: 60 * time.Second}
	var done atomic.Int64
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+httpAddr+"/", nil)
				req.Host = "hog.localhost"
				resp, err := client.Do(req)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				done.Add(1)
			}
		})
	}
	return func() int {
		cancel()
		wg.Wait()
		tr.CloseIdleConnections()
		return int(done.Load())
	}
}

func noisy(ctx context.Context, c config) (harness.Result, error) {
	n, err := startNet(ctx, c, 1)
	if err != nil {
		return nil, err
	}
	defer n.close()
	work, err := os.MkdirTemp("", "verge-bench-noisy-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	light, _, err := appVersion(work, "light", 0)
	if err != nil {
		return nil, err
	}
	hog, err := hogApp(work)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{light, hog} {
		if err := n.deployAPI(ctx, d); err != nil {
			return nil, err
		}
	}
	p := n.pops[0]
	res := noisyResult{Scenario: "noisy", Rounds: c.noisyRounds, HogConns: c.hogConns, LightConns: c.lightConns, SecondsPerRun: c.duration.Seconds()}
	// warm light's pool
	if _, _, err := latencies(ctx, p.HTTP, "light", c.lightConns, time.Second); err != nil {
		return nil, err
	}
	alone := func() error {
		rps, p99, err := latencies(ctx, p.HTTP, "light", c.lightConns, c.duration)
		res.AloneRPS, res.AloneP99Ms = append(res.AloneRPS, rps), append(res.AloneP99Ms, harness.Ms(p99))
		return err
	}
	beside := func() error {
		stop := hogLoad(ctx, p.HTTP, c.hogConns)
		time.Sleep(time.Second) // hog's queue fills
		start := time.Now()
		rps, p99, err := latencies(ctx, p.HTTP, "light", c.lightConns, c.duration)
		hogDone := stop()
		res.BesideRPS, res.BesideP99Ms = append(res.BesideRPS, rps), append(res.BesideP99Ms, harness.Ms(p99))
		res.HogRPS = append(res.HogRPS, int(float64(hogDone)/time.Since(start).Seconds()))
		return err
	}
	for round := range c.noisyRounds {
		steps := []func() error{alone, beside}
		if round%2 == 1 {
			steps[0], steps[1] = beside, alone
		}
		for _, step := range steps {
			if err := step(); err != nil {
				return nil, err
			}
		}
		cmd.Progress("round %d: alone %d req/s p99 %.2f ms; beside hog %d req/s p99 %.2f ms", round+1,
			res.AloneRPS[round], res.AloneP99Ms[round], res.BesideRPS[round], res.BesideP99Ms[round])
	}
	res.ThroughputRate = harness.Round(float64(medianInt(res.BesideRPS))/float64(medianInt(res.AloneRPS)), 3)
	res.P99Ratio = harness.Round(harness.Median(res.BesideP99Ms)/harness.Median(res.AloneP99Ms), 3)
	res.LoadAvg = harness.LoadAvg()
	return res, nil
}
