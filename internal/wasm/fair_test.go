package wasm

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// contend runs workers goroutines per app, each taking a slot of s in a
// loop, holding it briefly and charging cost per grant, until total grants
// were made (or 30 s passed); it returns the grants per app.
func contend(t *testing.T, s *fairSlots, apps []*share, workers, total int, cost func(*share) time.Duration) map[*share]int {
	t.Helper()
	var mu sync.Mutex
	got := map[*share]int{}
	var made atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, a := range apps {
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for made.Load() < int64(total) && ctx.Err() == nil {
					if err := s.acquire(ctx, nil, a); err != nil {
						return
					}
					if made.Add(1) <= int64(total) {
						mu.Lock()
						got[a]++
						mu.Unlock()
					}
					a.charge(cost(a))
					time.Sleep(20 * time.Microsecond) // hold the slot: the others queue
					s.release()
				}
			}()
		}
	}
	wg.Wait()
	if made.Load() < int64(total) {
		t.Fatalf("only %d of %d grants in 30 s", made.Load(), total)
	}
	if s.n.Load() != 0 || s.waiting.Load() != 0 {
		t.Fatalf("at the end %d slots taken, %d waiting", s.n.Load(), s.waiting.Load())
	}
	return got
}

// Under contention, grants follow the weights when every grant costs the
// same CPU time, and CPU time when the weights are equal.
func TestFairSharesFollowWeights(t *testing.T) {
	t.Parallel()
	s := newFairSlots(1)
	s.setWeights(map[string]float64{"b": 3}, 0)
	a, b := s.share("a"), s.share("b")
	got := contend(t, s, []*share{a, b}, 4, 800, func(*share) time.Duration { return time.Millisecond })
	ratio := float64(got[b]) / float64(got[a])
	t.Logf("grants a=%d b=%d (b/a %.2f, weights 1:3)", got[a], got[b], ratio)
	if ratio < 2 || ratio > 4.5 {
		t.Fatalf("b/a = %.2f, want about 3", ratio)
	}

	// Equal weights, a's runs cost 4x b's: b gets about 4x the grants,
	// whereas first come first served would give each about half.
	s = newFairSlots(1)
	a, b = s.share("a"), s.share("b")
	got = contend(t, s, []*share{a, b}, 4, 800, func(x *share) time.Duration {
		if x == a {
			return 4 * time.Millisecond
		}
		return time.Millisecond
	})
	ratio = float64(got[b]) / float64(got[a])
	t.Logf("grants a=%d b=%d (b/a %.2f, CPU per grant 4:1)", got[a], got[b], ratio)
	if ratio < 2.5 {
		t.Fatalf("b/a = %.2f, want about 4", ratio)
	}
}

// An app with much more recent CPU time than another still gets slots
// while the other keeps using them: its usage decays and the other's grows.
func TestFairNoStarvation(t *testing.T) {
	t.Parallel()
	s := newFairSlots(1)
	heavy, light := s.share("heavy"), s.share("light")
	heavy.charge(50 * time.Millisecond)
	got := contend(t, s, []*share{heavy, light}, 2, 400, func(*share) time.Duration { return time.Millisecond })
	t.Logf("grants heavy=%d light=%d", got[heavy], got[light])
	if got[heavy] == 0 {
		t.Fatal("the heavy app never got a slot")
	}
	if got[light] <= got[heavy] {
		t.Fatalf("heavy %d grants, light %d: the light app must get more", got[heavy], got[light])
	}
}

// A queued run leaves on its context's end or its deadline, without
// taking a slot or losing one handed to it meanwhile.
func TestFairWaitEnds(t *testing.T) {
	t.Parallel()
	s := newFairSlots(1)
	a := s.share("a")
	if err := s.acquire(context.Background(), nil, a); err != nil {
		t.Fatal(err)
	}
	if err := s.acquire(context.Background(), time.After(5*time.Millisecond), a); err != errExpired {
		t.Fatalf("deadline while queued: %v, want errExpired", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(5 * time.Millisecond); cancel() }()
	if err := s.acquire(ctx, nil, s.share("b")); err != context.Canceled {
		t.Fatalf("cancel while queued: %v", err)
	}
	if s.waiting.Load() != 0 || len(s.ready) != 0 {
		t.Fatalf("%d still waiting, %d apps ready", s.waiting.Load(), len(s.ready))
	}
	s.release()
	if s.n.Load() != 0 {
		t.Fatalf("%d slots taken after the release", s.n.Load())
	}

	// Waits ending while slots are handed over: none is lost.
	s.n.Store(1)
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%8)*100*time.Microsecond)
			defer cancel()
			if s.acquire(ctx, nil, s.share([]string{"x", "y", "z"}[i%3])) == nil {
				s.release()
			}
		}()
	}
	for i := 0; i < 20; i++ {
		s.release()
		time.Sleep(50 * time.Microsecond)
		if s.acquire(context.Background(), time.After(10*time.Second), a) != nil {
			t.Fatal("the slot was lost")
		}
	}
	wg.Wait()
	s.release()
	if s.n.Load() != 0 || s.waiting.Load() != 0 {
		t.Fatalf("at the end %d slots taken, %d waiting", s.n.Load(), s.waiting.Load())
	}
}

// A guest holding its slot gives it to a waiting app with less recent CPU
// time, not to one of its own app's runs or to a heavier app.
func TestFairCede(t *testing.T) {
	t.Parallel()
	s := newFairSlots(1)
	a, b, c := s.share("a"), s.share("b"), s.share("c")
	a.charge(10 * time.Millisecond)
	c.charge(20 * time.Millisecond)
	if err := s.acquire(context.Background(), nil, a); err != nil {
		t.Fatal(err)
	}
	own := make(chan error, 1)
	go func() { own <- s.acquire(context.Background(), nil, a) }()
	heavier := make(chan error, 1)
	go func() { heavier <- s.acquire(context.Background(), nil, c) }()
	for deadline := time.Now().Add(10 * time.Second); s.waiting.Load() < 2; {
		if time.Now().After(deadline) {
			t.Fatal("the waiters did not queue")
		}
		time.Sleep(time.Millisecond)
	}
	if ch := s.cede(a, time.Now()); ch != nil {
		t.Fatal("ceded to its own app or to a heavier one")
	}
	light := make(chan error, 1)
	go func() { light <- s.acquire(context.Background(), nil, b) }()
	for deadline := time.Now().Add(10 * time.Second); s.waiting.Load() < 3; {
		if time.Now().After(deadline) {
			t.Fatal("the light waiter did not queue")
		}
		time.Sleep(time.Millisecond)
	}
	ch := s.cede(a, time.Now())
	if ch == nil {
		t.Fatal("did not cede to the lighter app")
	}
	if err := <-light; err != nil {
		t.Fatal(err)
	}
	b.charge(time.Millisecond)
	s.release() // b's: the ceded run is at the head of a's queue, a is lighter than c
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("the ceded run did not get its slot back")
	}
	select {
	case <-own:
		t.Fatal("a's queued run went before the ceded one")
	default:
	}
	s.release()
	for i := 0; i < 2; i++ {
		select {
		case err := <-own:
			if err != nil {
				t.Fatal(err)
			}
		case err := <-heavier:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a waiter was never woken")
		}
		s.release()
	}
	if s.n.Load() != 0 || s.waiting.Load() != 0 {
		t.Fatalf("at the end %d slots taken, %d waiting", s.n.Load(), s.waiting.Load())
	}
}

// The uncontended path: take a slot, charge the run, give it back; beside
// the first-come-first-served semaphore it replaced.
func BenchmarkGuestSlotUncontended(b *testing.B) {
	b.Run("fair", func(b *testing.B) {
		s := newFairSlots(1)
		a := s.share("a")
		ctx := context.Background()
		for b.Loop() {
			s.acquire(ctx, nil, a)
			a.charge(time.Microsecond)
			s.release()
		}
	})
	b.Run("fifo", func(b *testing.B) {
		s := newSema(1)
		ctx := context.Background()
		for b.Loop() {
			s.acquire(ctx, nil)
			s.release()
		}
	})
}
