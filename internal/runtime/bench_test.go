package runtime

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
