package wasm

import (
	"context"
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
	serveOK(t, a, "/", "hi")
	a.Close(ctx)
	serveOK(t, b, "/", "hi")
	if e.runtimes.m[b.rtKey] == nil || b.rts.refs != 1 {
		t.Fatalf("after closing one of two: %d references", b.rts.refs)
	}
	b.Close(ctx)
	if e.runtimes.m[b.rtKey] != nil {
		t.Fatal("the runtime outlived its last function")
	}
}
