package wasm

import (
	"sync/atomic"

	"github.com/tetratelabs/wazero/experimental"

	"github.com/verge-edge/verge/internal/memalloc"
)

// guestMemory enforces a function's memory limit inside the allocator rather
// than through wazero's runtime-wide page limit: the runtime limit is set to
// the 4 GiB maximum so that every memory.grow reaches Reallocate, where a
// refusal is recorded. That lets a failed request be blamed on the memory
// limit exactly, instead of guessing from the trap message.
type guestMemory struct {
	limit    uint64
	inner    experimental.MemoryAllocator // backs the memory (Options.Allocator)
	exceeded atomic.Bool
	size     atomic.Uint64 // current length, for the high-water recycle check
	// pooled is the memory when it comes from memalloc: it can be restored
	// from a snapshot.
	pooled *memalloc.Memory
}

func (g *guestMemory) Allocate(capBytes, maxBytes uint64) experimental.LinearMemory {
	maxBytes = min(maxBytes, g.limit)
	capBytes = min(capBytes, maxBytes)
	inner := g.inner.Allocate(capBytes, maxBytes)
	g.pooled, _ = inner.(*memalloc.Memory)
	return &limitedMemory{g: g, inner: inner}
}

type limitedMemory struct {
	g     *guestMemory
	inner experimental.LinearMemory
}

func (m *limitedMemory) Reallocate(size uint64) []byte {
	if size > m.g.limit {
		m.g.exceeded.Store(true)
		return nil
	}
	m.g.size.Store(size)
	b := m.inner.Reallocate(size)
	if b == nil {
		// The host could not back the memory: treat it as the limit too,
		// the guest is stopped either way.
		m.g.exceeded.Store(true)
	}
	return b
}

func (m *limitedMemory) Free() { m.inner.Free() }
