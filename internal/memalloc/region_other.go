//go:build !linux

package memalloc

// Outside Linux, memories come from the Go heap: MADV_DONTNEED does not
// guarantee zeroed pages everywhere, and this package only needs to be fast
// where Verge runs in production.
const mmapSupported = false

const pageSize = 4096

func mapRegion(size uint64) *region { return nil }

func (r *region) resetMapped(n, zeroLimit uint64) bool { return false }

func (r *region) release() { r.buf = nil }
