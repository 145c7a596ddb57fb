package memalloc

import (
	"encoding/binary"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// newMappedSnapshot writes b's non-zero pages to a sealed memfd (zero pages
// stay holes, costing nothing) and maps it read-only; nil if the system
// refuses.
func newMappedSnapshot(b []byte) *Snapshot {
	fd, err := unix.MemfdCreate("verge-snapshot", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	if unix.Ftruncate(fd, int64(len(b))) != nil {
		return nil
	}
	for p := 0; p < len(b); {
		if allZero(b[p : p+int(pageSize)]) {
			p += int(pageSize)
			continue
		}
		q := p + int(pageSize)
		for q < len(b) && !allZero(b[q:q+int(pageSize)]) {
			q += int(pageSize)
		}
		for off := p; off < q; {
			n, err := unix.Pwrite(fd, b[off:q], int64(off))
			if err != nil || n == 0 {
				return nil
			}
			off += n
		}
		p = q
	}
	// The contents never change from here on, whatever a bug elsewhere
	// tries: memories restored from it rely on that.
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SEAL|unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE); err != nil {
		return nil
	}
	data, err := unix.Mmap(fd, 0, len(b), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil
	}
	ok = true
	return &Snapshot{size: uint64(len(b)), data: data, fd: fd}
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func (s *Snapshot) release() {
	if s.fd >= 0 {
		unix.Munmap(s.data)
		unix.Close(s.fd)
	}
	s.data = nil
}

func snapshotResident(s *Snapshot) uint64 {
	var st unix.Stat_t
	if unix.Fstat(s.fd, &st) != nil {
		return s.size
	}
	return uint64(st.Blocks) * 512
}

// pagemap is /proc/self/pagemap, opened once; nil if it cannot be read.
var pagemap = sync.OnceValue(func() *os.File {
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return nil
	}
	var b [8]byte
	if _, err := f.ReadAt(b[:], 0); err != nil {
		f.Close()
		return nil
	}
	return f
})

// Bits of a /proc/self/pagemap entry.
const (
	pmPresent = 1 << 63
	pmSwapped = 1 << 62
	pmFile    = 1 << 61
)

func (r *region) restore(s *Snapshot) error {
	if !r.mapped || s.fd < 0 {
		copy(r.buf[:s.size], s.data)
		return nil
	}
	mem := r.buf[:s.size]
	if r.snap != s {
		// Map the snapshot privately over the memory's first bytes: reads
		// share its pages, the first write to a page copies it.
		_, _, e := unix.Syscall6(unix.SYS_MMAP, uintptr(unsafe.Pointer(unsafe.SliceData(mem))), uintptr(len(mem)),
			unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_FIXED, uintptr(s.fd), 0)
		if e != 0 {
			return e
		}
		r.snap = s
		return nil
	}
	// The pages written since the last restore are the mapping's private
	// ones; a private page may also have been swapped out. Copy those back.
	pm := pagemap()
	if pm != nil && !noPagemapScan.Load() {
		if err := r.restoreScanned(pm, s, mem); err == nil {
			return nil
		}
		noPagemapScan.Store(true) // a kernel before 6.7: read the entries instead
	}
	pages := int(s.size / pageSize)
	if cap(r.vec) < 8*pages {
		r.vec = make([]byte, 8*pages)
	}
	vec := r.vec[:8*pages]
	if pm == nil {
		return unix.Madvise(mem, unix.MADV_DONTNEED) // back to the file's pages
	}
	if _, err := pm.ReadAt(vec, int64(uintptr(unsafe.Pointer(unsafe.SliceData(mem)))/uintptr(pageSize)*8)); err != nil {
		return unix.Madvise(mem, unix.MADV_DONTNEED)
	}
	for i := 0; i < pages; i++ {
		e := binary.LittleEndian.Uint64(vec[8*i:])
		if e&pmSwapped != 0 || (e&pmPresent != 0 && e&pmFile == 0) {
			j := i + 1
			for j < pages {
				e := binary.LittleEndian.Uint64(vec[8*j:])
				if !(e&pmSwapped != 0 || (e&pmPresent != 0 && e&pmFile == 0)) {
					break
				}
				j++
			}
			off, end := uint64(i)*pageSize, uint64(j)*pageSize
			copy(mem[off:end], s.data[off:end])
			i = j
		}
	}
	return nil
}

// PAGEMAP_SCAN (Linux 6.7) asks the kernel for the ranges of pages in a
// category rather than reading every page's entry: 2–4 µs where reading
// the entries of a 4 MiB memory costs ~7 µs, plus decoding them.
const (
	ioctlPagemapScan = 0xC0606610 // _IOWR('f', 16, struct pm_scan_arg)
	pageIsFile       = 1 << 2
	pageIsPresent    = 1 << 3
	pageIsSwapped    = 1 << 4
)

// pmScanArg is the kernel's struct pm_scan_arg.
type pmScanArg struct {
	size, flags, start, end, walkEnd, vec, vecLen, maxPages   uint64
	categoryInverted, categoryMask, categoryAnyOf, returnMask uint64
}

// pageRegion is the kernel's struct page_region: [start, end) addresses.
type pageRegion struct{ start, end, categories uint64 }

// noPagemapScan is set once PAGEMAP_SCAN failed: the kernel lacks it.
var noPagemapScan atomic.Bool

// restoreScanned copies back the pages PAGEMAP_SCAN lists as written since
// the last restore: those not of the file (the mapping's private copies),
// present or swapped out, as restore's entries say.
func (r *region) restoreScanned(pm *os.File, s *Snapshot, mem []byte) error {
	const vecLen = 64
	if cap(r.vec) < vecLen*int(unsafe.Sizeof(pageRegion{})) {
		r.vec = make([]byte, vecLen*int(unsafe.Sizeof(pageRegion{})))
	}
	vec := unsafe.Slice((*pageRegion)(unsafe.Pointer(unsafe.SliceData(r.vec))), vecLen)
	base := uint64(uintptr(unsafe.Pointer(unsafe.SliceData(mem))))
	arg := pmScanArg{
		size: uint64(unsafe.Sizeof(pmScanArg{})), start: base, end: base + uint64(len(mem)),
		vec: uint64(uintptr(unsafe.Pointer(&vec[0]))), vecLen: vecLen,
		categoryInverted: pageIsFile, categoryMask: pageIsFile,
		categoryAnyOf: pageIsPresent | pageIsSwapped, returnMask: pageIsPresent | pageIsSwapped,
	}
	for arg.start < arg.end {
		n, _, e := unix.Syscall(unix.SYS_IOCTL, pm.Fd(), ioctlPagemapScan, uintptr(unsafe.Pointer(&arg)))
		runtime.KeepAlive(vec)
		if e != 0 {
			return e
		}
		for _, pr := range vec[:n] {
			off, end := pr.start-base, pr.end-base
			copy(mem[off:end], s.data[off:end])
		}
		if int(n) < vecLen || arg.walkEnd <= arg.start {
			break
		}
		arg.start = arg.walkEnd // the vector filled up: go on from where the walk stopped
	}
	return nil
}

// unmapSnapshot replaces a snapshot mapping by fresh anonymous memory (zero,
// not resident) before the region is reused.
func (r *region) unmapSnapshot() bool {
	n := max(r.snap.size, roundUp(r.dirty, pageSize))
	_, _, e := unix.Syscall6(unix.SYS_MMAP, uintptr(unsafe.Pointer(unsafe.SliceData(r.buf))), uintptr(n),
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED|unix.MAP_NORESERVE, ^uintptr(0), 0)
	r.snap = nil
	r.dirty = 0
	r.resident = 0
	return e == 0
}
