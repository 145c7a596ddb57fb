// Command http measures HTTP throughput and latency of Verge apps served by
// `verge dev`, next to a plain Go net/http hello world measured in the same
// run on the same machine, with wrk.
//
//	go run ./bench/http [-verge bin/verge] [-app examples/hello-go[,DIR...]] [-path /hello]
//	                    [-d 5s] [-conns 1,32] [-threads 2] [-runs 1] [-warmup 1s]
//	                    [-trace off,1%,100%,nometrics]
//
// It prints one JSON document on stdout, then one summary line per app and
// connection count, such as this one measured on a shared 2-core VM
// (docs/benchmarks.md has the conditions):
//
//	hello-go c=32: 15422 req/s (47.5% of net/http 32488), p50 1.96ms p99 12.6ms
//
// The baseline server runs in a subprocess (this binary re-executed), not in
// this process, so that it competes with wrk for the two cores exactly as
// `verge dev` does. Apps are served one at a time; the app and the baseline
// are measured alternately, so noise from the rest of the machine falls on
// both, and after every wrk run the harness waits for the server it just
// measured to go idle (a fresh-instance executor may still be working off
// requests whose clients left), so neither is charged for the other's work.
// -runs N repeats each measurement and reports the median. With -trace, each
// app is served once per variant, all at once, measured in turn: tracing
// off, request metrics off too (nometrics), or a share of requests traced
// and exported over OTLP/HTTP to a sink in this process that decodes every
// export into OTLP's protobuf messages, as a collector's receiver does, and
// counts the spans of each variant (so lost spans show). The report gives
// each variant's throughput relative to trace=off's in the same rounds. The
// harness builds nothing but the baseline: `make
// build` builds bin/verge, and `verge dev` runs the app's build commands
// itself.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/verge-edge/verge/bench/internal/harness"
	"github.com/verge-edge/verge/bench/internal/proc"
)

// childEnv selects the baseline server mode when this binary re-executes
// itself. An environment variable rather than a flag keeps it out of -help.
const childEnv = "VERGE_BENCH_HTTP_CHILD"

type config struct {
	verge        string
	apps         []string
	path         string
	duration     time.Duration
	conns        []int
	threads      int
	runs         int
	warmup       time.Duration
	wrk          string
	startTimeout time.Duration
	traces       []string // tracing variants: off, or a sampled share such as 1% or 100%
	decodeSpans  bool     // the OTLP sink decodes every export, as a collector's receiver would
}

// report is the JSON document printed on stdout.
type report struct {
	Bench     string    `json:"bench"`
	Time      time.Time `json:"time"`
	Go        string    `json:"go"`
	OS        string    `json:"os"`
	Arch      string    `json:"arch"`
	CPUs      int       `json:"cpus"`
	Wrk       string    `json:"wrk"`
	Verge     string    `json:"verge"`
	Path      string    `json:"path"`
	DurationS float64   `json:"duration_s"`
	Runs      []result  `json:"runs"`
	// The exports the OTLP sink received and their bytes (-trace).
	OTLPExports int64  `json:"otlp_exports,omitempty"`
	OTLPBytes   int64  `json:"otlp_bytes,omitempty"`
	OTLPSpans   int64  `json:"otlp_spans,omitempty"`
	OTLPBad     int64  `json:"otlp_bad,omitempty"` // exports that did not decode
	LoadAvg     string `json:"load_avg"`           // at the start and at the end
}

// result pairs one app with the baseline at one connection count.
type result struct {
	App     string    `json:"app"`
	Dir     string    `json:"dir"`
	Trace   string    `json:"trace"` // off, or the share of requests sampled
	Conns   int       `json:"conns"`
	Threads int       `json:"threads"`
	Verge   wrkResult `json:"verge"`
	NetHTTP wrkResult `json:"nethttp"`
	// Ratio is Verge.RPS / NetHTTP.RPS.
	Ratio float64 `json:"ratio_to_nethttp"`
	// Every run's throughput, in order, when -runs > 1 shows the spread.
	VergeRPSAll   []float64 `json:"verge_rps_all"`
	NetHTTPRPSAll []float64 `json:"nethttp_rps_all"`
	// VsOff is Verge.RPS over the same app's with tracing off, measured in
	// the same rounds (0 without an "off" variant).
	VsOff float64 `json:"vs_off,omitempty"`
	// The server's CPU time per request (median of the runs), and its
	// ratio to trace=off's: what tracing costs in CPU, which the load of
	// the rest of the machine moves far less than throughput.
	CPUusPerRequest float64 `json:"server_cpu_us_per_request,omitempty"`
	CPUVsOff        float64 `json:"server_cpu_vs_off,omitempty"`
	// The same two ratios taken round by round (this variant's run over
	// trace=off's run of the same round, seconds apart), then their median:
	// the load of the machine drifts between rounds, and a ratio within one
	// round cancels most of the drift. The figure to quote.
	VsOffPaired    float64 `json:"vs_off_paired,omitempty"`
	CPUVsOffPaired float64 `json:"server_cpu_vs_off_paired,omitempty"`
	// Requests wrk completed on this variant (warm-up included), the spans
	// the OTLP sink received from it, and their ratio: with every request
	// traced, the spans a request makes (gateway and guest: 2), or fewer
	// if the exporter dropped some.
	Requests        int64   `json:"requests,omitempty"`
	Spans           int64   `json:"spans,omitempty"`
	SpansPerRequest float64 `json:"spans_per_request,omitempty"`
}

func main() {
	if os.Getenv(childEnv) == "nethttp" {
		serveNetHTTP()
		return
	}
	proc.Progress = bench.Progress

	var cfg config
	var apps, conns string
	flag.StringVar(&cfg.verge, "verge", "bin/verge", "path to the verge binary (make build)")
	flag.StringVar(&apps, "app", "examples/hello-go", "comma-separated app directories to serve with `verge dev`")
	flag.StringVar(&cfg.path, "path", "/hello", "request path")
	flag.DurationVar(&cfg.duration, "d", 5*time.Second, "duration of each measurement (whole seconds)")
	flag.StringVar(&conns, "conns", "1,32", "comma-separated wrk connection counts")
	flag.IntVar(&cfg.threads, "threads", 2, "wrk threads (capped at the connection count)")
	flag.IntVar(&cfg.runs, "runs", 1, "measurements per side and connection count; the median is reported")
	flag.DurationVar(&cfg.warmup, "warmup", time.Second, "unreported wrk run against each server before measuring (0 disables)")
	flag.StringVar(&cfg.wrk, "wrk", "wrk", "wrk binary")
	flag.DurationVar(&cfg.startTimeout, "start-timeout", 3*time.Minute, "how long `verge dev` may take to build and start serving")
	var traces string
	flag.StringVar(&traces, "trace", "off", "comma-separated variants to serve each app with: off, nometrics (no request metrics either), or the share of requests traced (1%, 100%; 100%:sdk with the SDK's spans, processor and exporter; 100%:sdkspans with the SDK's spans and Verge's processor), exported over OTLP to a sink in this process that counts every export's spans (see -decode-spans)")
	flag.BoolVar(&cfg.decodeSpans, "decode-spans", false, "the OTLP sink decodes every export into OTLP's messages, as a collector's receiver would, on the same cores as the server (about 30 µs of CPU per request for two spans)")
	flag.Parse()
	if flag.NArg() > 0 {
		bench.Fatalf("unexpected arguments %q; use -app DIR[,DIR...]", flag.Args())
	}

	for a := range strings.SplitSeq(apps, ",") {
		if a = strings.TrimSpace(a); a != "" {
			cfg.apps = append(cfg.apps, a)
		}
	}
	for v := range strings.SplitSeq(traces, ",") {
		if v = strings.TrimSpace(v); v != "" {
			if _, err := samplerEnv(v, ""); err != nil {
				bench.Fatalf("-trace %q: %v", v, err)
			}
			cfg.traces = append(cfg.traces, v)
		}
	}
	var err error
	if cfg.conns, err = harness.ParseInts(conns, "1,32"); err != nil {
		bench.Fatalf("-conns %q: %v", conns, err)
	}
	if len(cfg.apps) == 0 {
		bench.Fatalf("-app is empty: give at least one app directory")
	}
	if cfg.duration < time.Second {
		bench.Fatalf("-d %v: wrk measures in whole seconds; use at least 1s", cfg.duration)
	}
	if cfg.runs < 1 {
		bench.Fatalf("-runs %d: want at least 1", cfg.runs)
	}
	if cfg.threads < 1 {
		bench.Fatalf("-threads %d: want at least 1", cfg.threads)
	}
	if !strings.HasPrefix(cfg.path, "/") {
		bench.Fatalf("-path %q: want an absolute path such as /hello", cfg.path)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	rep, err := run(ctx, cfg)
	interrupted := ctx.Err() != nil
	stop()
	if interrupted {
		bench.Fatalf("interrupted; every server it started has been stopped")
	}
	if err != nil {
		bench.Fatalf("%v", err)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		bench.Fatalf("writing JSON: %v", err)
	}
	fmt.Println("load average:", rep.LoadAvg)
	for _, r := range rep.Runs {
		fmt.Println(summary(r))
	}
}

// bench prefixes the messages on stderr with the command's name.
var bench = &harness.Command{Name: "bench/http"}

func summary(r result) string {
	s := fmt.Sprintf("%s c=%d: %.0f req/s (%.1f%% of net/http %.0f), p50 %sms p99 %sms",
		r.App, r.Conns, r.Verge.RPS, 100*r.Ratio, r.NetHTTP.RPS, ms(r.Verge.P50ms), ms(r.Verge.P99ms))
	if r.VsOffPaired > 0 && r.Trace != "off" {
		s += fmt.Sprintf(", throughput cost %.1f%% vs trace=off round by round (medians: %.1f%%)", 100*(1-r.VsOffPaired), 100*(1-r.VsOff))
	}
	if r.CPUusPerRequest > 0 {
		s += fmt.Sprintf(", server CPU %.1fµs a request", r.CPUusPerRequest)
		if r.CPUVsOffPaired > 0 && r.Trace != "off" {
			s += fmt.Sprintf(" (%+.1f%% vs off round by round)", 100*(r.CPUVsOffPaired-1))
		}
	}
	if r.Spans > 0 {
		s += fmt.Sprintf(", %d spans exported (%.3g a request)", r.Spans, r.SpansPerRequest)
	}
	// Errors make the throughput meaningless (a fast 500 is not a result), so
	// the summary says so rather than leaving it to the JSON.
	for _, e := range []struct {
		who string
		w   wrkResult
	}{{r.App, r.Verge}, {"net/http", r.NetHTTP}} {
		if e.w.Non2xx3xx > 0 {
			s += fmt.Sprintf(", %s: %d non-2xx/3xx responses!", e.who, e.w.Non2xx3xx)
		}
		if e.w.SocketErrors > 0 {
			s += fmt.Sprintf(", %s: %d socket errors!", e.who, e.w.SocketErrors)
		}
	}
	return s
}

// ms formats milliseconds with three significant digits (0.0352, 0.7, 2.13)
// and whole numbers from 100 up, never in exponent form.
func ms(v float64) string {
	if v >= 100 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

func run(ctx context.Context, cfg config) (*report, error) {
	wrkPath, err := exec.LookPath(cfg.wrk)
	if err != nil {
		return nil, fmt.Errorf("%s not found: install it with scripts/setup.sh (Debian package wrk)", cfg.wrk)
	}
	wrkVersion := "unknown"
	// `wrk --version` prints its banner and exits non-zero; keep the banner.
	if out, _ := exec.CommandContext(ctx, wrkPath, "--version").CombinedOutput(); len(out) > 0 {
		wrkVersion, _, _ = strings.Cut(string(out), "\n")
		wrkVersion = strings.TrimSpace(wrkVersion)
	}
	verge, err := filepath.Abs(cfg.verge)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(verge); err != nil || st.IsDir() {
		return nil, fmt.Errorf("verge binary %s not found: run `make build` or pass -verge PATH", cfg.verge)
	}
	for _, dir := range cfg.apps {
		if _, err := os.Stat(filepath.Join(dir, "verge.toml")); err != nil {
			return nil, fmt.Errorf("-app %s: no verge.toml there: %v", dir, err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding this binary to start the net/http baseline: %v", err)
	}
	logDir, err := os.MkdirTemp("", "verge-bench-http-")
	if err != nil {
		return nil, err
	}
	keepLogs := false
	defer func() {
		if keepLogs {
			bench.Progress("server logs kept in %s", logDir)
		} else {
			os.RemoveAll(logDir)
		}
	}()

	rep := &report{
		Bench: "http", Time: time.Now().UTC(), Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH,
		CPUs: runtime.NumCPU(), Wrk: wrkVersion, Verge: cfg.verge, Path: cfg.path, DurationS: cfg.duration.Seconds(),
		LoadAvg: harness.LoadAvg(),
	}
	defer func() { rep.LoadAvg += " -> " + harness.LoadAvg() }()

	base, err := proc.Start(ctx, "net/http", self, nil, []string{childEnv + "=nethttp"},
		filepath.Join(logDir, "nethttp.log"), 30*time.Second)
	if err != nil {
		keepLogs = true
		return nil, err
	}
	defer base.Stop()

	var sink *otlpSink
	for _, t := range cfg.traces {
		if t != "off" && t != "nometrics" && sink == nil {
			if sink, err = startOTLPSink(cfg.decodeSpans); err != nil {
				return nil, err
			}
			defer sink.close()
		}
	}
	for _, dir := range cfg.apps {
		// Every variant of the app is served at once and measured in turn
		// with the baseline, round after round, so that the machine's load
		// falls on all of them alike: their ratios are comparable within
		// the run. An idle server costs the measured one nothing.
		var srvs []*proc.Child
		stopAll := func() {
			for _, s := range srvs {
				s.Stop()
			}
		}
		for _, trace := range cfg.traces {
			name := filepath.Base(filepath.Clean(dir))
			var env []string
			if trace != "off" {
				url := ""
				if sink != nil {
					url = sink.url
				}
				env, _ = samplerEnv(trace, url)
				name += " trace=" + trace
			}
			// Port 0: the kernel picks a free port, and verge dev prints the
			// address it got, so there is no race with other listeners.
			const listen = "127.0.0.1:0"
			// Each variant has its own data directory and no admin API, so
			// that they can run side by side, and does not watch for
			// changes, so that the idle ones stay idle.
			data := filepath.Join(logDir, fmt.Sprintf("data-%d", len(srvs)))
			args := []string{"dev", "--listen", listen, "--admin", "", "--watch", "0", "--data", data, dir}
			bench.Progress("%s: starting %s %q", name, cfg.verge, args)
			srv, err := proc.Start(ctx, name, verge, args, env,
				filepath.Join(logDir, strings.ReplaceAll(name, " ", "_")+".log"), cfg.startTimeout)
			if err != nil {
				stopAll()
				keepLogs = true
				return nil, err
			}
			srvs = append(srvs, srv)
		}
		served := map[*proc.Child]int64{}
		runs, err := compare(ctx, cfg, wrkPath, srvs, base, served)
		stopAll() // each flushes the spans it holds as it stops
		if err == nil && sink != nil {
			for i := range runs {
				j := slices.Index(cfg.traces, runs[i].Trace)
				runs[i].Requests = served[srvs[j]]
				runs[i].Spans = sink.spansOf(serviceName(runs[i].Trace))
				if runs[i].Requests > 0 {
					runs[i].SpansPerRequest = math.Round(float64(runs[i].Spans)/float64(runs[i].Requests)*1000) / 1000
				}
			}
		}
		for _, srv := range srvs {
			if err == nil && srv.ExitedEarly() {
				err = fmt.Errorf("%s: verge dev exited during the measurement (server log: %s)", srv.Name, srv.LogPath)
			}
		}
		if err != nil {
			keepLogs = true
			return nil, err
		}
		for i := range runs {
			runs[i].Dir = dir
		}
		rep.Runs = append(rep.Runs, runs...)
	}
	if sink != nil {
		rep.OTLPExports, rep.OTLPBytes, rep.OTLPSpans, rep.OTLPBad = sink.exports.Load(), sink.received.Load(), sink.spans.Load(), sink.bad.Load()
		if rep.OTLPBad > 0 {
			return nil, fmt.Errorf("the OTLP sink could not decode %d exports", rep.OTLPBad)
		}
		if rep.OTLPExports == 0 {
			return nil, errors.New("tracing was on but the OTLP sink received no export: the figures would not include exporting")
		}
	}
	return rep, nil
}

// compare measures each of apps (one app served in several variants, in
// the order of cfg.traces) against the baseline, all serving cfg.path. All
// are checked and warmed up first; then, for each connection count, the
// baseline and every variant are measured in turn cfg.runs times, so that
// noise from the rest of the machine lands on all of them rather than on
// whichever ran last. After every wrk run the server just measured is given
// time to go idle. Each side keeps its median run by throughput; served
// counts the requests wrk completed on each.
func compare(ctx context.Context, cfg config, wrkPath string, apps []*proc.Child, base *proc.Child, served map[*proc.Child]int64) ([]result, error) {
	const settle = 15 * time.Second
	sides := append([]*proc.Child{base}, apps...)
	url := func(c *proc.Child) string { return "http://" + c.Addr + cfg.path }
	maxConns := slices.Max(cfg.conns)
	for _, s := range sides {
		if err := checkOK(ctx, url(s)); err != nil {
			return nil, err
		}
		served[s]++
		if cfg.warmup > 0 {
			r, err := runWrk(ctx, wrkPath, wrkArgs(cfg.threads, maxConns, cfg.warmup, url(s)))
			if err != nil {
				return nil, fmt.Errorf("warm-up of %s: %w", url(s), err)
			}
			served[s] += r.Requests
			s.Quiesce(settle)
		}
	}
	var out []result
	for _, c := range cfg.conns {
		runs := make([][]wrkResult, len(sides))
		for i := 0; i < cfg.runs; i++ {
			for j, s := range sides {
				cpu0, cpuErr := proc.CPUTime(s.Cmd.Process.Pid)
				r, err := runWrk(ctx, wrkPath, wrkArgs(cfg.threads, c, cfg.duration, url(s)))
				if err != nil {
					return nil, fmt.Errorf("%s c=%d: %w", s.Name, c, err)
				}
				s.Quiesce(settle)
				// The server's CPU time for the run, what it still did
				// after wrk stopped included: unlike throughput, it
				// hardly moves with the rest of the machine's load.
				if cpu1, err := proc.CPUTime(s.Cmd.Process.Pid); cpuErr == nil && err == nil && r.Requests > 0 {
					r.CPUusPerRequest = math.Round(float64((cpu1-cpu0).Nanoseconds())/float64(r.Requests)) / 1000
				}
				served[s] += r.Requests
				bench.Progress("%s c=%d: %.0f req/s, p50 %sms p99 %sms", s.Name, c, r.RPS, ms(r.P50ms), ms(r.P99ms))
				runs[j] = append(runs[j], r)
			}
		}
		for j, app := range apps {
			r := result{App: app.Name, Trace: cfg.traces[j], Conns: c, Threads: wrkThreads(cfg.threads, c),
				Verge: median(runs[j+1]), NetHTTP: median(runs[0]), VergeRPSAll: rpsOf(runs[j+1]), NetHTTPRPSAll: rpsOf(runs[0])}
			if r.NetHTTP.RPS > 0 {
				r.Ratio = math.Round(r.Verge.RPS/r.NetHTTP.RPS*1e4) / 1e4
			}
			r.CPUusPerRequest = harness.Median(cpuOf(runs[j+1]))
			out = append(out, r)
		}
		// Each variant's cost is its throughput against the variant
		// without tracing, measured in the same rounds.
		if off := slices.Index(cfg.traces, "off"); off >= 0 {
			first := len(out) - len(apps)
			ref := out[first+off].Verge.RPS
			refCPU := out[first+off].CPUusPerRequest
			for j := range apps {
				var rps, cpu []float64
				for i := range runs[j+1] {
					a, b := runs[j+1][i], runs[off+1][i]
					if b.RPS > 0 {
						rps = append(rps, a.RPS/b.RPS)
					}
					if b.CPUusPerRequest > 0 && a.CPUusPerRequest > 0 {
						cpu = append(cpu, a.CPUusPerRequest/b.CPUusPerRequest)
					}
				}
				out[first+j].VsOffPaired = math.Round(harness.Median(rps)*1e4) / 1e4
				out[first+j].CPUVsOffPaired = math.Round(harness.Median(cpu)*1e4) / 1e4
				if ref > 0 {
					out[first+j].VsOff = math.Round(out[first+j].Verge.RPS/ref*1e4) / 1e4
				}
				if refCPU > 0 {
					out[first+j].CPUVsOff = math.Round(out[first+j].CPUusPerRequest/refCPU*1e4) / 1e4
				}
			}
		}
	}
	return out, nil
}

// median returns the run with the median throughput (the upper one of an even
// count), keeping its latencies: they belong to that run.
func median(rs []wrkResult) wrkResult {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b wrkResult) int { return cmp.Compare(a.RPS, b.RPS) })
	return s[len(s)/2]
}

func cpuOf(rs []wrkResult) []float64 {
	out := make([]float64, 0, len(rs))
	for _, r := range rs {
		if r.CPUusPerRequest > 0 {
			out = append(out, r.CPUusPerRequest)
		}
	}
	return out
}

func rpsOf(rs []wrkResult) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = r.RPS
	}
	return out
}

func runWrk(ctx context.Context, wrkPath string, args []string) (wrkResult, error) {
	cmd := exec.CommandContext(ctx, wrkPath, args...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return wrkResult{}, ctx.Err()
	}
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return parseWrk(string(out))
}

// checkOK fails unless url answers 200, so that we never benchmark an error
// page.
func checkOK(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %s, want 200 OK; body: %q", url, resp.Status, body)
	}
	return nil
}

// serveNetHTTP is the baseline: the smallest idiomatic net/http hello world.
// It exits when its stdin closes, so it never outlives the harness, even one
// killed with SIGKILL.
func serveNetHTTP() {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(os.Stderr, "nethttp: %v\n", err)
		os.Exit(1)
	}
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "Hello, world!\n")
	})
	fmt.Printf("nethttp: serving http://%s\n", l.Addr())
	err = http.Serve(l, nil)
	fmt.Fprintf(os.Stderr, "nethttp: %v\n", err)
	os.Exit(1)
}
