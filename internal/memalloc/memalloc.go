// Package memalloc is a pooled linear-memory allocator for wazero
// (experimental.MemoryAllocator).
//
// A fresh wazero instance normally gets its linear memory from the Go heap:
// the bytes are zeroed by the Go runtime, pages are faulted in one by one as
// the guest touches them, and the garbage collector later scans and frees
// them. For a per-request instance that is most of the cost of starting it.
//
// On Linux each memory here is a private anonymous mapping that reserves the
// memory's maximum size up front (MAP_NORESERVE: address space only), so it
// grows in place and never copies. When the instance is closed the mapping
// goes back to a pool for its size class after the pages the guest touched
// are zeroed in user space; the next instance then finds zeroed pages that
// are already faulted in. Pages beyond Config.ZeroLimit are handed back to
// the kernel instead (MADV_DONTNEED), so one guest that ballooned does not
// keep its memory resident. Elsewhere, and if mmap fails, memories come from
// the Go heap and are pooled the same way.
//
// Safety contract for callers. wazero frees a memory when its module is
// closed; from then on its bytes belong to the next instance. So:
//   - never keep a slice from api.Memory (Read, host function views) after
//     the module is closed;
//   - never Close a module from another goroutine while it is executing:
//     stop it by cancelling its context (RuntimeConfig.WithCloseOnContextDone),
//     which lets the executing goroutine release the memory when it returns.
//
// wazero does not free the memory of an instantiation that fails after the
// memory was created (a data segment out of bounds, a trapping start
// function); such memories are recovered when the garbage collector finds
// them unreachable.
package memalloc

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero/experimental"
)

// Config tunes an Allocator. The zero value is usable.
type Config struct {
	// MaxIdle bounds the memories kept idle per size class (a class is a
	// maximum memory size). 0 means 16; negative disables pooling.
	MaxIdle int
	// ZeroLimit bounds the bytes of a freed memory that are zeroed in user
	// space and kept resident for the next instance; touched pages beyond it
	// are returned to the kernel. 0 means 8 MiB.
	ZeroLimit uint64
	// MaxIdleBytes bounds the resident bytes kept by idle memories across
	// all classes, so that many modules with different maximums cannot pin
	// MaxIdle × ZeroLimit each. 0 means 256 MiB.
	MaxIdleBytes uint64
	// NoMmap forces Go-heap memories even where mmap is available.
	NoMmap bool
	// IdleTimeout is how long a memory may stay idle in the pool before it
	// is given back to the system, so that a process whose load fell does
	// not keep the memories of its busiest moment. 0 means 30 s; negative
	// keeps them until the pool is full.
	IdleTimeout time.Duration
}

const (
	defaultMaxIdle     = 16
	defaultZeroLimit   = 8 << 20
	defaultIdleBytes   = 256 << 20
	defaultIdleTimeout = 30 * time.Second
)

// Stats are cumulative counters and current gauges of an Allocator.
type Stats struct {
	Allocs    uint64 `json:"allocs"`     // memories handed out
	Reuses    uint64 `json:"reuses"`     // of which came from the pool
	Frees     uint64 `json:"frees"`      // memories given back (Free, or collected unfreed)
	Released  uint64 `json:"released"`   // memories given back to the system: pool full, too large, or closed
	Leaked    uint64 `json:"leaked"`     // memories never freed by wazero, recovered by the garbage collector
	Idle      int    `json:"idle"`       // memories idle in pools now
	IdleBytes uint64 `json:"idle_bytes"` // resident bytes they keep, as far as known
	Live      int64  `json:"live"`       // memories handed out and not yet given back
}

// Allocator hands out pooled linear memories. It is safe for concurrent use.
type Allocator struct {
	maxIdle      int
	zeroLimit    uint64
	maxIdleBytes uint64
	mmap         bool
	idleTimeout  time.Duration

	mu        sync.Mutex
	classes   map[uint64][]*region // idle regions by reservation size, the last freed last
	idle      int
	idleBytes uint64 // resident bytes of idle regions
	closed    bool
	timer     *time.Timer // armed while regions are idle

	allocs, reuses, frees, released, leaked atomic.Uint64
	live                                    atomic.Int64
}

// New returns an Allocator configured by cfg.
func New(cfg Config) *Allocator {
	a := &Allocator{
		maxIdle:      cfg.MaxIdle,
		zeroLimit:    cfg.ZeroLimit,
		maxIdleBytes: cfg.MaxIdleBytes,
		mmap:         mmapSupported && !cfg.NoMmap,
		idleTimeout:  cfg.IdleTimeout,
		classes:      make(map[uint64][]*region),
	}
	if a.idleTimeout == 0 {
		a.idleTimeout = defaultIdleTimeout
	}
	if a.maxIdle == 0 {
		a.maxIdle = defaultMaxIdle
	}
	if a.zeroLimit == 0 {
		a.zeroLimit = defaultZeroLimit
	}
	if a.maxIdleBytes == 0 {
		a.maxIdleBytes = defaultIdleBytes
	}
	a.zeroLimit = roundUp(a.zeroLimit, pageSize)
	return a
}

// Allocate implements experimental.MemoryAllocator. The result is a *Memory.
// Memories never move when they grow on Linux (unless mmap failed), so they
// can back shared memories there.
func (a *Allocator) Allocate(capacity, maxBytes uint64) experimental.LinearMemory {
	size := roundUp(max(capacity, maxBytes), pageSize)
	a.allocs.Add(1)
	a.live.Add(1)
	r := a.get(size)
	if r == nil {
		r = a.newRegion(size, capacity)
	} else {
		a.reuses.Add(1)
	}
	m := &Memory{a: a, max: maxBytes}
	m.r.Store(r)
	m.cleanup = runtime.AddCleanup(m, a.collect, r)
	return m
}

func (a *Allocator) get(size uint64) *region {
	a.mu.Lock()
	defer a.mu.Unlock()
	idle := a.classes[size]
	if len(idle) == 0 {
		return nil
	}
	r := idle[len(idle)-1]
	idle[len(idle)-1] = nil
	a.classes[size] = idle[:len(idle)-1]
	a.idle--
	a.idleBytes -= r.resident
	return r
}

func (a *Allocator) newRegion(size, capacity uint64) *region {
	if a.mmap {
		if r := mapRegion(size); r != nil {
			return r
		}
	}
	return &region{size: size, buf: make([]byte, capacity)}
}

// put zeroes r and pools it, or releases it when the pool is full.
func (a *Allocator) put(r *region) {
	a.frees.Add(1)
	a.live.Add(-1)
	if a.maxIdle > 0 && r.reset(a.zeroLimit) {
		a.mu.Lock()
		if !a.closed && len(a.classes[r.size]) < a.maxIdle && a.idleBytes+r.resident <= a.maxIdleBytes {
			r.freed = time.Now()
			a.classes[r.size] = append(a.classes[r.size], r)
			a.idle++
			a.idleBytes += r.resident
			if a.timer == nil && a.idleTimeout > 0 {
				a.timer = time.AfterFunc(a.idleTimeout, a.expire)
			}
			a.mu.Unlock()
			return
		}
		a.mu.Unlock()
	}
	a.released.Add(1)
	r.release()
}

// expire releases the regions idle for longer than the idle timeout and
// runs again while some remain.
func (a *Allocator) expire() {
	now := time.Now()
	var old []*region
	a.mu.Lock()
	a.timer = nil
	next := time.Duration(-1)
	for size, idle := range a.classes {
		n := 0
		for n < len(idle) && now.Sub(idle[n].freed) >= a.idleTimeout {
			n++
		}
		for _, r := range idle[:n] {
			a.idle--
			a.idleBytes -= r.resident
		}
		old = append(old, idle[:n]...)
		rest := copy(idle, idle[n:])
		clear(idle[rest:])
		a.classes[size] = idle[:rest]
		if rest > 0 {
			if d := a.idleTimeout - now.Sub(idle[0].freed); next < 0 || d < next {
				next = d
			}
		}
	}
	if next >= 0 && !a.closed {
		a.timer = time.AfterFunc(next, a.expire)
	}
	a.mu.Unlock()
	for _, r := range old {
		a.released.Add(1)
		r.release()
	}
}

// collect recovers a memory whose Memory became unreachable without Free.
func (a *Allocator) collect(r *region) {
	a.leaked.Add(1)
	a.put(r)
}

// Close releases the idle memories; memories freed later are released
// rather than pooled. Memories in use stay valid.
func (a *Allocator) Close() {
	a.mu.Lock()
	classes := a.classes
	a.classes = make(map[uint64][]*region)
	a.idle = 0
	a.idleBytes = 0
	a.closed = true
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
	a.mu.Unlock()
	for _, idle := range classes {
		for _, r := range idle {
			a.released.Add(1)
			r.release()
		}
	}
}

// Stats returns a snapshot of the counters.
func (a *Allocator) Stats() Stats {
	a.mu.Lock()
	idle, idleBytes := a.idle, a.idleBytes
	a.mu.Unlock()
	return Stats{
		Allocs:    a.allocs.Load(),
		Reuses:    a.reuses.Load(),
		Frees:     a.frees.Load(),
		Released:  a.released.Load(),
		Leaked:    a.leaked.Load(),
		Idle:      idle,
		IdleBytes: idleBytes,
		Live:      a.live.Load(),
	}
}

// Memory is one instance's linear memory (experimental.LinearMemory).
type Memory struct {
	a         *Allocator
	max       uint64
	r         atomic.Pointer[region] // nil once freed
	highWater atomic.Uint64
	cleanup   runtime.Cleanup
}

// Reallocate implements experimental.LinearMemory: it returns the memory
// resized to size bytes with its contents kept and new bytes zero, or nil
// when size exceeds the maximum or the memory cannot grow.
func (m *Memory) Reallocate(size uint64) []byte {
	r := m.r.Load()
	if r == nil || size > m.max {
		return nil
	}
	b := r.grow(size, m.max)
	if b != nil && size > m.highWater.Load() {
		m.highWater.Store(size)
	}
	return b
}

// Free implements experimental.LinearMemory. Calling it again is harmless.
func (m *Memory) Free() {
	r := m.r.Swap(nil)
	if r == nil {
		return
	}
	m.cleanup.Stop()
	m.a.put(r)
}

// HighWater returns the largest size in bytes this memory has had. Linear
// memories never shrink, so it is also the current size; it is safe to call
// from any goroutine, e.g. to retire a pooled instance whose memory grew
// past a mark.
func (m *Memory) HighWater() uint64 {
	return m.highWater.Load()
}

// region is the storage behind a Memory, reused across Memories.
type region struct {
	size   uint64 // class: bytes reserved
	buf    []byte // mmap: the whole reservation; heap: the allocation
	mapped bool
	dirty  uint64 // bytes [0, dirty) may be non-zero
	// resident estimates the bytes kept faulted in while idle: what reset
	// cleared (mapped) or the allocation (heap).
	resident uint64
	vec      []byte    // mincore and pagemap scratch
	freed    time.Time // when it became idle
	snap     *Snapshot // mapped over the region's first bytes (Memory.Restore)
}

// grow returns the first size bytes of the region, growing a heap region
// if needed.
func (r *region) grow(size, maxBytes uint64) []byte {
	if size > r.dirty {
		r.dirty = size
	}
	if size <= uint64(len(r.buf)) {
		return r.buf[:size:size]
	}
	if r.mapped || size > r.size {
		return nil
	}
	n := min(max(size, 2*uint64(len(r.buf))), r.size, maxBytes)
	nb := make([]byte, n)
	copy(nb, r.buf)
	r.buf = nb
	return r.buf[:size:size]
}

// reset zeroes the bytes the last user may have written. It reports false
// when the region should be released rather than reused.
func (r *region) reset(zeroLimit uint64) bool {
	if r.snap != nil && !r.unmapSnapshot() {
		return false
	}
	n := r.dirty
	r.dirty = 0
	switch {
	case r.mapped:
		return n == 0 || r.resetMapped(n, zeroLimit)
	case n > zeroLimit:
		return false // too big to keep: let the garbage collector have it
	default:
		clear(r.buf[:n])
		r.resident = uint64(len(r.buf))
		return true
	}
}

func roundUp(n, to uint64) uint64 {
	return (n + to - 1) / to * to
}
