package wasm

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/memalloc"
	"github.com/verge-edge/verge/internal/wasm/wasmtest"
	"github.com/verge-edge/verge/internal/wasmbin"
)

func BenchmarkWarmHelloGo(b *testing.B) {
	e := newTestEngine(b)
	f := load(b, e, verge.Function{Module: buildGo(b, "examples/hello-go", true), Executor: verge.ExecutorVerge})
	req := &Request{ID: "x", Method: "GET", URI: "/hello?name=b", Path: "/hello", Query: "name=b", Host: "h", RemoteAddr: "127.0.0.1:1", Header: http.Header{"Accept": {"*/*"}, "User-Agent": {"bench"}}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		resp, err := f.Serve(ctx, req)
		if err != nil || resp.Status != 200 {
			b.Fatal(err)
		}
	}
}

// BenchmarkWarmHelloWAT is the runtime's own cost per request: a guest that
// makes the two host calls of a response and nothing else.
func BenchmarkWarmHelloWAT(b *testing.B) {
	e := newTestEngine(b)
	f := load(b, e, verge.Function{Module: fixture("hello.wasm"), Executor: verge.ExecutorVerge})
	req := get("/")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if resp, err := f.Serve(ctx, req); err != nil || resp.Status != 200 {
			b.Fatal(err)
		}
	}
}

// BenchmarkFreshInstance measures a strict-isolation request: instantiate,
// initialise, serve and close, per request.
func BenchmarkFreshInstance(b *testing.B) {
	for _, c := range []struct{ name, module string }{{"wat", fixture("hello.wasm")}, {"go", ""}} {
		b.Run(c.name, func(b *testing.B) {
			e := newTestEngine(b)
			mod := c.module
			if mod == "" {
				mod = buildGo(b, "examples/hello-go", true)
			}
			f := load(b, e, verge.Function{Module: mod, Executor: verge.ExecutorVerge, Isolation: verge.IsolationStrict})
			req := get("/hello")
			b.ReportAllocs()
			for b.Loop() {
				if resp, err := f.Serve(context.Background(), req); err != nil || resp.Status != 200 {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkIdleFunctionMemory reports the resident memory a loaded
// examples/hello-go costs, per function over 20 functions in one process:
// its compiled code (the module compiled from the cache in 20 runtimes),
// with one warm instance, and idle (its pool empty, its memories given
// back), and the resident size of its snapshot, which lives in a memfd
// (page cache, not in the process's RSS):
//
//	go test -run '^$' -bench IdleFunctionMemory -benchtime 1x ./internal/wasm
//
// Linux only (it reads /proc/self/status).
func BenchmarkIdleFunctionMemory(b *testing.B) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		b.Skip("needs /proc/self/status")
	}
	const n = 20
	for b.Loop() {
		cache := b.TempDir()
		alloc := memalloc.New(memalloc.Config{IdleTimeout: 50 * time.Millisecond})
		e, err := NewEngine(Options{CacheDir: cache, Logger: slog.New(slog.DiscardHandler), Allocator: alloc, IdleTimeout: 50 * time.Millisecond})
		if err != nil {
			b.Fatal(err)
		}
		mod := buildGo(b, "examples/hello-go", true)
		spec := func(i int) verge.Function {
			return wasmtest.Spec(verge.Function{Name: fmt.Sprint("hello", i), Module: mod, Executor: verge.ExecutorVerge})
		}
		f0, err := e.Load(context.Background(), spec(-1)) // fills the compilation cache
		if err != nil {
			b.Fatal(err)
		}
		f0.Close(context.Background())
		wasm, _ := os.ReadFile(mod)
		instrumented, _, _ := wasmbin.Instrument(mergeDataSegments(wasm))

		// compiled code alone: the module compiled (from the cache) in n runtimes
		before := settledRSS()
		var rts []wazero.Runtime
		for i := 0; i < n; i++ {
			rt := wazero.NewRuntimeWithConfig(context.Background(), wazero.NewRuntimeConfigCompiler().WithCompilationCache(e.cache))
			if _, err := rt.CompileModule(context.Background(), instrumented); err != nil {
				b.Fatal(err)
			}
			rts = append(rts, rt)
		}
		code := (settledRSS() - before) / n
		for _, rt := range rts {
			rt.Close(context.Background())
		}

		before = settledRSS()
		var fs []*Function
		var snap uint64
		for i := 0; i < n; i++ {
			f, err := e.Load(context.Background(), spec(i))
			if err != nil {
				b.Fatal(err)
			}
			if resp, err := f.Serve(context.Background(), get("/hello")); err != nil || resp.Status != 200 {
				b.Fatal(err)
			}
			if f.snap != nil {
				snap += f.snap.mem.Resident()
			}
			fs = append(fs, f)
		}
		warm := (settledRSS() - before) / n
		for _, f := range fs {
			for deadline := time.Now().Add(10 * time.Second); f.pool.idleCount() > 0; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					b.Fatal("the pool did not empty")
				}
			}
		}
		for deadline := time.Now().Add(10 * time.Second); alloc.Stats().Idle > 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				b.Fatal("the allocator kept idle memories")
			}
		}
		// Signed: with equal modules sharing one runtime (shared.go),
		// what a function adds is small enough for the RSS to settle
		// below where it began.
		idle := (int64(settledRSS()) - int64(before)) / n
		b.ReportMetric(float64(code)/(1<<20), "MiB-code-per-runtime")
		b.ReportMetric(float64(warm)/(1<<20), "MiB-one-instance/fn")
		b.ReportMetric(float64(idle)/(1<<20), "MiB-idle/fn")
		b.ReportMetric(float64(snap)/n/(1<<20), "MiB-snapshot/fn")
		for _, f := range fs {
			f.Close(context.Background())
		}
		e.Close(context.Background())
	}
}

// settledRSS is the process's resident memory after a garbage collection
// has returned what it can.
func settledRSS() uint64 {
	runtime.GC()
	debug.FreeOSMemory()
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
