package memalloc

import (
	"errors"
	"sync"
)

// Snapshot is the contents of a linear memory, taken once and shared by
// every memory restored from it (Memory.Restore).
//
// On Linux the bytes live in a sealed memfd: a memory restored from the
// snapshot maps it privately over its first Size bytes, so instances share
// the pages they only read, and a page is copied (by the kernel) the first
// time an instance writes it. Restoring that memory again copies back only
// the pages written since, found in /proc/self/pagemap: they are the
// mapping's private pages. Elsewhere a restore copies the whole snapshot.
type Snapshot struct {
	size uint64
	data []byte // the bytes: a read-only shared mapping of fd, or a heap copy
	fd   int    // -1 without a memfd
	once sync.Once
}

// ErrSnapshotSize is a restore into a memory whose length is not the
// snapshot's: the caller grows the memory first, and a memory that grew
// past the snapshot cannot shrink back.
var ErrSnapshotSize = errors.New("memalloc: memory and snapshot differ in size")

// NewSnapshot keeps a copy of b, a memory's contents; its length must be a
// multiple of the system page size (a Wasm page is).
func NewSnapshot(b []byte) (*Snapshot, error) {
	if uint64(len(b))%pageSize != 0 {
		return nil, errors.New("memalloc: snapshot length is not a multiple of the page size")
	}
	if s := newMappedSnapshot(b); s != nil {
		return s, nil
	}
	return &Snapshot{size: uint64(len(b)), data: append([]byte(nil), b...), fd: -1}, nil
}

// Size is the length of the memory the snapshot holds.
func (s *Snapshot) Size() uint64 { return s.size }

// Bytes are the snapshot's contents; they must not be modified.
func (s *Snapshot) Bytes() []byte { return s.data }

// Resident is what the snapshot keeps in memory: its non-zero pages where
// they live in a memfd, all of it otherwise.
func (s *Snapshot) Resident() uint64 {
	if s.fd < 0 {
		return s.size
	}
	return snapshotResident(s)
}

// Close releases the snapshot. Memories restored from it keep their
// contents (the kernel keeps the file while it is mapped), but must not be
// restored from it again.
func (s *Snapshot) Close() {
	s.once.Do(func() { s.release() })
}

// Restore makes the memory's contents the snapshot's. The memory's length
// must be the snapshot's Size (ErrSnapshotSize otherwise). The first
// restore from a snapshot maps it; later ones copy back the pages written
// since.
func (m *Memory) Restore(s *Snapshot) error {
	r := m.r.Load()
	if r == nil {
		return errors.New("memalloc: restore of a freed memory")
	}
	if m.highWater.Load() != s.size {
		return ErrSnapshotSize
	}
	return r.restore(s)
}
