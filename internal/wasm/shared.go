package wasm

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/verge-edge/verge/internal/wasmbin"
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
	key      sharedKey

	// What instrumenting the module gave, by the key of its bytes before
	// instrumentation (raw): a Load of the same bytes soon after (a PoP
	// starting with a thousand apps of one template) skips instrumenting.
	// The data segments are megabytes: dropped keepPrepared after the last
	// Load that used them (under sharedRuntimes.mu).
	raw       sharedKey
	prepared  *prepared
	dropTimer *time.Timer
}

// prepared is a module instrumented (and stripped of its data segments
// when a snapshot will hold them).
type prepared struct {
	instrumented []byte
	info         wasmbin.Info
	data         []wasmbin.DataSegment
}

// keepPrepared is how long an instrumented module is kept after a Load.
const keepPrepared = 10 * time.Second

type sharedRuntimes struct {
	mu  sync.Mutex
	m   map[sharedKey]*sharedRT
	raw map[sharedKey]*sharedRT
}

// preparedFor returns the instrumented module of raw bytes (by their key)
// if a Load prepared it recently, with its runtime referenced; else nils.
func (s *sharedRuntimes) preparedFor(raw sharedKey) (*sharedRT, *prepared) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.raw[raw]
	if r == nil || r.prepared == nil {
		return nil, nil
	}
	r.refs++
	r.dropTimer.Reset(keepPrepared)
	return r, r.prepared
}

// remember keeps p, the preparation of raw bytes, with r for keepPrepared.
func (s *sharedRuntimes) remember(raw sharedKey, r *sharedRT, p *prepared) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.raw == nil {
		s.raw = map[sharedKey]*sharedRT{}
	}
	if old := s.raw[raw]; old != nil && old != r {
		return
	}
	s.raw[raw], r.raw, r.prepared = r, raw, p
	if r.dropTimer == nil {
		r.dropTimer = time.AfterFunc(keepPrepared, func() {
			s.mu.Lock()
			r.prepared = nil
			s.mu.Unlock()
		})
	} else {
		r.dropTimer.Reset(keepPrepared)
	}
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
	r.refs, r.key = 1, k
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
	if last {
		if s.raw[r.raw] == r {
			delete(s.raw, r.raw)
		}
		r.prepared = nil
		if r.dropTimer != nil {
			r.dropTimer.Stop()
		}
	}
	s.mu.Unlock()
	if last {
		return r.rt.Close(ctx)
	}
	return nil
}
