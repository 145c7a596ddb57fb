//go:build wasip1

package verge

import "unsafe"

// The host ABI, module "verge" (docs/abi.md). Every call returns a status.

//go:wasmimport verge log
func hostLog(level uint32, ptr unsafe.Pointer, n uint32) uint32

//go:wasmimport verge http_req_head
func hostReqHead(h uint32, buf unsafe.Pointer, capacity uint32, lenOut unsafe.Pointer) uint32

//go:wasmimport verge body_read
func hostBodyRead(h uint32, buf unsafe.Pointer, capacity uint32, nOut unsafe.Pointer) uint32

//go:wasmimport verge http_resp_head
func hostRespHead(h uint32, status uint32, ptr unsafe.Pointer, n uint32) uint32

//go:wasmimport verge body_write
func hostBodyWrite(h uint32, ptr unsafe.Pointer, n uint32) uint32

//go:wasmimport verge http_resp
func hostResp(h uint32, status uint32, head unsafe.Pointer, headLen uint32, body unsafe.Pointer, bodyLen uint32) uint32

//go:wasmexport verge_handle
func vergeHandle(req, resp uint32) uint32 {
	return serve(req, resp)
}

// Outputs of host calls. Taking the address of a local passed to an import
// makes it escape, one allocation per call; an instance runs one host call
// at a time, so package variables serve every call, read right after it.
var (
	outLen uint32
	outAux uint32
	out64  uint64
)

func ptr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(unsafe.SliceData(b))
}

func sysLog(level uint32, msg string) uint32 {
	return hostLog(level, unsafe.Pointer(unsafe.StringData(msg)), uint32(len(msg)))
}

func sysReqHead(h uint32, buf []byte) (n uint32, status uint32) {
	status = hostReqHead(h, ptr(buf), uint32(len(buf)), unsafe.Pointer(&outLen))
	return outLen, status
}

func sysBodyRead(h uint32, buf []byte) (n uint32, status uint32) {
	status = hostBodyRead(h, ptr(buf), uint32(len(buf)), unsafe.Pointer(&outLen))
	return outLen, status
}

func sysRespHead(h uint32, code int, head []byte) uint32 {
	return hostRespHead(h, uint32(code), ptr(head), uint32(len(head)))
}

func sysBodyWrite(h uint32, b []byte) uint32 {
	return hostBodyWrite(h, ptr(b), uint32(len(b)))
}

func sysResp(h uint32, code int, head, body []byte) uint32 {
	return hostResp(h, uint32(code), ptr(head), uint32(len(head)), ptr(body), uint32(len(body)))
}

//go:wasmimport verge last_error
func hostLastError(buf unsafe.Pointer, capacity uint32, lenOut unsafe.Pointer) uint32

//go:wasmimport verge doc_get
func hostDocGet(coll unsafe.Pointer, collLen uint32, key unsafe.Pointer, keyLen uint32, buf unsafe.Pointer, capacity uint32, lenOut unsafe.Pointer) uint32

//go:wasmimport verge doc_update
func hostDocUpdate(coll unsafe.Pointer, collLen uint32, key unsafe.Pointer, keyLen uint32, ops unsafe.Pointer, opsLen uint32) uint32

//go:wasmimport verge doc_delete
func hostDocDelete(coll unsafe.Pointer, collLen uint32, key unsafe.Pointer, keyLen uint32) uint32

//go:wasmimport verge doc_list
func hostDocList(coll unsafe.Pointer, collLen uint32, after unsafe.Pointer, afterLen uint32, limit uint32, buf unsafe.Pointer, capacity uint32, lenOut unsafe.Pointer) uint32

func sptr(s string) unsafe.Pointer {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Pointer(unsafe.StringData(s))
}

func sysLastError(buf []byte) (n uint32, status uint32) {
	status = hostLastError(ptr(buf), uint32(len(buf)), unsafe.Pointer(&outLen))
	return outLen, status
}

func sysDocGet(coll, key string, buf []byte) (n uint32, status uint32) {
	status = hostDocGet(sptr(coll), uint32(len(coll)), sptr(key), uint32(len(key)), ptr(buf), uint32(len(buf)), unsafe.Pointer(&outLen))
	return outLen, status
}

func sysDocUpdate(coll, key string, ops []byte) uint32 {
	return hostDocUpdate(sptr(coll), uint32(len(coll)), sptr(key), uint32(len(key)), ptr(ops), uint32(len(ops)))
}

func sysDocDelete(coll, key string) uint32 {
	return hostDocDelete(sptr(coll), uint32(len(coll)), sptr(key), uint32(len(key)))
}

func sysDocList(coll, after string, limit int, buf []byte) (n uint32, status uint32) {
	status = hostDocList(sptr(coll), uint32(len(coll)), sptr(after), uint32(len(after)), uint32(limit), ptr(buf), uint32(len(buf)), unsafe.Pointer(&outLen))
	return outLen, status
}

//go:wasmimport verge spot_claim
func hostSpotClaim(ns unsafe.Pointer, nsLen uint32, key unsafe.Pointer, keyLen uint32, owner unsafe.Pointer, ownerLen uint32, buf unsafe.Pointer, capacity uint32, lenOut unsafe.Pointer) uint32

//go:wasmimport verge spot_release
func hostSpotRelease(ns unsafe.Pointer, nsLen uint32, key unsafe.Pointer, keyLen uint32, owner unsafe.Pointer, ownerLen uint32) uint32

//go:wasmimport verge spot_take
func hostSpotTake(name unsafe.Pointer, nameLen uint32, n int64, remainingOut unsafe.Pointer) uint32

//go:wasmimport verge spot_restock
func hostSpotRestock(name unsafe.Pointer, nameLen uint32, n int64, remainingOut unsafe.Pointer) uint32

//go:wasmimport verge spot_counter
func hostSpotCounter(name unsafe.Pointer, nameLen uint32, remainingOut unsafe.Pointer) uint32

//go:wasmimport verge spot_doc_get
func hostSpotDocGet(key unsafe.Pointer, keyLen uint32, buf unsafe.Pointer, capacity uint32, lenOut unsafe.Pointer, revOut unsafe.Pointer) uint32

//go:wasmimport verge spot_doc_update
func hostSpotDocUpdate(key unsafe.Pointer, keyLen uint32, rev uint64, ops unsafe.Pointer, opsLen uint32, buf unsafe.Pointer, capacity uint32, lenOut unsafe.Pointer, revOut unsafe.Pointer) uint32

//go:wasmimport verge invoke
func hostInvoke(fn unsafe.Pointer, fnLen uint32, method unsafe.Pointer, methodLen uint32, path unsafe.Pointer, pathLen uint32, body unsafe.Pointer, bodyLen uint32, buf unsafe.Pointer, capacity uint32, lenOut unsafe.Pointer, statusOut unsafe.Pointer) uint32

func sysSpotClaim(ns, key, owner string, buf []byte) (n uint32, status uint32) {
	status = hostSpotClaim(sptr(ns), uint32(len(ns)), sptr(key), uint32(len(key)), sptr(owner), uint32(len(owner)), ptr(buf), uint32(len(buf)), unsafe.Pointer(&outLen))
	return outLen, status
}

func sysSpotRelease(ns, key, owner string) uint32 {
	return hostSpotRelease(sptr(ns), uint32(len(ns)), sptr(key), uint32(len(key)), sptr(owner), uint32(len(owner)))
}

func sysSpotTake(counter string, n int64) (remaining int64, status uint32) {
	status = hostSpotTake(sptr(counter), uint32(len(counter)), n, unsafe.Pointer(&out64))
	return int64(out64), status
}

func sysSpotRestock(counter string, n int64) (remaining int64, status uint32) {
	status = hostSpotRestock(sptr(counter), uint32(len(counter)), n, unsafe.Pointer(&out64))
	return int64(out64), status
}

func sysSpotCounter(counter string) (remaining int64, status uint32) {
	status = hostSpotCounter(sptr(counter), uint32(len(counter)), unsafe.Pointer(&out64))
	return int64(out64), status
}

func sysSpotDocGet(key string, buf []byte) (n uint32, rev uint64, status uint32) {
	status = hostSpotDocGet(sptr(key), uint32(len(key)), ptr(buf), uint32(len(buf)), unsafe.Pointer(&outLen), unsafe.Pointer(&out64))
	return outLen, out64, status
}

func sysSpotDocUpdate(key string, rev uint64, ops, buf []byte) (n uint32, newRev uint64, status uint32) {
	status = hostSpotDocUpdate(sptr(key), uint32(len(key)), rev, ptr(ops), uint32(len(ops)), ptr(buf), uint32(len(buf)), unsafe.Pointer(&outLen), unsafe.Pointer(&out64))
	return outLen, out64, status
}

func sysInvoke(fn, method, path string, body, buf []byte) (n uint32, httpStatus uint32, status uint32) {
	status = hostInvoke(sptr(fn), uint32(len(fn)), sptr(method), uint32(len(method)), sptr(path), uint32(len(path)), ptr(body), uint32(len(body)), ptr(buf), uint32(len(buf)), unsafe.Pointer(&outLen), unsafe.Pointer(&outAux))
	return outLen, outAux, status
}

//go:wasmimport verge trace_span_start
func hostSpanStart(parent uint32, name unsafe.Pointer, n uint32, hOut unsafe.Pointer) uint32

//go:wasmimport verge trace_span_end
func hostSpanEnd(h uint32) uint32

//go:wasmimport verge trace_span_attr
func hostSpanAttr(h uint32, k unsafe.Pointer, kn uint32, v unsafe.Pointer, vn uint32) uint32

func sysSpanStart(parent uint32, name string) (h uint32, status uint32) {
	status = hostSpanStart(parent, sptr(name), uint32(len(name)), unsafe.Pointer(&h))
	return h, status
}

func sysSpanEnd(h uint32) uint32 { return hostSpanEnd(h) }

func sysSpanAttr(h uint32, k, v string) uint32 {
	return hostSpanAttr(h, sptr(k), uint32(len(k)), sptr(v), uint32(len(v)))
}

//go:wasmimport verge http_resp_flush
func hostRespFlush(h uint32) uint32

func sysRespFlush(h uint32) uint32 { return hostRespFlush(h) }
