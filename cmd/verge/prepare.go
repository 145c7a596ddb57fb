package main

import "github.com/tetratelabs/wazero/experimental"

// defaultAllocator and prepareModule are the runtime's fast-instance hooks;
// see internal/memalloc and internal/wasmbin.
func defaultAllocator() experimental.MemoryAllocator { return nil }

func prepareModule(b []byte) []byte { return b }
