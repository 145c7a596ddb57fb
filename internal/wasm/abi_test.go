package wasm

import (
	"context"
	"reflect"
	"testing"

	"github.com/verge-edge/verge"
)

// An instance keeps the decoding of the last response header list it was
// sent; a guest that changes its headers gets the new ones.
func TestResponseHeadersDecodedOnce(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	f := load(t, e, verge.Function{Module: buildGo(t, "internal/wasm/testdata/goheaders", true), Executor: verge.ExecutorVerge})
	var prev *Response
	for i, path := range []string{"/a", "/a", "/b", "/a"} {
		resp, err := f.Serve(context.Background(), get(path))
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Header.Get("X-Path"); got != path || len(resp.Header) != 1 {
			t.Fatalf("request %d for %s: header %v", i, path, resp.Header)
		}
		shared := prev != nil && reflect.ValueOf(prev.Header).Pointer() == reflect.ValueOf(resp.Header).Pointer()
		if want := i == 1; shared != want {
			t.Fatalf("request %d: the header map shared with the previous response: %v, want %v", i, shared, want)
		}
		prev = resp
	}
}
