package pop

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/obs"
	"github.com/verge-edge/verge/internal/wasm/wasmtest"
)

// BenchmarkServeFunction is one warm function's request through the PoP's
// whole handler (router, hits-first lookup, app handler, quotas, the
// cache's pass path, gateway, guest), as bench/http sends it, with a
// writer that does what net/http's does to a response head (it clones the
// header at WriteHeader). What it does not count is net/http's own work:
// reading the request and writing the response to the connection.
func BenchmarkServeFunction(b *testing.B) {
	for _, c := range []struct {
		name, module, executor, isolation string
	}{
		{"wat", "hello.wasm", "verge", ""},
		{"go", "", "verge", ""},
		{"go-traced", "", "verge", ""},
		{"go-traced-1pct", "", "verge", ""},
		{"go-strict", "", "verge", "strict"},
		{"wagi-stderr", "wagi_stderr.wasm", "wagi", ""},
	} {
		b.Run(c.name, func(b *testing.B) {
			mod := c.module
			if mod == "" {
				mod = wasmtest.BuildGo(b, "examples/hello-go", true)
			} else {
				mod = wasmtest.Fixture(b, mod)
			}
			switch c.name {
			case "go-traced":
				traceTo(b, "always_on", "")
			case "go-traced-1pct":
				traceTo(b, "traceidratio", "0.01")
			}
			h := benchPoP(b, mod, c.executor, c.isolation)
			req := httptest.NewRequest("GET", "http://127.0.0.1:8080/hello", nil)
			req.Header = http.Header{"User-Agent": {"wrk"}, "Accept": {"*/*"}}
			w := &benchWriter{}
			serve := func() {
				w.reset()
				h.ServeHTTP(w, req)
				if w.code != 200 {
					b.Fatalf("status %d: %s", w.code, w.body)
				}
			}
			serve() // the first request marks the URL hit-for-pass
			b.ReportAllocs()
			cpu0 := processCPU()
			for b.Loop() {
				serve()
			}
			// The process's CPU time a request, which other processes on a
			// shared machine move far less than the wall time.
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// traceTo traces b's requests as the sampler (OTEL_TRACES_SAMPLER and its
// argument) decides, exported over OTLP to a receiver that reads and
// discards, as a collector elsewhere would take them.
func traceTo(b *testing.B, sampler, arg string) {
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
	b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", sink.URL)
	b.Setenv("OTEL_TRACES_SAMPLER", sampler)
	b.Setenv("OTEL_TRACES_SAMPLER_ARG", arg)
	b.Setenv("OTEL_BSP_MAX_QUEUE_SIZE", "1000000") // a dropped span would be work not done
	prev := otel.GetTracerProvider()
	stop, err := obs.SetupTracing(context.Background(), obs.TraceOptions{PoP: "dev"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stop(context.Background())
		otel.SetTracerProvider(prev)
		sink.Close()
	})
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchPoP starts a PoP serving an app of one function, module, at /*, as
// `verge dev` does, and returns its HTTP handler.
func benchPoP(b *testing.B, module, executor, isolation string) http.Handler {
	b.Helper()
	dir := b.TempDir()
	wasm, err := os.ReadFile(module)
	if err != nil {
		b.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "fn.wasm"), wasm, 0o644)
	toml := fmt.Sprintf("name = \"bench\"\n[[function]]\nname = \"fn\"\nmodule = \"fn.wasm\"\nexecutor = %q\nroutes = [\"/*\"]\n", executor)
	if isolation != "" {
		toml += fmt.Sprintf("isolation = %q\n", isolation)
	}
	os.WriteFile(filepath.Join(dir, "verge.toml"), []byte(toml), 0o644)
	return benchStart(b, dir, true)
}

// benchStart starts a PoP serving the app in dir, as `verge dev` does
// (its store synced or not), and returns its HTTP handler.
func benchStart(b *testing.B, dir string, noSync bool) http.Handler {
	b.Helper()
	m, err := verge.LoadManifest(dir)
	if err != nil {
		b.Fatal(err)
	}
	p, err := Start(context.Background(), Options{Self: "dev", App: m, Data: filepath.Join(dir, "data"), CacheDir: "-", NoSync: noSync,
		Network: verge.Network{PoPs: []verge.PoP{{ID: "dev", Region: "local", Central: true, Number: 1, Mesh: "127.0.0.1:0"}}},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.Close)
	return p.router()
}

// benchWriter is an http.ResponseWriter that treats the head as net/http's
// does (a new header map per request, cloned at WriteHeader) and keeps the
// body in a reused buffer.
type benchWriter struct {
	header http.Header
	sent   http.Header
	code   int
	body   []byte
}

func (w *benchWriter) reset() {
	w.header, w.sent, w.code, w.body = nil, nil, 0, w.body[:0]
}

func (w *benchWriter) Header() http.Header {
	if w.header == nil {
		w.header = http.Header{}
	}
	return w.header
}

func (w *benchWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code, w.sent = code, w.Header().Clone()
	}
}

func (w *benchWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.body = append(w.body, p...)
	return len(p), nil
}

// BenchmarkCartAdd is examples/cart's add (a durable update of a local
// document, then reading it and a global one back and answering with JSON
// built in the guest) through the PoP's handler with an on-disk store that
// fsyncs, as `verge dev` runs it. "c32" has 32 requests in flight, as the
// wrk run in docs/benchmarks.md does, so that writes share fsyncs. The
// figure to watch is cpu-ns/op: the wall time is mostly the fsync's.
func BenchmarkCartAdd(b *testing.B) {
	for _, c := range []struct {
		name     string
		parallel int
	}{{"c1", 0}, {"c32", 32}} {
		b.Run(c.name, func(b *testing.B) {
			h := cartPoP(b)
			req := func() *http.Request {
				r := httptest.NewRequest("POST", "http://127.0.0.1:8080/cart/u1/add?sku=apple", nil)
				r.Header = http.Header{"User-Agent": {"wrk"}, "Accept": {"*/*"}}
				return r
			}
			serve := func(w *benchWriter, r *http.Request) {
				w.reset()
				h.ServeHTTP(w, r)
				if w.code != 200 {
					b.Fatalf("status %d: %s", w.code, w.body)
				}
			}
			serve(&benchWriter{}, req())
			b.ReportAllocs()
			cpu0 := processCPU()
			if c.parallel == 0 {
				w, r := &benchWriter{}, req()
				for b.Loop() {
					serve(w, r)
				}
			} else {
				b.SetParallelism((c.parallel + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
				b.RunParallel(func(pb *testing.PB) {
					w, r := &benchWriter{}, req()
					for pb.Next() {
						serve(w, r)
					}
				})
			}
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// cartPoP starts a PoP serving examples/cart, built from source, with its
// own verge.toml and a durable store, and returns its HTTP handler.
func cartPoP(b *testing.B) http.Handler {
	b.Helper()
	dir := b.TempDir()
	wasm, err := os.ReadFile(wasmtest.BuildGo(b, "examples/cart", true))
	if err != nil {
		b.Fatal(err)
	}
	toml, err := os.ReadFile(filepath.Join(wasmtest.Root(b), "examples", "cart", "verge.toml"))
	if err != nil {
		b.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "cart.wasm"), wasm, 0o644)
	os.WriteFile(filepath.Join(dir, "verge.toml"), toml, 0o644)
	return benchStart(b, dir, false)
}
