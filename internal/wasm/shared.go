package wasm

import (
	"context"
	"crypto/sha256"
	"sync"

	"github.com/tetratelabs/wazero"
)

// Functions whose modules are the same bytes after instrumentation (and
// run by the same executor) share one wazero.Runtime and its
// CompiledModule: wazero's compilation cache already shares the machine
// code between runtimes, but every runtime keeps its own decoded module,
// the function bodies included (2.8 MiB for a Go guest), which is most of
// what an idle app costs a PoP that hosts a thousand copies of one
// template. The runtime is closed with the last function using it.

type sharedKey [sha256.Size]byte

type sharedRT struct {
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	refs     int
}

type sharedRuntimes struct {
	mu sync.Mutex
	m  map[sharedKey]*sharedRT
}

func runtimeKey(executor string, instrumented []byte) sharedKey {
	h := sha256.New()
	h.Write([]byte(executor))
	h.Write([]byte{0})
	h.Write(instrumented)
	var k sharedKey
	h.Sum(k[:0])
	return k
}

// get returns the shared runtime for k, counting a reference, or nil.
func (s *sharedRuntimes) get(k sharedKey) *sharedRT {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.m[k]
	if r != nil {
		r.refs++
	}
	return r
}

// add offers r (one reference, the caller's) for k; if another Load added
// one meanwhile, that one is returned with a reference and r is left to
// the caller.
func (s *sharedRuntimes) add(k sharedKey, r *sharedRT) *sharedRT {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[sharedKey]*sharedRT{}
	}
	if old := s.m[k]; old != nil {
		old.refs++
		return old
	}
	r.refs = 1
	s.m[k] = r
	return r
}

// release drops a reference to k's runtime and closes it with the last.
func (s *sharedRuntimes) release(ctx context.Context, k sharedKey, r *sharedRT) error {
	s.mu.Lock()
	r.refs--
	last := r.refs == 0
	if last && s.m[k] == r {
		delete(s.m, k)
	}
	s.mu.Unlock()
	if last {
		return r.rt.Close(ctx)
	}
	return nil
}
