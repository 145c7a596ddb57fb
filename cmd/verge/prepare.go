package main

import (
	"github.com/tetratelabs/wazero/experimental"

	"github.com/verge-edge/verge/internal/memalloc"
	"github.com/verge-edge/verge/internal/wasmbin"
)

// defaultAllocator backs guest memories with pooled, pre-faulted regions:
// most of a fresh instance's cost is getting and zeroing its memory.
func defaultAllocator() experimental.MemoryAllocator { return memalloc.New(memalloc.Config{}) }

// prepareModule folds a module's data segments into few large ones (a Go
// guest has tens of thousands), so instantiation copies memory in a few
// calls. A module it cannot improve is returned as it is, and wazero then
// reports what is wrong with it.
func prepareModule(b []byte) []byte {
	merged, _, err := wasmbin.MergeDataSegments(b)
	if err != nil {
		return b
	}
	return merged
}
