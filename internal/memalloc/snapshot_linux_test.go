package memalloc

import (
	"bytes"
	"testing"
)

// Both ways of finding the written pages, PAGEMAP_SCAN and reading every
// page's entry, restore every page written, however many ranges they
// make (more than the scan's vector holds at once).
func TestRestoreFindsWrittenPages(t *testing.T) {
	a := New(Config{})
	defer a.Close()
	want := snapshotBytes(16) // 1 MiB: 256 pages
	s, err := NewSnapshot(want)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := a.Allocate(s.Size(), 16*wasmPage).(*Memory)
	defer m.Free()
	b := m.Reallocate(s.Size())
	if err := m.Restore(s); err != nil { // maps the snapshot
		t.Fatal(err)
	}
	for _, scan := range []bool{true, false} {
		noPagemapScan.Store(!scan)
		for _, stride := range []int{1, 2, 3, 7} { // every page, every other (128 ranges), ...
			for p := 0; p < len(b); p += stride * int(pageSize) {
				b[p+int(pageSize)/2] ^= 0x5a
			}
			if err := m.Restore(s); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, want) {
				t.Fatalf("scan %v, every %d pages written: the restored memory differs from the snapshot", scan, stride)
			}
			if scan && noPagemapScan.Load() {
				t.Log("this kernel has no PAGEMAP_SCAN: restores read the entries")
			}
		}
	}
	noPagemapScan.Store(false)
}
