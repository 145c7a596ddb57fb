package wasm

import (
	"context"
	"sync/atomic"
	"time"
)

// sema is a counting semaphore whose uncontended acquire and release are
// one atomic operation each: a channel used as a semaphore costs a lock of
// its own, shared by every request of a function on every core.
type sema struct {
	n       atomic.Int64
	max     int64
	waiters atomic.Int64
	wake    chan struct{} // tokens for waiters; a token means "try again"
}

func newSema(max int) *sema {
	return &sema{max: int64(max), wake: make(chan struct{}, max)}
}

func (s *sema) tryAcquire() bool {
	for {
		n := s.n.Load()
		if n >= s.max {
			return false
		}
		if s.n.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// acquire takes a unit, waiting at most until expired fires (nil: no
// limit) or ctx ends; it reports which one ended the wait (nil: acquired).
func (s *sema) acquire(ctx context.Context, expired <-chan time.Time) error {
	if s.tryAcquire() {
		return nil
	}
	s.waiters.Add(1)
	defer s.waiters.Add(-1)
	for {
		// Registered as a waiter before this check: a release that happens
		// after it sees the waiter and leaves a token.
		if s.tryAcquire() {
			return nil
		}
		select {
		case <-s.wake:
		case <-expired:
			return errExpired
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (s *sema) release() {
	s.n.Add(-1)
	if s.waiters.Load() > 0 {
		select {
		case s.wake <- struct{}{}:
		default: // tokens are pending already: someone will try again
		}
	}
}

var errExpired = &timeoutError{}

type timeoutError struct{}

func (*timeoutError) Error() string { return "timed out" }
