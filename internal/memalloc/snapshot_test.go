package memalloc

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

func snapshotBytes(pages int) []byte {
	b := make([]byte, pages*wasmPage)
	// every other 4 KiB page holds data, the rest is zero
	for p := 0; p < len(b); p += 8192 {
		for i := p; i < p+4096; i++ {
			b[i] = byte(i*7 + 1)
		}
	}
	return b
}

// A restored memory reads as the snapshot, again after any writes, and
// anything that grew past it cannot be restored.
func TestRestoreFromSnapshot(t *testing.T) {
	configs(t, func(t *testing.T, cfg Config) {
		a := New(cfg)
		defer a.Close()
		want := snapshotBytes(4)
		s, err := NewSnapshot(want)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if !bytes.Equal(s.Bytes(), want) {
			t.Fatal("the snapshot's bytes differ from what it was made of")
		}
		m := a.Allocate(wasmPage, 16*wasmPage).(*Memory)
		if err := m.Restore(s); !errors.Is(err, ErrSnapshotSize) {
			t.Fatalf("restore into a smaller memory: %v, want ErrSnapshotSize", err)
		}
		b := m.Reallocate(s.Size())
		fill(b, 0xee)
		rng := rand.New(rand.NewPCG(1, 2))
		for round := 0; round < 20; round++ {
			if err := m.Restore(s); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, want) {
				t.Fatalf("round %d: the restored memory differs from the snapshot", round)
			}
			for i := 0; i < 1+round; i++ { // scribble over a few pages
				p := rng.IntN(len(b))
				b[p] ^= 0xff
			}
		}
		if b = m.Reallocate(s.Size() + wasmPage); b == nil {
			t.Fatal("could not grow")
		}
		if err := m.Restore(s); !errors.Is(err, ErrSnapshotSize) {
			t.Fatalf("restore of a memory that grew: %v, want ErrSnapshotSize", err)
		}
		m.Free()
		// The region goes back to the pool: the next memory is zero.
		m2 := a.Allocate(wasmPage, 16*wasmPage)
		requireZero(t, m2.Reallocate(8*wasmPage))
		m2.Free()
	})
}

// Two memories restored from one snapshot never see each other's writes.
func TestSnapshotMemoriesAreIndependent(t *testing.T) {
	configs(t, func(t *testing.T, cfg Config) {
		a := New(cfg)
		defer a.Close()
		want := snapshotBytes(2)
		s, err := NewSnapshot(want)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var bs [2][]byte
		for i := range bs {
			m := a.Allocate(wasmPage, 16*wasmPage).(*Memory)
			defer m.Free()
			bs[i] = m.Reallocate(s.Size())
			if err := m.Restore(s); err != nil {
				t.Fatal(err)
			}
		}
		fill(bs[0][:8192], 0x11)
		if !bytes.Equal(bs[1], want) || !bytes.Equal(s.Bytes(), want) {
			t.Fatal("a write to one restored memory shows in the other or in the snapshot")
		}
	})
}

// The snapshot keeps only its non-zero pages.
func TestSnapshotIsSparse(t *testing.T) {
	b := snapshotBytes(16) // 1 MiB, half zero
	s, err := NewSnapshot(b)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !mmapSupported {
		t.Skip("no memfd here")
	}
	if r := s.Resident(); r > uint64(len(b))/2+pageSize {
		t.Fatalf("the snapshot keeps %d bytes of %d, of which half are zero", r, len(b))
	}
}
