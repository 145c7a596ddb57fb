package wasm

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// A thread that is descheduled or asleep is not running the guest: wall time
// must never be charged as CPU time, before the first yield, after one, or
// after a blocking host call.
func TestRunChargesCPUNotWallTime(t *testing.T) {
	t.Parallel()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const limit = 20 * time.Millisecond
	r := &run{ctx: context.Background(), limit: limit}

	time.Sleep(3 * limit) // before the first yield
	if r.stop() {
		t.Fatalf("stopped at the first yield after sleeping: %v", r.cause)
	}
	time.Sleep(3 * limit) // between yields
	if r.stop() {
		t.Fatalf("stopped after sleeping between yields: %v", r.cause)
	}
	r.pause()
	time.Sleep(3 * limit) // a blocking host call
	r.resume()
	time.Sleep(3 * limit) // descheduled after it
	if r.stop() {
		t.Fatalf("stopped after a blocking call and a sleep: %v", r.cause)
	}

	// Spinning is charged: the guest is stopped once it used the limit.
	start := time.Now()
	for !r.stop() {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("not stopped after 10 s of spinning; spent %v", r.spent)
		}
	}
	if r.cause != errCPUTime {
		t.Fatalf("cause %v, want %v", r.cause, errCPUTime)
	}
}

// CPU time spent across blocking calls adds up.
func TestRunChargesEverySegment(t *testing.T) {
	t.Parallel()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const limit = 30 * time.Millisecond
	r := &run{ctx: context.Background(), limit: limit}
	spin := func(d time.Duration) {
		end := ThreadCPUTime() + d
		for deadline := time.Now().Add(10 * time.Second); ThreadCPUTime() < end && time.Now().Before(deadline); {
		}
	}
	r.stop() // the first yield starts the measurement
	for range 2 {
		spin(limit * 2 / 5)
		if r.stop() {
			t.Fatalf("stopped after %v of %v", r.spent, limit)
		}
		r.pause()
		r.resume()
	}
	spin(limit * 2 / 5)
	if !r.stop() {
		t.Fatalf("not stopped after three segments of CPU (%v charged, limit %v)", r.spent, limit)
	}
}
