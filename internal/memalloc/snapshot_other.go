//go:build !linux

package memalloc

func newMappedSnapshot(b []byte) *Snapshot { return nil }

func (s *Snapshot) release() { s.data = nil }

func snapshotResident(s *Snapshot) uint64 { return s.size }

func (r *region) restore(s *Snapshot) error {
	copy(r.buf[:s.size], s.data)
	return nil
}

func (r *region) unmapSnapshot() bool { r.snap = nil; return true }
