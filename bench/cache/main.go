// Command cache measures the HTTP cache and outbound fetch side by side with
// a plain Go net/http server, in one run:
//
//	go run ./bench/cache [-scenario all|hit|pophit|miss|purge] [-size 1024] [-d 5s] [-c 32] [-runs 3]
//	    [-origin-latency 0s,20ms] [-n 300] [-verge bin/verge] [-pops 5] [-latency-scale 1] [-rounds 7]
//
// The proxy of hit and miss is examples/proxy with its function written in
// Go instead of Wasm: the cache's Handler (a function's cacheable responses
// are served without running it) in front of a handler that fetches the
// request's path and query from the backend "origin" through internal/fetch
// (and the cache), adds a header and returns the response; on a cache hit
// the function does not run at all, so the hit figure is the path
// examples/proxy takes at a PoP, less the PoP's routing. The purge scenario
// runs the real examples/proxy on a verge net.
//
// Scenarios:
//
//   - hit: wrk against a plain net/http server writing -size bytes, and
//     against the proxy in front of it with every request a cache hit,
//     alternated -runs times; requests/s of each, the server process's CPU
//     time per request, and the ratios (goal ≥ 0.8). On a shared machine
//     the CPU ratio is the figure to trust: wall-clock throughput moves
//     with whatever else runs.
//   - pophit: hit through a whole PoP in this process (pop.Start) serving
//     the real examples/proxy (Wasm): the PoP's router and cache in front
//     of the plain server, see pophit.go. With -same-fields, a third
//     server, plain too, writes every field the PoP's hit carries (the
//     platform's and the cache's as well as the app's): a diagnostic that
//     tells what those fields cost net/http from what the PoP's code costs.
//     The goal's ratio stays against the plain server.
//   - miss: -n sequential requests to unique URLs, alternately straight to
//     the origin and through the proxy (every one a miss, stored), for each
//     -origin-latency; p50/p99 of each and what the proxy adds (goal ≤ 1 ms).
//   - purge: examples/proxy on a `verge net` of -pops PoPs at -latency-scale
//     times real-world WAN latency; -rounds times, one object cached at
//     every PoP is purged by surrogate key at the central PoP's admin API:
//     the time from the call to the last PoP's purge (median; goal: the
//     one-way latency to the farthest PoP + ≤ 10 ms), see purge.go.
//
// Each scenario's JSON object goes to stdout; a summary line per scenario
// to stderr at the end.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/bench/internal/harness"
	"github.com/verge-edge/verge/internal/cache"
	"github.com/verge-edge/verge/internal/fetch"
)

var cmd = &harness.Command{Name: "bench/cache", Scenarios: []string{"hit", "pophit", "miss", "purge"}}

func main() {
	scenario := cmd.ScenarioFlag()
	size := flag.Int("size", 1024, "response body bytes")
	dur := flag.Duration("d", 5*time.Second, "hit: duration of each wrk run")
	conns := flag.Int("c", 32, "hit: wrk connections")
	runs := flag.Int("runs", 3, "hit: runs of each server, alternated")
	latencies := flag.String("origin-latency", "0s,20ms", "miss: the origin's own latencies, comma-separated")
	n := flag.Int("n", 300, "miss: requests of each kind per latency")
	var pc purgeConfig
	flag.StringVar(&pc.verge, "verge", "bin/verge", "purge: the verge binary (make build)")
	flag.IntVar(&pc.pops, "pops", 5, "purge: PoPs of the network")
	flag.Float64Var(&pc.scale, "latency-scale", 1, "purge: emulated WAN latency scale (1: real-world)")
	flag.IntVar(&pc.rounds, "rounds", 7, "purge: purges measured")
	sameFields := flag.Bool("same-fields", false, "pophit: also measure a plain server writing every field of the PoP's hit (a diagnostic)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of this process (the in-process servers: hit, pophit) to this file")
	memprofile := flag.String("memprofile", "", "write an allocation profile of this process to this file at the end (every allocation sampled)")
	cmd.Parse()
	if *memprofile != "" {
		runtime.MemProfileRate = 1
		defer func() {
			f, err := os.Create(*memprofile)
			if err != nil {
				cmd.Fatalf("-memprofile: %v", err)
			}
			defer f.Close()
			if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
				cmd.Fatalf("-memprofile: %v", err)
			}
		}()
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			cmd.Fatalf("-cpuprofile: %v", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			cmd.Fatalf("-cpuprofile: %v", err)
		}
		defer pprof.StopCPUProfile()
	}
	var lats []time.Duration
	for f := range strings.SplitSeq(*latencies, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil || d < 0 {
			cmd.Fatalf("-origin-latency %q: want durations like 0s,20ms", *latencies)
		}
		lats = append(lats, d)
	}
	if _, err := exec.LookPath("wrk"); err != nil && slices.Contains(cmd.Select(*scenario), "hit") {
		cmd.Fatalf("the hit scenario needs wrk (scripts/setup.sh installs it)")
	}
	cmd.Run(cmd.Select(*scenario), func(ctx context.Context, s string) (harness.Result, error) {
		switch s {
		case "hit":
			return hit(ctx, *size, *dur, *conns, *runs)
		case "pophit":
			return popHit(ctx, *size, *dur, *conns, *runs, *sameFields)
		case "purge":
			return purge(ctx, pc)
		default:
			return miss(ctx, *size, lats, *n)
		}
	})
}

// hitPath and hitHeaders are the request of the hit scenarios, to both
// servers alike: a path with a query and the fields a browser sends (the
// proxy passes some on to its origin, and the cache's key and Vary look
// at them), with the Host that names the app at a PoP.
const hitPath = "/products/42?fields=name,price&currency=EUR"

var hitHeaders = [][2]string{
	{"Host", "proxy.localhost"},
	{"User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"},
	{"Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
	{"Accept-Language", "en-US,en;q=0.5"},
	{"Accept-Encoding", "gzip, deflate, br"},
}

// getHit makes the hit scenarios' request to base once.
func getHit(base string) (*http.Response, []byte, error) {
	req, err := http.NewRequest("GET", base+hitPath, nil)
	if err != nil {
		return nil, nil, err
	}
	for _, h := range hitHeaders {
		if h[0] == "Host" {
			req.Host = h[1]
		} else {
			req.Header.Set(h[0], h[1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// servers are an origin and the proxy in front of it.
type servers struct {
	origin, proxy string
	close         func()
}

func start(size int, latency time.Duration) (*servers, error) {
	body := []byte(strings.Repeat("x", size))
	origin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if latency > 0 {
			time.Sleep(latency) // the origin's own latency, what a miss waits for
		}
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	})
	ol, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	osrv := &http.Server{Handler: origin}
	go osrv.Serve(ol)
	c := cache.New(cache.Options{})
	svc, err := fetch.New("proxy", []verge.Backend{{Name: "origin", URL: "http://" + ol.Addr().String(), AllowPrivate: true}}, fetch.Options{Cache: c})
	if err != nil {
		return nil, err
	}
	fn := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ss := svc.Session()
		defer ss.Close()
		req, _ := http.NewRequest("GET", r.URL.RequestURI(), nil)
		resp, err := ss.Do(r.Context(), req, fetch.Params{Backend: "origin"})
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, vs := range resp.Header {
			w.Header()[k] = vs
		}
		w.Header().Set("X-Proxied-By", "verge")
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	})
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	psrv := &http.Server{Handler: c.Handler("proxy", fn)}
	go psrv.Serve(pl)
	return &servers{origin: "http://" + ol.Addr().String(), proxy: "http://" + pl.Addr().String(), close: func() {
		psrv.Close()
		osrv.Close()
		svc.Close()
	}}, nil
}

type hitResult struct {
	Scenario   string    `json:"scenario"`
	Size       int       `json:"size"`
	Conns      int       `json:"connections"`
	PlainRPS   []float64 `json:"plain_rps"`
	ProxyRPS   []float64 `json:"proxy_rps"`
	PlainP99ms []float64 `json:"plain_p99_ms"`
	ProxyP99ms []float64 `json:"proxy_p99_ms"`
	// CPU µs of this process (the server) per request: robust to other
	// work on the machine, which wall-clock throughput is not.
	PlainCPUus []float64 `json:"plain_cpu_us_per_req"`
	ProxyCPUus []float64 `json:"proxy_cpu_us_per_req"`
	// Heap allocations of this process per request (what drives the GC's
	// share of the CPU), and their bytes.
	PlainAllocs []float64 `json:"plain_allocs_per_req"`
	ProxyAllocs []float64 `json:"proxy_allocs_per_req"`
	PlainBytes  []float64 `json:"plain_alloc_bytes_per_req"`
	ProxyBytes  []float64 `json:"proxy_alloc_bytes_per_req"`
	// pophit -same-fields: a plain server writing the hit's fields.
	SamePlainRPS    []float64 `json:"same_fields_plain_rps,omitempty"`
	SamePlainCPUus  []float64 `json:"same_fields_plain_cpu_us_per_req,omitempty"`
	SamePlainAllocs []float64 `json:"same_fields_plain_allocs_per_req,omitempty"`
	SamePlainBytes  []float64 `json:"same_fields_plain_alloc_bytes_per_req,omitempty"`
	SameCPURatio    float64   `json:"same_fields_cpu_ratio,omitempty"` // median same-fields plain / median proxy CPU per request
	Ratio           float64   `json:"ratio"`                           // median proxy / median plain requests/s
	CPURatio        float64   `json:"cpu_ratio"`                       // median plain / median proxy CPU per request: throughput on equal CPU
	LoadAvg         string    `json:"load_avg,omitempty"`
}

func (r hitResult) SummaryLine() string {
	same := ""
	if len(r.SamePlainCPUus) > 0 {
		same = fmt.Sprintf("; plain with the hit's fields %.0f req/s (%.1f µs, %.1f allocs, %.0f B): the PoP at %.2fx of it on equal CPU",
			harness.Median(r.SamePlainRPS), harness.Median(r.SamePlainCPUus), harness.Median(r.SamePlainAllocs), harness.Median(r.SamePlainBytes), r.SameCPURatio)
	}
	return fmt.Sprintf("%s: %d B, c=%d: plain net/http %.0f req/s (%.1f µs CPU, %.1f allocs, %.0f B each), proxy (cache hit) %.0f req/s (%.1f µs, %.1f allocs, %.0f B): %.2fx by wall clock, %.2fx on equal CPU (goal ≥ 0.8x: %s), load %s",
		r.Scenario, r.Size, r.Conns, harness.Median(r.PlainRPS), harness.Median(r.PlainCPUus), harness.Median(r.PlainAllocs), harness.Median(r.PlainBytes),
		harness.Median(r.ProxyRPS), harness.Median(r.ProxyCPUus), harness.Median(r.ProxyAllocs), harness.Median(r.ProxyBytes), r.Ratio, r.CPURatio,
		harness.MetWord(r.CPURatio >= 0.8), r.LoadAvg) + same
}

func hit(ctx context.Context, size int, d time.Duration, conns, runs int) (harness.Result, error) {
	s, err := start(size, 0)
	if err != nil {
		return nil, err
	}
	defer s.close()
	// Fill the cache, and check what a hit answers.
	if _, _, err := getHit(s.proxy); err != nil {
		return nil, err
	}
	resp, b, err := getHit(s.proxy)
	if err != nil {
		return nil, err
	}
	if resp.Header.Get("X-Cache") != cache.Hit || len(b) != size || resp.Header.Get("X-Proxied-By") != "verge" {
		return nil, fmt.Errorf("the proxy's second answer is %s with %d bytes, not a hit of %d", resp.Header.Get("X-Cache"), len(b), size)
	}
	r := hitResult{Scenario: "hit", Size: size, Conns: conns}
	for i := 0; i < runs; i++ {
		for _, target := range []string{s.origin, s.proxy} {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			cmd.Progress("run %d/%d: wrk %s", i+1, runs, target)
			w, err := runWrk(ctx, target+hitPath, d, conns)
			if err != nil {
				return nil, err
			}
			r.add(target == s.origin, w)
		}
	}
	r.Ratio = harness.Round(harness.Median(r.ProxyRPS)/harness.Median(r.PlainRPS), 3)
	r.CPURatio = harness.Round(harness.Median(r.PlainCPUus)/harness.Median(r.ProxyCPUus), 3)
	r.LoadAvg = harness.LoadAvg()
	return r, nil
}

type wrkRun struct {
	rps, p99 float64
	requests int64
	cpuUs    float64 // this process's CPU time per request (the servers'; wrk is another process)
	allocs   float64 // this process's heap allocations per request
	bytes    float64 // and their bytes
}

// add appends w's figures to r's, as the plain server's or the proxy's.
func (r *hitResult) add(plain bool, w wrkRun) {
	if plain {
		r.PlainRPS, r.PlainP99ms, r.PlainCPUus = append(r.PlainRPS, w.rps), append(r.PlainP99ms, w.p99), append(r.PlainCPUus, w.cpuUs)
		r.PlainAllocs, r.PlainBytes = append(r.PlainAllocs, w.allocs), append(r.PlainBytes, w.bytes)
	} else {
		r.ProxyRPS, r.ProxyP99ms, r.ProxyCPUus = append(r.ProxyRPS, w.rps), append(r.ProxyP99ms, w.p99), append(r.ProxyCPUus, w.cpuUs)
		r.ProxyAllocs, r.ProxyBytes = append(r.ProxyAllocs, w.allocs), append(r.ProxyBytes, w.bytes)
	}
}

// cpuTime is this process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runWrk runs wrk with one thread (the servers need the other cores),
// sending hitHeaders.
func runWrk(ctx context.Context, url string, d time.Duration, conns int) (wrkRun, error) {
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	cpu0 := cpuTime()
	args := []string{"-t1", "-c" + strconv.Itoa(conns), "-d" + d.String(), "--latency"}
	for _, h := range hitHeaders {
		args = append(args, "-H", h[0]+": "+h[1])
	}
	out, err := exec.CommandContext(ctx, "wrk", append(args, url)...).CombinedOutput()
	cpu := cpuTime() - cpu0
	runtime.ReadMemStats(&m1)
	if err != nil {
		return wrkRun{}, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	var r wrkRun
	var haveRPS, haveP99 bool
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "Requests/sec:":
			r.rps, err = strconv.ParseFloat(f[1], 64)
			haveRPS = err == nil
		case len(f) == 2 && f[0] == "99%":
			r.p99, haveP99 = wrkMs(f[1])
		case len(f) >= 3 && f[1] == "requests" && f[2] == "in":
			r.requests, _ = strconv.ParseInt(f[0], 10, 64)
		case strings.Contains(sc.Text(), "Non-2xx or 3xx responses:"):
			return r, fmt.Errorf("wrk saw errors: %s", sc.Text())
		}
	}
	if !haveRPS || !haveP99 || r.requests == 0 {
		return r, fmt.Errorf("unexpected wrk output:\n%s", out)
	}
	r.cpuUs = harness.Round(float64(cpu.Microseconds())/float64(r.requests), 2)
	r.allocs = harness.Round(float64(m1.Mallocs-m0.Mallocs)/float64(r.requests), 2)
	r.bytes = harness.Round(float64(m1.TotalAlloc-m0.TotalAlloc)/float64(r.requests), 0)
	return r, nil
}

// wrkMs parses wrk's "620.00us", "1.20ms", "2.00s" into milliseconds.
func wrkMs(s string) (float64, bool) {
	for _, u := range []struct {
		suffix string
		ms     float64
	}{{"us", 1e-3}, {"ms", 1}, {"s", 1e3}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f * u.ms, err == nil
		}
	}
	return 0, false
}

type missRow struct {
	OriginLatencyMs float64 `json:"origin_latency_ms"`
	DirectP50ms     float64 `json:"direct_p50_ms"`
	DirectP99ms     float64 `json:"direct_p99_ms"`
	ProxyP50ms      float64 `json:"proxy_p50_ms"`
	ProxyP99ms      float64 `json:"proxy_p99_ms"`
	AddedP50ms      float64 `json:"added_p50_ms"`
}

type missResult struct {
	Scenario string    `json:"scenario"`
	Size     int       `json:"size"`
	N        int       `json:"n"`
	Rows     []missRow `json:"rows"`
}

func (r missResult) SummaryLine() string {
	var parts []string
	worst := 0.0
	for _, row := range r.Rows {
		parts = append(parts, fmt.Sprintf("origin %gms: direct p50 %.3fms, through a miss %.3fms (+%.3fms)",
			row.OriginLatencyMs, row.DirectP50ms, row.ProxyP50ms, row.AddedP50ms))
		worst = max(worst, row.AddedP50ms)
	}
	return "miss: " + strings.Join(parts, "; ") + fmt.Sprintf(" (goal ≤ +1 ms: %s)", harness.MetWord(worst <= 1))
}

func miss(ctx context.Context, size int, lats []time.Duration, n int) (harness.Result, error) {
	r := missResult{Scenario: "miss", Size: size, N: n}
	for _, lat := range lats {
		s, err := start(size, lat)
		if err != nil {
			return nil, err
		}
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
		var direct, proxied []time.Duration
		for i := 0; i < n+10 && ctx.Err() == nil; i++ { // the first 10 warm the connections
			for _, base := range []string{s.origin, s.proxy} {
				start := time.Now()
				resp, err := client.Get(fmt.Sprintf("%s/m/%d", base, i))
				if err != nil {
					s.close()
					return nil, err
				}
				k, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				took := time.Since(start)
				if int(k) != size || base == s.proxy && resp.Header.Get("X-Cache") != cache.Miss {
					s.close()
					return nil, fmt.Errorf("%s/m/%d: %d bytes, X-Cache %q", base, i, k, resp.Header.Get("X-Cache"))
				}
				if i < 10 {
					continue
				}
				if base == s.origin {
					direct = append(direct, took)
				} else {
					proxied = append(proxied, took)
				}
			}
		}
		s.close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		slices.Sort(direct)
		slices.Sort(proxied)
		row := missRow{OriginLatencyMs: harness.Ms(lat),
			DirectP50ms: harness.Ms(harness.Percentile(direct, 0.5)), DirectP99ms: harness.Ms(harness.Percentile(direct, 0.99)),
			ProxyP50ms: harness.Ms(harness.Percentile(proxied, 0.5)), ProxyP99ms: harness.Ms(harness.Percentile(proxied, 0.99))}
		row.AddedP50ms = harness.Round(row.ProxyP50ms-row.DirectP50ms, 3)
		r.Rows = append(r.Rows, row)
	}
	return r, nil
}
