package wasm

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge"
)

func fixture(name string) string { return filepath.Join("testdata", name) }

func get(path string) *Request {
	return &Request{ID: "t", Method: "GET", URI: path, Path: path, Host: "127.0.0.1", RemoteAddr: "127.0.0.1:9", Header: http.Header{}, Route: "/*", Proto: "HTTP/1.1"}
}

// serveOK asserts that f answers a good request with status 200 and body.
func serveOK(t *testing.T, f *Function, path, body string) {
	t.Helper()
	resp, err := f.Serve(context.Background(), get(path))
	if err != nil {
		t.Fatalf("good request failed: %v", err)
	}
	if resp.Status != 200 || string(resp.Body) != body {
		t.Fatalf("good request: got %d %q, want 200 %q", resp.Status, resp.Body, body)
	}
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hello, _ := os.ReadFile(fixture("hello.wasm"))
	cases := []struct {
		name     string
		module   string
		executor verge.Executor
		want     string
	}{
		{"empty", write("empty.wasm", nil), verge.ExecutorVerge, "module is empty (0 bytes)"},
		{"garbage", write("garbage.wasm", []byte("#!/bin/sh\necho hi\n")), verge.ExecutorVerge, "not a WebAssembly module: expected the magic bytes 00 61 73 6d, found 23 21 2f 62"},
		{"text", write("text.wasm", []byte("(module)\n")), verge.ExecutorWAGI, "this is WebAssembly text (.wat)"},
		{"truncated", write("trunc.wasm", hello[:len(hello)/2]), verge.ExecutorVerge, "invalid WebAssembly"},
		{"component", write("comp.wasm", []byte("\x00asm\x0d\x00\x01\x00")), verge.ExecutorVerge, "components are not supported"},
		{"missing", filepath.Join(dir, "nope.wasm"), verge.ExecutorVerge, "cannot read module"},
		{"unknown import", fixture("unknown_import.wasm"), verge.ExecutorVerge, "imports unknown host function env.launch_missiles (i32) -> i32"},
		{"bad signature", fixture("bad_signature.wasm"), verge.ExecutorVerge, "imports verge.log with signature (i32, i32) -> i32, but the host defines (i32, i32, i32) -> i32"},
		{"abi in wagi", fixture("hello.wasm"), verge.ExecutorWAGI, "the verge host ABI is only available to executor = \"verge\""},
		{"no handler", fixture("wagi_loop.wasm"), verge.ExecutorVerge, "exports no verge_handle"},
		{"initialisation traps", fixture("init_trap.wasm"), verge.ExecutorVerge, "initialisation failed: the guest trapped"},
		// 15 bytes claiming 2^28 exports: wazero alone would allocate for minutes.
		{"inflated count", write("inflated.wasm", []byte("\x00asm\x01\x00\x00\x00\x07\x05\x80\x80\x80\x80\x01")), verge.ExecutorVerge, "invalid WebAssembly"},
	}
	e := newTestEngine(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.Load(context.Background(), verge.Function{Name: "f", Module: c.module, Executor: c.executor, Routes: []string{"/"}, Limits: verge.DefaultLimits})
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("got %v, want a *LoadError", err)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), c.module+": ") {
				t.Fatalf("error %q\nshould start with the module path and contain %q", err, c.want)
			}
		})
	}
}

func TestBadGuests(t *testing.T) {
	t.Parallel()
	lim := verge.Limits{CPUTime: 20 * time.Millisecond, WallTime: 5 * time.Second, Memory: 4 << 20}
	cases := []struct {
		name     string
		module   string
		executor verge.Executor
		strict   bool
		kind     string
		status   int
		msg      string
		cpu      time.Duration // overrides lim.CPUTime
	}{
		{"infinite loop", "loop.wasm", verge.ExecutorVerge, false, KindCPUTime, 500, "more than 20ms of CPU time", 0},
		{"infinite loop strict", "loop.wasm", verge.ExecutorVerge, true, KindCPUTime, 500, "more than 20ms of CPU time", 0},
		{"recursion without loops", "fib.wasm", verge.ExecutorVerge, false, KindCPUTime, 500, "CPU time", 0},
		{"loop in a module with a start function", "start_section.wasm", verge.ExecutorVerge, false, KindCPUTime, 500, "CPU time", 0},
		{"wagi infinite loop", "wagi_loop.wasm", verge.ExecutorWAGI, false, KindCPUTime, 500, "CPU time", 0},
		{"unbounded recursion", "recurse.wasm", verge.ExecutorVerge, false, KindTrap, 500, "stack overflow", 20 * time.Second},
		{"endless memory growth", "grow.wasm", verge.ExecutorVerge, false, KindMemory, 500, "past the function's limit of 4194304 bytes", 0},
		{"trap", "trap.wasm", verge.ExecutorVerge, false, KindTrap, 500, "integer divide by zero", 0},
	}
	e := newTestEngine(t)
	good := load(t, e, verge.Function{Name: "good", Module: fixture("hello.wasm"), Executor: verge.ExecutorVerge})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			spec := verge.Function{Name: "bad", Module: fixture(c.module), Executor: c.executor, Limits: lim}
			if c.cpu != 0 {
				// Growing wazero's stack to its limit takes a while,
				// longer on a busy machine: give it the time.
				spec.Limits.CPUTime, spec.Limits.WallTime = c.cpu, 2*c.cpu
			}
			if c.strict {
				spec.Isolation = verge.IsolationStrict
			}
			f := load(t, e, spec)
			for i := 0; i < 2; i++ { // the second request gets a fresh instance
				_, err := f.Serve(context.Background(), get("/"))
				var re *Error
				if !errors.As(err, &re) {
					t.Fatalf("request %d: got %v, want a *wasm.Error", i, err)
				}
				if re.Kind != c.kind || re.Status != c.status || !strings.Contains(re.Error(), c.msg) {
					t.Fatalf("request %d: got kind %q status %d %q; want kind %q status %d containing %q", i, re.Kind, re.Status, re.Error(), c.kind, c.status, c.msg)
				}
			}
			serveOK(t, good, "/", "hi")
		})
	}
}

func TestGoGuestFaults(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	hog := load(t, e, verge.Function{Module: buildGo(t, "internal/wasm/testdata/gohog", true), Executor: verge.ExecutorVerge,
		Limits: verge.Limits{Memory: 64 << 20, CPUTime: 2 * time.Second}})
	_, err := hog.Serve(context.Background(), get("/hog"))
	var re *Error
	if !errors.As(err, &re) || re.Kind != KindMemory {
		t.Fatalf("allocating without end: got %v, want a memory limit error", err)
	}
	serveOK(t, hog, "/small", "ok")

	p := load(t, e, verge.Function{Module: buildGo(t, "internal/wasm/testdata/gopanic", true), Executor: verge.ExecutorVerge})
	_, err = p.Serve(context.Background(), get("/panic"))
	if !errors.As(err, &re) || re.Kind != KindGuestError {
		t.Fatalf("panicking handler: got %v, want guest_error", err)
	}
	serveOK(t, p, "/", "fine")
}

func TestLimitsOnBodies(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	f := load(t, e, verge.Function{Module: buildGo(t, "examples/hello-go", true), Executor: verge.ExecutorVerge,
		Limits: verge.Limits{RequestBody: 1000, ResponseBody: 100}})
	req := get("/")
	req.Method = "POST"
	req.Body = bytes.Repeat([]byte("x"), 1001)
	_, err := f.Serve(context.Background(), req)
	var re *Error
	if !errors.As(err, &re) || re.Kind != KindRequestBody || re.Status != 413 {
		t.Fatalf("oversized request: got %v", err)
	}
	// The echo is within the request limit but over the response limit.
	req.Body = req.Body[:500]
	_, err = f.Serve(context.Background(), req)
	if !errors.As(err, &re) || re.Kind != KindResponseBody {
		t.Fatalf("oversized response: got %v", err)
	}
	req.Body = req.Body[:50]
	resp, err := f.Serve(context.Background(), req)
	if err != nil || !bytes.Equal(resp.Body, req.Body) {
		t.Fatalf("echo: %v %q", err, resp.Body)
	}
}

func TestConcurrencyLimit(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	// The first request holds the only instance for at least 1.5 s (of CPU
	// or, on a busy machine, of wall time); the second waits a tenth of the
	// wall time, 200 ms, for it.
	f := load(t, e, verge.Function{Module: fixture("loop.wasm"), Executor: verge.ExecutorVerge,
		Limits: verge.Limits{MaxInstances: 1, CPUTime: 1500 * time.Millisecond, WallTime: 2 * time.Second}})
	errc := make(chan error, 1)
	go func() { _, err := f.Serve(context.Background(), get("/")); errc <- err }()
	// Let the first request take the only instance.
	for deadline := time.Now().Add(10 * time.Second); f.sem.n.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first request never took the instance")
		}
	}
	_, err := f.Serve(context.Background(), get("/"))
	var re *Error
	if !errors.As(err, &re) || re.Kind != KindConcurrency || re.Status != 503 {
		t.Fatalf("second request: got %v, want a concurrency limit error", err)
	}
	if err := <-errc; !errors.As(err, &re) || (re.Kind != KindCPUTime && re.Kind != KindWallTime) {
		t.Fatalf("first request: got %v, want cpu_time or wall_time", err)
	}
}

func TestRecycle(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	f := load(t, e, verge.Function{Module: fixture("hello.wasm"), Executor: verge.ExecutorVerge, Limits: verge.Limits{RecycleAfter: 3}})
	for i := 0; i < 12; i++ {
		serveOK(t, f, "/", "hi")
		// Requests run one at a time, so every instance is idle now; the
		// one on top served this request. After its third it is a fresh
		// instance again, restored from the snapshot (or a new one).
		f.pool.mu.Lock()
		for _, inst := range f.pool.idle {
			if inst.served >= 3 {
				t.Fatalf("an idle instance has served %d requests; recycle_after is 3", inst.served)
			}
		}
		served := f.pool.idle[len(f.pool.idle)-1].served
		f.pool.mu.Unlock()
		if want := (i + 1) % 3; served != want {
			t.Fatalf("after request %d the instance on top has served %d, want %d", i, served, want)
		}
	}
}
