package wasm

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/verge-edge/verge"
)

// Sequential requests run on the instance that served last, not in turn on
// every warm one: its memory is still in the CPU caches.
func TestPoolReusesTheLastInstance(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	f := load(t, e, verge.Function{Module: fixture("hello.wasm"), Executor: verge.ExecutorVerge})
	if err := f.pool.warm(context.Background(), 4); err != nil {
		t.Fatal(err)
	}
	top := func() *instance {
		f.pool.mu.Lock()
		defer f.pool.mu.Unlock()
		return f.pool.idle[len(f.pool.idle)-1]
	}
	last := top()
	for i := 0; i < 5; i++ {
		serveOK(t, f, "/", "hi")
		if got := top(); got != last {
			t.Fatalf("request %d left another instance on top of the pool", i)
		}
	}
	if last.served != 5 {
		t.Fatalf("the instance on top served %d of 5 requests", last.served)
	}
}

// Instances idle for longer than the idle timeout are closed, down to none,
// and the next request instantiates one.
func TestPoolShrinksWhenIdle(t *testing.T) {
	t.Parallel()
	e, err := NewEngine(Options{CacheDir: "-", Logger: slog.New(slog.DiscardHandler), IdleTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	f := load(t, e, verge.Function{Module: fixture("hello.wasm"), Executor: verge.ExecutorVerge})
	f.WarmUp()
	f.pool.wg.Wait()
	if n := f.pool.idleCount(); n < 2 {
		t.Fatalf("%d idle instances after warming up, want several", n)
	}
	for deadline := time.Now().Add(10 * time.Second); f.pool.idleCount() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d instances still idle 10 s after warming up; the idle timeout is 200 ms", f.pool.idleCount())
		}
	}
	serveOK(t, f, "/", "hi")
	if n := f.pool.idleCount(); n != 1 {
		t.Fatalf("%d idle instances after a request to an empty pool, want 1", n)
	}
}
