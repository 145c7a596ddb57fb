package memalloc

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

const mmapSupported = true

var pageSize = uint64(unix.Getpagesize())

// directClear is the size up to which a freed memory is simply cleared: on a
// 2-core VM, mincore plus madvise cost ~3.5 µs, clearing 256 KiB about as
// much.
const directClear = 256 << 10

// mapRegion reserves size bytes of address space; pages are only backed
// once touched. It returns nil when the kernel refuses.
func mapRegion(size uint64) *region {
	if size == 0 || size > uint64(^uint(0)>>1) {
		return nil
	}
	b, err := unix.Mmap(-1, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil
	}
	return &region{size: size, buf: b, mapped: true}
}

// resetMapped zeroes the first n bytes of a mapping. Only resident pages
// can hold data the next user could see, and only those were touched, so
// mincore tells which pages need work: resident ones are cleared in user
// space (they stay faulted in for the next instance) up to zeroLimit bytes;
// every other page, including ones that may be swapped out, is dropped with
// MADV_DONTNEED and reads as zero when next touched.
func (r *region) resetMapped(n, zeroLimit uint64) bool {
	n = roundUp(n, pageSize)
	if n <= directClear && n <= zeroLimit {
		// Two system calls cost more than clearing a small memory, and
		// pages faulted in once stay so for the next user.
		clear(r.buf[:n])
		r.resident = max(r.resident, n)
		return true
	}
	pages := int(n / pageSize)
	if cap(r.vec) < pages {
		r.vec = make([]byte, pages)
	}
	vec := r.vec[:pages]
	if err := mincore(r.buf[:n], vec); err != nil {
		z := min(n, zeroLimit)
		clear(r.buf[:z])
		r.resident = z
		return z == n || unix.Madvise(r.buf[z:n], unix.MADV_DONTNEED) == nil
	}
	var zeroed uint64
	for i := 0; i < pages; {
		resident := vec[i]&1 != 0
		j := i + 1
		for j < pages && (vec[j]&1 != 0) == resident {
			j++
		}
		run := r.buf[uint64(i)*pageSize : uint64(j)*pageSize]
		if resident && zeroed+uint64(len(run)) <= zeroLimit {
			clear(run)
			zeroed += uint64(len(run))
		} else if unix.Madvise(run, unix.MADV_DONTNEED) != nil {
			return false
		}
		i = j
	}
	r.resident = zeroed
	return true
}

func (r *region) release() {
	if r.mapped {
		// Only fails for a mapping we did not create; nothing to do then.
		_ = unix.Munmap(r.buf)
	}
	r.buf = nil
}

// mincore is missing from x/sys/unix on Linux.
func mincore(b, vec []byte) error {
	_, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)), uintptr(unsafe.Pointer(unsafe.SliceData(vec))))
	if e != 0 {
		return e
	}
	return nil
}
