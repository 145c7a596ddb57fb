package wasm

import (
	"context"
	"net/http"
	"testing"

	"github.com/verge-edge/verge"
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
