package wasm

import (
	"context"
	"os"
	"testing"

	"github.com/verge-edge/verge"
)

// Functions of equal module bytes share one runtime and compiled module;
// closing one leaves the others serving; the last one closes it.
func TestEqualModulesShareARuntime(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	ctx := context.Background()
	spec := func(app string) verge.Function {
		return verge.Function{App: app, Name: "fn", Module: fixture("hello.wasm"), Executor: verge.ExecutorVerge}
	}
	a, b := load(t, e, spec("a")), load(t, e, spec("b"))
	if a.rt != b.rt || a.compiled != b.compiled {
		t.Fatal("equal modules were compiled into runtimes of their own")
	}
	if other := load(t, e, verge.Function{App: "a", Name: "loop", Module: fixture("loop.wasm"), Executor: verge.ExecutorVerge}); other.rt == a.rt {
		t.Fatal("different modules share a runtime")
	}
	e.runtimes.mu.Lock()
	r := e.runtimes.raw[runtimeKey(string(verge.ExecutorVerge), mustRead(t, fixture("hello.wasm")))]
	prepared := r != nil && r.prepared != nil && r == a.rts
	e.runtimes.mu.Unlock()
	if !prepared {
		t.Fatal("the instrumentation of the module is not kept for the next Load")
	}
	serveOK(t, a, "/", "hi")
	a.Close(ctx)
	serveOK(t, b, "/", "hi")
	if e.runtimes.m[b.rtKey] == nil || b.rts.refs != 1 {
		t.Fatalf("after closing one of two: %d references", b.rts.refs)
	}
	b.Close(ctx)
	if e.runtimes.m[b.rtKey] != nil || len(e.runtimes.raw) != 1 { // loop.wasm's is left
		t.Fatalf("the runtime outlived its last function (%d prepared modules kept)", len(e.runtimes.raw))
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
