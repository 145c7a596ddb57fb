package wasm

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verge-edge/verge"
)

// A CPU-bound guest leaves its P at its yield points while short runs keep
// ending: with a single P, another goroutine still runs again and again
// during the guest's 300 ms of CPU time. Without it, compiled guest code,
// which the Go scheduler cannot preempt, would hold the only P until it
// stopped. Not parallel: it sets GOMAXPROCS.
func TestCPUBoundRunLeavesItsP(t *testing.T) {
	e := newTestEngine(t)
	f := load(t, e, verge.Function{Module: fixture("loop.wasm"), Executor: verge.ExecutorVerge,
		Limits: verge.Limits{CPUTime: 300 * time.Millisecond, WallTime: 20 * time.Second}})
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var running atomic.Bool
	running.Store(true)
	done := make(chan struct{})
	noteShortRun(time.Now())
	go func() {
		defer close(done)
		f.Serve(context.Background(), get("/"))
		running.Store(false)
	}()
	turns := 0
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		noteShortRun(time.Now()) // as if short runs of other requests kept ending
		runtime.Gosched()
		if !running.Load() {
			break
		}
		turns++
	}
	<-done
	t.Logf("%d turns", turns)
	if turns < 1000 { // ~18,000 here; ~15 when the guest keeps its P
		t.Errorf("the other goroutine ran %d times during the guest's run, want many", turns)
	}
}
