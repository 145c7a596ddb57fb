//go:build wasip1

package verge

import "unsafe"

//go:wasmimport verge fetch_open
func hostFetchOpen(backend unsafe.Pointer, backendLen uint32, head unsafe.Pointer, headLen uint32, flags uint32, handleOut unsafe.Pointer) uint32

//go:wasmimport verge fetch_body_write
func hostFetchBodyWrite(h uint32, ptr unsafe.Pointer, n uint32) uint32

//go:wasmimport verge fetch_body_close
func hostFetchBodyClose(h uint32) uint32

//go:wasmimport verge fetch_head
func hostFetchHead(h uint32, buf unsafe.Pointer, capacity uint32, lenOut unsafe.Pointer) uint32

//go:wasmimport verge fetch_body_read
func hostFetchBodyRead(h uint32, buf unsafe.Pointer, capacity uint32, nOut unsafe.Pointer) uint32

//go:wasmimport verge fetch_close
func hostFetchClose(h uint32) uint32

func sysFetchOpen(backend string, head []byte, flags uint32) (h uint32, status uint32) {
	status = hostFetchOpen(sptr(backend), uint32(len(backend)), ptr(head), uint32(len(head)), flags, unsafe.Pointer(&h))
	return h, status
}

func sysFetchBodyWrite(h uint32, b []byte) uint32 {
	return hostFetchBodyWrite(h, ptr(b), uint32(len(b)))
}
func sysFetchBodyClose(h uint32) uint32 { return hostFetchBodyClose(h) }
func sysFetchClose(h uint32) uint32     { return hostFetchClose(h) }

func sysFetchHead(h uint32, buf []byte) (n uint32, status uint32) {
	status = hostFetchHead(h, ptr(buf), uint32(len(buf)), unsafe.Pointer(&n))
	return n, status
}

func sysFetchBodyRead(h uint32, buf []byte) (n uint32, status uint32) {
	status = hostFetchBodyRead(h, ptr(buf), uint32(len(buf)), unsafe.Pointer(&n))
	return n, status
}
