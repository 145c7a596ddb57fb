package wasm

import (
	"context"
	"errors"
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

// http_resp sets the status and the headers and writes the body in one
// call, within the response body limit.
func TestRespInOneCall(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	f := load(t, e, verge.Function{Module: fixture("resp.wasm"), Executor: verge.ExecutorVerge})
	resp, err := f.Serve(context.Background(), get("/"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 201 || resp.Header.Get("X-One") != "call" || string(resp.Body) != "one call\n..." {
		t.Fatalf("got %d %v %q", resp.Status, resp.Header, resp.Body)
	}
	small := load(t, e, verge.Function{Module: fixture("resp.wasm"), Executor: verge.ExecutorVerge, Limits: verge.Limits{ResponseBody: 11}})
	_, err = small.Serve(context.Background(), get("/"))
	var re *Error
	if !errors.As(err, &re) || re.Kind != KindResponseBody {
		t.Fatalf("a body over the limit: got %v, want a response_body error", err)
	}
}
