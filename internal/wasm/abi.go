package wasm

import (
	"context"
	"encoding/binary"
	"log/slog"
	"net/http"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// Status codes returned by every host function of the "verge" module. They are
// part of the ABI (docs/abi.md): never renumber, only append.
const (
	StatusOK          = 0
	StatusInvalid     = 1  // malformed argument
	StatusMemory      = 2  // a pointer/length pair falls outside guest memory
	StatusTooSmall    = 3  // output buffer too small; required length written to *len_out
	StatusBadHandle   = 4  // unknown handle, or a handle of the wrong kind
	StatusNotFound    = 5  // the named thing does not exist
	StatusLimit       = 6  // a limit was reached (body size, log volume, ...)
	StatusUnsupported = 7  // not implemented by this host
	StatusUnavailable = 8  // a dependency (the central PoP, a peer) cannot be reached
	StatusConflict    = 9  // a condition failed (a claim is taken, a revision moved)
	StatusInternal    = 10 // the host failed; the guest may retry
	StatusUnknown     = 11 // a change was sent to the central PoP and no answer came: it may or may not be applied
)

// Handles of the incoming request and its response, passed to verge_handle.
// Handle 0 is never valid, so an uninitialised guest variable cannot alias one.
const (
	handleRequest  = 1
	handleResponse = 2
)

// ABIModule is the import module name of Verge's host ABI.
const ABIModule = "verge"

// HandleExport is the export a verge-executor module provides:
// verge_handle(req, resp i32) -> i32.
const HandleExport = "verge_handle"

const (
	maxLogLine       = 4 << 10
	maxLogPerRequest = 64 << 10
)

// callState is what host functions see of the request being served. One is
// kept per instance and reset per request, so the warm path allocates nothing
// for it.
type callState struct {
	req       *Request
	head      []byte // encoded request head, built lazily
	bodyOff   int
	status    int
	header    http.Header
	body      []byte
	bodyLimit int64
	overflow  bool // the guest tried to write past the response body limit
	logged    int
	log       *slog.Logger
	lastErr   string
	app       string
	docs      Documents
	spot      Spot
	invoker   Invoker
	kept      *keptResult // see keep
}

func (c *callState) reset(req *Request, bodyLimit int64, log *slog.Logger) {
	c.lastErr = ""
	c.kept = nil
	c.req = req
	c.head = c.head[:0]
	c.bodyOff = 0
	c.status = 0
	c.header = nil
	c.body = nil
	c.bodyLimit = bodyLimit
	c.overflow = false
	c.logged = 0
	c.log = log
}

// hostFunc is the shape of every ABI function: it returns a status code.
type hostFunc func(ctx context.Context, m api.Memory, cs *callState, args []uint64) uint32

func i32s(n int) []api.ValueType {
	t := make([]api.ValueType, n)
	for i := range t {
		t[i] = api.ValueTypeI32
	}
	return t
}

// abiFunctions lists the host functions with their parameter types; every
// result is an i32 status. Adding a function here is the only step to export
// it; docs/abi.md must describe it.
var abiFunctions = []struct {
	name   string
	params []api.ValueType
	fn     hostFunc
}{
	{"log", i32s(3), hostLog},
	{"http_req_head", i32s(4), hostReqHead},
	{"body_read", i32s(4), hostBodyRead},
	{"http_resp_head", i32s(4), hostRespHead},
	{"body_write", i32s(3), hostBodyWrite},
	{"last_error", i32s(3), hostLastError},
	{"doc_get", i32s(7), hostDocGet},
	{"doc_update", i32s(6), hostDocUpdate},
	{"doc_delete", i32s(4), hostDocDelete},
	{"doc_list", i32s(8), hostDocList},
	{"spot_claim", i32s(9), hostSpotClaim},
	{"spot_release", i32s(6), hostSpotRelease},
	{"spot_take", params(i32, i32, i64, i32), hostSpotTake},
	{"spot_restock", params(i32, i32, i64, i32), hostSpotRestock},
	{"spot_counter", i32s(3), hostSpotCounter},
	{"spot_doc_get", i32s(6), hostSpotDocGet},
	{"spot_doc_update", params(i32, i32, i64, i32, i32, i32, i32, i32, i32), hostSpotDocUpdate},
	{"invoke", i32s(12), hostInvoke},
}

const (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

func params(t ...api.ValueType) []api.ValueType { return t }

// instantiateABI registers the "verge" host module in r.
func instantiateABI(ctx context.Context, r wazero.Runtime) error {
	b := r.NewHostModuleBuilder(ABIModule)
	for _, f := range abiFunctions {
		b.NewFunctionBuilder().
			WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
				r := runOf(ctx)
				if r == nil || r.cs == nil {
					// Called outside a request, e.g. from _initialize.
					stack[0] = StatusUnsupported
					return
				}
				stack[0] = uint64(f.fn(ctx, mod.Memory(), r.cs, stack))
			}), f.params, i32s(1)).
			Export(f.name)
	}
	_, err := b.Instantiate(ctx)
	return err
}

// read returns the guest bytes [ptr, ptr+n) without copying, or ok=false when
// any of it lies outside memory. The view is valid only during the host call.
func read(m api.Memory, ptr, n uint32) ([]byte, bool) {
	if m == nil {
		return nil, false
	}
	return m.Read(ptr, n)
}

// writeOut copies src to the guest buffer (ptr, cap) and its length to
// *lenOut. When the buffer is too small it writes only the required length and
// returns StatusTooSmall, so a guest can size its buffer and call again.
func writeOut(m api.Memory, src []byte, ptr, capacity, lenOut uint32) uint32 {
	if _, ok := read(m, lenOut, 4); !ok {
		return StatusMemory
	}
	if uint64(len(src)) > uint64(capacity) {
		m.WriteUint32Le(lenOut, uint32(len(src)))
		return StatusTooSmall
	}
	if _, ok := read(m, ptr, capacity); !ok {
		return StatusMemory
	}
	m.Write(ptr, src)
	m.WriteUint32Le(lenOut, uint32(len(src)))
	return StatusOK
}

// log(level, ptr, len): level 0 debug, 1 info, 2 warn, 3 error.
func hostLog(ctx context.Context, m api.Memory, cs *callState, a []uint64) uint32 {
	level, ptr, n := uint32(a[0]), uint32(a[1]), uint32(a[2])
	if level > 3 {
		return StatusInvalid
	}
	msg, ok := read(m, ptr, n)
	if !ok {
		return StatusMemory
	}
	if cs.logged+len(msg) > maxLogPerRequest {
		return StatusLimit
	}
	cs.logged += len(msg)
	if len(msg) > maxLogLine {
		msg = msg[:maxLogLine]
	}
	if cs.log != nil {
		cs.log.Log(ctx, slog.Level((int(level)-1)*4), string(msg), "source", "guest", "request_id", cs.req.ID)
	}
	return StatusOK
}

// http_req_head(req, buf, cap, len_out): the request head, encoded as
// documented in docs/abi.md.
func hostReqHead(_ context.Context, m api.Memory, cs *callState, a []uint64) uint32 {
	if uint32(a[0]) != handleRequest {
		return StatusBadHandle
	}
	if len(cs.head) == 0 {
		cs.head = encodeRequestHead(cs.head, cs.req)
	}
	return writeOut(m, cs.head, uint32(a[1]), uint32(a[2]), uint32(a[3]))
}

// body_read(h, buf, cap, n_out): reads up to cap bytes of the request body;
// *n_out = 0 at the end.
func hostBodyRead(_ context.Context, m api.Memory, cs *callState, a []uint64) uint32 {
	if uint32(a[0]) != handleRequest {
		return StatusBadHandle
	}
	ptr, capacity, nOut := uint32(a[1]), uint32(a[2]), uint32(a[3])
	if _, ok := read(m, nOut, 4); !ok {
		return StatusMemory
	}
	dst, ok := read(m, ptr, capacity)
	if !ok {
		return StatusMemory
	}
	n := copy(dst, cs.req.Body[cs.bodyOff:])
	cs.bodyOff += n
	m.WriteUint32Le(nOut, uint32(n))
	return StatusOK
}

// http_resp_head(resp, status, ptr, len): sets the status and headers.
func hostRespHead(_ context.Context, m api.Memory, cs *callState, a []uint64) uint32 {
	if uint32(a[0]) != handleResponse {
		return StatusBadHandle
	}
	status := uint32(a[1])
	if status < 100 || status > 999 {
		return StatusInvalid
	}
	buf, ok := read(m, uint32(a[2]), uint32(a[3]))
	if !ok {
		return StatusMemory
	}
	h, ok := decodeHeaders(buf)
	if !ok {
		return StatusInvalid
	}
	cs.status = int(status)
	cs.header = h
	return StatusOK
}

// body_write(h, ptr, len): appends to the response body, all or nothing.
func hostBodyWrite(_ context.Context, m api.Memory, cs *callState, a []uint64) uint32 {
	if uint32(a[0]) != handleResponse {
		return StatusBadHandle
	}
	b, ok := read(m, uint32(a[1]), uint32(a[2]))
	if !ok {
		return StatusMemory
	}
	if int64(len(cs.body))+int64(len(b)) > cs.bodyLimit {
		cs.overflow = true
		return StatusLimit
	}
	cs.body = append(cs.body, b...)
	return StatusOK
}

// Request head encoding (little-endian): u32 field count, then that many
// strings [method, uri, host, remote_addr, request_id]; then u32 header count
// and that many (name, value) string pairs. A string is u32 length + bytes.
// New fields are appended to the first list, so older SDKs skip them.
func encodeRequestHead(dst []byte, r *Request) []byte {
	fields := [...]string{r.Method, r.URI, r.Host, r.RemoteAddr, r.ID}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(fields)))
	for _, f := range fields {
		dst = appendString(dst, f)
	}
	n := 0
	for _, vs := range r.Header {
		n += len(vs)
	}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(n))
	for k, vs := range r.Header {
		for _, v := range vs {
			dst = appendString(dst, k)
			dst = appendString(dst, v)
		}
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}

// decodeHeaders parses u32 count + (name, value) pairs, rejecting anything
// malformed or any name/value net/http would refuse to send.
func decodeHeaders(b []byte) (http.Header, bool) {
	if len(b) < 4 {
		return nil, len(b) == 0
	}
	n := binary.LittleEndian.Uint32(b)
	b = b[4:]
	if uint64(n)*8 > uint64(len(b)) {
		return nil, false
	}
	h := make(http.Header, n)
	for i := uint32(0); i < n; i++ {
		var k, v string
		var ok bool
		if k, b, ok = takeString(b); !ok || !validHeaderName(k) {
			return nil, false
		}
		if v, b, ok = takeString(b); !ok || !validHeaderValue(v) {
			return nil, false
		}
		h[http.CanonicalHeaderKey(k)] = append(h[http.CanonicalHeaderKey(k)], v)
	}
	return h, len(b) == 0
}

func takeString(b []byte) (string, []byte, bool) {
	if len(b) < 4 {
		return "", nil, false
	}
	n := binary.LittleEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) {
		return "", nil, false
	}
	return string(b[4 : 4+n]), b[4+n:], true
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == ':' {
			return false
		}
	}
	return true
}

func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
