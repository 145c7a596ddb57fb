package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/verge-edge/verge/bench/internal/proc"
)

// TestMain lets the test binary act as the baseline server, as the harness
// binary does, so startChild is tested against the real thing.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "nethttp" {
		serveNetHTTP()
		return
	}
	os.Exit(m.Run())
}

const wrkSample = `Running 5s test @ http://127.0.0.1:37831/hello
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   279.67us    1.35ms  17.45ms   97.03%
    Req/Sec    12.88k     3.15k   15.51k    80.00%
  Latency Distribution
     50%   66.00us
     75%   90.00us
     90%  144.00us
     99%    7.49ms
  12783 requests in 1.00s, 1.60MB read
  Non-2xx or 3xx responses: 12
  Socket errors: connect 1, read 2, write 0, timeout 4
Requests/sec:  12746.41
Transfer/sec:      1.59MB
`

func TestParseWrk(t *testing.T) {
	t.Parallel()
	r, err := parseWrk(wrkSample)
	if err != nil {
		t.Fatal(err)
	}
	want := wrkResult{Requests: 12783, Seconds: 1, RPS: 12746.41, P50ms: 0.066, P75ms: 0.09, P90ms: 0.144,
		P99ms: 7.49, Non2xx3xx: 12, SocketErrors: 7}
	if r != want {
		t.Fatalf("parseWrk:\n got %+v\nwant %+v", r, want)
	}
}

func TestParseWrkRejectsIncompleteOutput(t *testing.T) {
	t.Parallel()
	for name, out := range map[string]string{
		"no --latency":   strings.Replace(wrkSample, "     99%    7.49ms\n", "", 1),
		"no throughput":  strings.Replace(wrkSample, "Requests/sec:  12746.41\n", "", 1),
		"bad unit":       strings.Replace(wrkSample, "66.00us", "66.00xs", 1),
		"bad number":     strings.Replace(wrkSample, "12746.41", "12,746", 1),
		"empty":          "",
		"connect failed": "unable to connect to 127.0.0.1:1 Connection refused\n",
	} {
		if _, err := parseWrk(out); err == nil {
			t.Errorf("%s: parseWrk accepted %q", name, out)
		}
	}
}

func TestParseWrkDuration(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]float64{"620.00us": 0.62, "2.10ms": 2.1, "1.02s": 1020, "1.50m": 90000, "0.00us": 0} {
		got, err := parseWrkDuration(in)
		if err != nil || got != want {
			t.Errorf("parseWrkDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "5", "ms", "1.2.3ms", "-"} {
		if _, err := parseWrkDuration(in); err == nil {
			t.Errorf("parseWrkDuration(%q) accepted", in)
		}
	}
}

func TestWrkArgs(t *testing.T) {
	t.Parallel()
	got := strings.Join(wrkArgs(2, 1, 5*time.Second, "http://x/"), " ")
	if want := "-t1 -c1 -d5s --latency http://x/"; got != want {
		t.Errorf("c=1: %q, want %q (wrk needs threads <= connections)", got, want)
	}
	got = strings.Join(wrkArgs(2, 32, 1500*time.Millisecond, "http://x/"), " ")
	if want := "-t2 -c32 -d2s --latency http://x/"; got != want {
		t.Errorf("c=32: %q, want %q", got, want)
	}
}

func TestMedianKeepsItsRun(t *testing.T) {
	t.Parallel()
	rs := []wrkResult{{RPS: 30, P99ms: 3}, {RPS: 10, P99ms: 1}, {RPS: 20, P99ms: 2}}
	if m := median(rs); m.RPS != 20 || m.P99ms != 2 {
		t.Fatalf("median = %+v, want the RPS 20 run with its own p99", m)
	}
	if rs[0].RPS != 30 {
		t.Fatal("median reordered its input")
	}
}

func TestSummary(t *testing.T) {
	t.Parallel()
	r := result{App: "hello-go", Conns: 32, Ratio: 0.8862,
		Verge:   wrkResult{RPS: 40100.4, P50ms: 0.7, P99ms: 2.13},
		NetHTTP: wrkResult{RPS: 45250}}
	if got, want := summary(r), "hello-go c=32: 40100 req/s (88.6% of net/http 45250), p50 0.7ms p99 2.13ms"; got != want {
		t.Errorf("summary:\n got %q\nwant %q", got, want)
	}
	r.Verge.P99ms = 1234.5
	if got := summary(r); !strings.HasSuffix(got, "p99 1234ms") && !strings.HasSuffix(got, "p99 1235ms") {
		t.Errorf("summary %q: want a plain p99 1234ms or 1235ms", got)
	}
	r.Verge.Non2xx3xx = 5
	r.NetHTTP.SocketErrors = 2
	got := summary(r)
	if !strings.Contains(got, "hello-go: 5 non-2xx/3xx") || !strings.Contains(got, "net/http: 2 socket errors") {
		t.Errorf("summary %q hides the errors", got)
	}
}

func TestChildServesAndStops(t *testing.T) {
	t.Parallel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(t.TempDir(), "child.log")
	c, err := proc.Start(context.Background(), "net/http", self, nil, []string{childEnv + "=nethttp"}, log, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	if err := checkOK(context.Background(), "http://"+c.Addr+"/hello"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + c.Addr + "/anything")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "Hello, world!\n" {
		t.Fatalf("baseline body %q", body)
	}

	c.Stop()
	if c.ExitedEarly() {
		t.Error("a stopped child counts as exited early")
	}
	if _, err := http.Get("http://" + c.Addr + "/"); err == nil {
		t.Error("baseline still answers after stop")
	}
	c.Stop() // a second stop is harmless
}

// The baseline must not outlive the harness even when the harness dies
// without cleaning up: its stdin closing is enough to end it.
func TestBaselineExitsWhenStdinCloses(t *testing.T) {
	t.Parallel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c, err := proc.Start(context.Background(), "net/http", self, nil, []string{childEnv + "=nethttp"},
		filepath.Join(t.TempDir(), "child.log"), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	c.CloseStdin()
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("baseline still running 10s after its stdin closed")
	}
	if code := c.Cmd.ProcessState.ExitCode(); code != 0 || !c.ExitedEarly() {
		t.Fatalf("baseline exit code %d (exited on its own: %v), want 0 and true", code, c.ExitedEarly())
	}
}

func TestChildFailures(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	start := time.Now()
	_, err := proc.Start(context.Background(), "broken", "/bin/sh", []string{"-c", "echo 'module hello.wasm: not wasm' >&2; exit 3"},
		nil, filepath.Join(dir, "broken.log"), 30*time.Second)
	if err == nil || !strings.Contains(err.Error(), "exited before serving") || !strings.Contains(err.Error(), "module hello.wasm: not wasm") {
		t.Errorf("early exit: got %v, want an error quoting the child's output", err)
	}

	// A child that never gets ready is killed at the timeout, with whatever
	// it started (sh's sleep shares its process group).
	_, err = proc.Start(context.Background(), "silent", "/bin/sh", []string{"-c", "echo building; sleep 60; echo never"},
		nil, filepath.Join(dir, "silent.log"), 300*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "printed no") || !strings.Contains(err.Error(), "building") {
		t.Errorf("timeout: got %v, want a timeout error quoting the child's output", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("failures took %v: the silent child was not killed", d)
	}
}

func TestQuiesceWaitsForIdle(t *testing.T) {
	t.Parallel()
	// A child that burns about a second of CPU in the shell itself (no
	// forks), then idles: quiesce must return after the busy phase.
	c, err := proc.Start(context.Background(), "busy", "/bin/sh",
		[]string{"-c", "echo 'busy: serving http://none'; i=0; while [ $i -lt 1000000 ]; do i=$((i+1)); done; sleep 60"},
		nil, filepath.Join(t.TempDir(), "busy.log"), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	before, err := proc.CPUTime(c.Cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.Quiesce(30 * time.Second)
	if d := time.Since(start); d > 25*time.Second {
		t.Fatalf("quiesce took %v for a child busy about 1s of CPU", d)
	}
	after, err := proc.CPUTime(c.Cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if after-before < 500*time.Millisecond {
		t.Fatalf("quiesce returned after the child used %v of CPU; it should have waited out the busy loop", after-before)
	}
}

// The sink, decoding or walking, counts the spans of what the real OTLP
// exporter sends, by service; bytes that are no OTLP export are refused and
// counted as bad.
func TestOTLPSinkDecodes(t *testing.T) {
	t.Parallel()
	for _, decode := range []bool{true, false} {
		t.Run(fmt.Sprintf("decode=%v", decode), func(t *testing.T) {
			t.Parallel()
			testOTLPSink(t, decode)
		})
	}
}

func testOTLPSink(t *testing.T, decode bool) {
	sink, err := startOTLPSink(decode)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.close()
	ctx := context.Background()
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(sink.url+"/v1/traces"))
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "bench-http-test"))))
	for i := range 3 {
		_, s := tp.Tracer("test").Start(ctx, fmt.Sprintf("span %d", i))
		s.End()
	}
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if got := sink.spans.Load(); got != 3 {
		t.Errorf("sink counted %d spans, want 3", got)
	}
	if got := sink.spansOf("bench-http-test"); got != 3 {
		t.Errorf("sink counted %d spans of service bench-http-test, want 3", got)
	}
	if sink.exports.Load() != 3 || sink.bad.Load() != 0 {
		t.Errorf("exports %d, bad %d; want 3 and 0", sink.exports.Load(), sink.bad.Load())
	}
	resp, err := http.Post(sink.url+"/v1/traces", "application/x-protobuf", strings.NewReader("\xff\xff\xff not protobuf"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || sink.bad.Load() != 1 {
		t.Errorf("garbage: status %d, bad %d; want 400 and 1", resp.StatusCode, sink.bad.Load())
	}
}
