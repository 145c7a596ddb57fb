package wasm

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Never more holders than units, no lost wake-up, and waits end on time.
func TestSema(t *testing.T) {
	t.Parallel()
	s := newSema(3)
	var holders, most atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 50; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				if err := s.acquire(context.Background(), nil); err != nil {
					t.Error(err)
					return
				}
				n := holders.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				holders.Add(-1)
				s.release()
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("stuck: a waiter was never woken")
	}
	if most.Load() > 3 || s.n.Load() != 0 {
		t.Fatalf("%d holders at once (max 3), %d units taken at the end", most.Load(), s.n.Load())
	}

	one := newSema(1)
	one.acquire(context.Background(), nil)
	if err := one.acquire(context.Background(), time.After(10*time.Millisecond)); err != errExpired {
		t.Fatalf("waiting on a taken unit: %v, want errExpired", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := one.acquire(ctx, nil); err != context.Canceled {
		t.Fatalf("waiting with a cancelled context: %v", err)
	}
	got := make(chan error)
	go func() { got <- one.acquire(context.Background(), time.After(10*time.Second)) }()
	time.Sleep(10 * time.Millisecond)
	one.release()
	if err := <-got; err != nil {
		t.Fatalf("a waiter was not given the released unit: %v", err)
	}
}
