package host

import (
	"bytes"
	"context"
	"testing"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/wasm"
)

// TestWildPointers calls every host function of the core and the document
// capability with pointers and lengths outside the guest's memory.
func TestWildPointers(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Services{})
	f := load(t, e, verge.Function{Module: fixture("wild.wasm"), Executor: verge.ExecutorVerge})
	want := []byte{
		wasm.StatusMemory, wasm.StatusMemory, wasm.StatusInvalid, // log
		wasm.StatusMemory, wasm.StatusMemory, wasm.StatusBadHandle, // http_req_head
		wasm.StatusMemory,                                         // body_read
		wasm.StatusMemory, wasm.StatusInvalid, wasm.StatusInvalid, // http_resp_head
		wasm.StatusMemory, wasm.StatusBadHandle, // body_write
		wasm.StatusMemory, wasm.StatusMemory, wasm.StatusMemory, // doc_get, doc_update, doc_delete
		wasm.StatusMemory,                                                                                  // last_error
		wasm.StatusMemory, wasm.StatusMemory, wasm.StatusInvalid, wasm.StatusInvalid, wasm.StatusBadHandle, // http_resp
		wasm.StatusOK, // the valid http_resp_head
	}
	for i := 0; i < 3; i++ { // same instance, again and again
		resp, err := f.Serve(context.Background(), get("/"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(resp.Body, want) {
			t.Fatalf("statuses %v, want %v", resp.Body, want)
		}
	}
}
