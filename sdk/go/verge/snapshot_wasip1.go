//go:build wasip1

package verge

import "unsafe"

// A host may run this instance's initialisation once and restore every
// later instance from a copy of its memory (a snapshot, docs/abi.md). The
// Go runtime seeds its random generator (math/rand, map seeds) during
// initialisation, so without help every restored instance would draw the
// same numbers. Before it takes the snapshot the host calls
// verge_snapshot, which finds the runtime generator's state in memory and
// registers it with the reseed call: the host then refills it with fresh
// random bytes in every instance it restores.

//go:wasmimport verge reseed
func hostReseed(ptr unsafe.Pointer, n uint32) uint32

//go:linkname runtimeRand runtime.rand
func runtimeRand() uint64

//go:wasmexport verge_snapshot
func vergeSnapshot() uint32 {
	warmUp()
	if base, ok := findRuntimeRand(); ok {
		// The generator's 32 buffered outputs and its 4-word key.
		hostReseed(at(base), chachaSeeded)
	}
	return 0
}

// chachaSeeded is the size of the buffer and key of the runtime's
// internal/chacha8rand.State; its position, the size of the buffer and its
// counter follow them (uint32 each).
const chachaSeeded = 32*8 + 4*8

// anchor is a heap object: all memory below its address exists, and the
// runtime's globals (the generator of m0) lie below the heap.
var anchor = new([16]byte)

// findRuntimeRand returns the address of the generator that runtime.rand
// reads. Three consecutive outputs appear consecutively in its buffer, and
// after them its position counts them; nothing else in memory looks so.
func findRuntimeRand() (uintptr, bool) {
	end := uintptr(unsafe.Pointer(anchor))
	load := func(a uintptr) uint64 { return *(*uint64)(at(a)) }
	load32 := func(a uintptr) uint32 { return *(*uint32)(at(a)) }
	for attempt := 0; attempt < 4; attempt++ { // a refill between two draws breaks the run
		x0, x1, x2 := runtimeRand(), runtimeRand(), runtimeRand()
		for a := uintptr(8); a+24 <= end; a += 8 {
			if load(a) != x0 || load(a+8) != x1 || load(a+16) != x2 {
				continue
			}
			for k := uintptr(0); k+3 <= 32 && k*8 <= a; k++ {
				base := a - 8*k // x0 was buf[k]
				if base+chachaSeeded+8 > end {
					continue
				}
				i, n := load32(base+chachaSeeded), load32(base+chachaSeeded+4)
				if uintptr(i) == k+3 && (n == 32 || n == 28) {
					return base, true
				}
			}
		}
	}
	return 0, false
}

// at is the linear-memory address a as a pointer: in a Wasm guest an
// address is an offset into linear memory, all of which below the heap
// exists.
func at(a uintptr) unsafe.Pointer {
	p := unsafe.Pointer(anchor)
	return unsafe.Add(p, int(a)-int(uintptr(p)))
}
