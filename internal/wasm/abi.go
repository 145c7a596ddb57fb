package wasm

import (
	"bytes"
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

// Call is what a host function sees of the request being served: the
// request, the guest's memory during the call, the response being built, and
// the request's last error and kept result. One is kept per instance and
// reset per request, so the warm path allocates nothing for it.
type Call struct {
	mem       api.Memory // the calling instance's memory, set for each host call
	req       *Request
	app       string
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
	kept      *keptResult // see Call.Deliver
	// The last response header list the guest sent and its decoding, kept
	// across requests: a function sends the same headers again and again,
	// and decoding them is a map and two strings per header.
	hdrRaw []byte
	hdr    http.Header
	prep   *snapshotPrep // set while the guest prepares the snapshot
	// values hold capabilities' per-request state, ends their clean-up at
	// the end of the request (see Call.Value, Call.OnEnd).
	values map[any]any
	ends   []func()
	// streaming: the head went to the client (http_resp_flush); body
	// writes go straight through Request.Stream from then on.
	streaming bool
}

func (c *Call) reset(req *Request, app string, bodyLimit int64, log *slog.Logger) {
	if len(c.ends) > 0 {
		for i := len(c.ends) - 1; i >= 0; i-- {
			c.ends[i]()
		}
		c.ends = c.ends[:0]
	}
	if len(c.values) > 0 {
		clear(c.values)
	}
	c.mem = nil
	c.lastErr = ""
	c.kept = nil
	c.req = req
	c.app = app
	c.head = c.head[:0]
	c.bodyOff = 0
	c.status = 0
	c.header = nil
	c.body = nil
	c.bodyLimit = bodyLimit
	c.overflow = false
	c.streaming = false
	c.logged = 0
	c.log = log
}

// hostFunc is the shape of every ABI function: it returns a status code.
type hostFunc = func(ctx context.Context, c *Call, args []uint64) uint32

func i32s(n int) []ValueType {
	t := make([]ValueType, n)
	for i := range t {
		t[i] = I32
	}
	return t
}

// coreFunctions are the host functions every verge-executor guest has: the
// request, the response, logging and the last error. Capabilities (see
// capability.go) add the rest; docs/abi.md describes them all.
var coreFunctions = Capability{Name: "core", Functions: []HostFunction{
	{"log", i32s(3), hostLog},
	{"http_req_head", i32s(4), hostReqHead},
	{"body_read", i32s(4), hostBodyRead},
	{"http_resp_head", i32s(4), hostRespHead},
	{"body_write", i32s(3), hostBodyWrite},
	{"last_error", i32s(3), hostLastError},
	{"http_resp", i32s(6), hostResp},
	{"reseed", i32s(2), hostReseed},
	{"http_resp_flush", i32s(1), hostRespFlush},
}}

// instantiateABI registers the "verge" host module in r: the core functions
// and every capability's.
func (e *Engine) instantiateABI(ctx context.Context, r wazero.Runtime) error {
	b := r.NewHostModuleBuilder(ABIModule)
	for i, f := range e.functions {
		capability := i >= len(coreFunctions.Functions)
		b.NewFunctionBuilder().
			WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
				r := runOf(ctx)
				if r == nil || r.call == nil || (capability && r.call.prep != nil) {
					// Called outside a request, e.g. from _initialize, or
					// a PoP service while the guest prepares its snapshot.
					stack[0] = StatusUnsupported
					return
				}
				r.call.mem = mod.Memory()
				stack[0] = uint64(f.Call(ctx, r.call, stack))
			}), f.Params, i32s(1)).
			Export(f.Name)
	}
	_, err := b.Instantiate(ctx)
	return err
}

// log(level, ptr, len): level 0 debug, 1 info, 2 warn, 3 error.
func hostLog(ctx context.Context, cs *Call, a []uint64) uint32 {
	level, ptr, n := uint32(a[0]), uint32(a[1]), uint32(a[2])
	if level > 3 {
		return StatusInvalid
	}
	msg, ok := cs.Bytes(ptr, n)
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
func hostReqHead(_ context.Context, cs *Call, a []uint64) uint32 {
	if uint32(a[0]) != handleRequest {
		return StatusBadHandle
	}
	if len(cs.head) == 0 {
		cs.head = encodeRequestHead(cs.head, cs.req)
	}
	return cs.Out(cs.head, uint32(a[1]), uint32(a[2]), uint32(a[3]))
}

// body_read(h, buf, cap, n_out): reads up to cap bytes of the request body;
// *n_out = 0 at the end.
func hostBodyRead(_ context.Context, cs *Call, a []uint64) uint32 {
	if uint32(a[0]) != handleRequest {
		return StatusBadHandle
	}
	ptr, capacity, nOut := uint32(a[1]), uint32(a[2]), uint32(a[3])
	if !cs.Writable(nOut, 4) {
		return StatusMemory
	}
	dst, ok := cs.Bytes(ptr, capacity)
	if !ok {
		return StatusMemory
	}
	n := copy(dst, cs.req.Body[cs.bodyOff:])
	cs.bodyOff += n
	cs.PutUint32(nOut, uint32(n))
	return StatusOK
}

// http_resp_head(resp, status, ptr, len): sets the status and headers.
func hostRespHead(_ context.Context, cs *Call, a []uint64) uint32 {
	if uint32(a[0]) != handleResponse {
		return StatusBadHandle
	}
	status := uint32(a[1])
	if status < 100 || status > 999 || cs.streaming {
		return StatusInvalid // or the head went out with the first flush
	}
	buf, ok := cs.Bytes(uint32(a[2]), uint32(a[3]))
	if !ok {
		return StatusMemory
	}
	h, ok := cs.decodeHeaders(buf)
	if !ok {
		return StatusInvalid
	}
	cs.status = int(status)
	cs.header = h
	return StatusOK
}

// decodeHeaders decodes a response header list, or returns the previous
// decoding when the guest sent the same bytes as last time. The map is then
// shared by several responses: Response.Header is read-only.
func (cs *Call) decodeHeaders(buf []byte) (http.Header, bool) {
	if cs.hdr != nil && bytes.Equal(buf, cs.hdrRaw) {
		return cs.hdr, true
	}
	h, ok := decodeHeaders(buf)
	if ok && h != nil {
		cs.hdr, cs.hdrRaw = h, append(cs.hdrRaw[:0], buf...)
	}
	return h, ok
}

// http_resp(resp, status, head_ptr, head_len, body_ptr, body_len): sets
// the status and headers as http_resp_head does and appends the body as
// body_write does, in one call. Everything is checked before anything
// changes.
func hostResp(ctx context.Context, cs *Call, a []uint64) uint32 {
	if uint32(a[0]) != handleResponse {
		return StatusBadHandle
	}
	status := uint32(a[1])
	head, ok1 := cs.Bytes(uint32(a[2]), uint32(a[3]))
	body, ok2 := cs.Bytes(uint32(a[4]), uint32(a[5]))
	if !ok1 || !ok2 {
		return StatusMemory
	}
	if status < 100 || status > 999 {
		return StatusInvalid
	}
	if cs.streaming { // the head went out with the first flush
		return cs.send(ctx, body)
	}
	h, ok := cs.decodeHeaders(head)
	if !ok {
		return StatusInvalid
	}
	if int64(len(cs.body))+int64(len(body)) > cs.bodyLimit {
		cs.overflow = true
		return StatusLimit
	}
	cs.status = int(status)
	cs.header = h
	cs.body = append(cs.body, body...)
	return StatusOK
}

// body_write(h, ptr, len): appends to the response body, all or nothing.
func hostBodyWrite(ctx context.Context, cs *Call, a []uint64) uint32 {
	if uint32(a[0]) != handleResponse {
		return StatusBadHandle
	}
	b, ok := cs.Bytes(uint32(a[1]), uint32(a[2]))
	if !ok {
		return StatusMemory
	}
	if cs.streaming {
		return cs.send(ctx, b)
	}
	if int64(len(cs.body))+int64(len(b)) > cs.bodyLimit {
		cs.overflow = true
		return StatusLimit
	}
	cs.body = append(cs.body, b...)
	return StatusOK
}

// http_resp_flush(resp): sends the head and the body written so far to the
// client now; from then on every body write goes to the client as it comes,
// and the response body limit no longer applies (nothing is held). It
// answers UNSUPPORTED where the response cannot be streamed (a direct call,
// an invocation): the response then stays buffered, as if never flushed.
func hostRespFlush(ctx context.Context, cs *Call, a []uint64) uint32 {
	if uint32(a[0]) != handleResponse {
		return StatusBadHandle
	}
	if cs.req == nil || cs.req.Stream == nil {
		return StatusUnsupported
	}
	if !cs.streaming {
		if cs.status == 0 {
			cs.status = http.StatusOK
		}
		var err error
		blocking(ctx, func(context.Context) { err = cs.req.Stream.Head(cs.status, cs.header) })
		if err != nil {
			return cs.streamFailed(err)
		}
		cs.streaming = true
	}
	body := cs.body
	cs.body = nil
	return cs.send(ctx, body)
}

// send writes p to the client, outside the guest's slot.
func (cs *Call) send(ctx context.Context, p []byte) uint32 {
	if len(p) == 0 {
		return StatusOK
	}
	var err error
	blocking(ctx, func(context.Context) { err = cs.req.Stream.Body(p) })
	if err != nil {
		return cs.streamFailed(err)
	}
	return StatusOK
}

func (cs *Call) streamFailed(err error) uint32 {
	cs.lastErr = "sending the response to the client: " + err.Error()
	return StatusUnavailable
}

// last_error(buf, cap, len_out): the message of the last failed call.
func hostLastError(_ context.Context, cs *Call, a []uint64) uint32 {
	return cs.Out([]byte(cs.lastErr), uint32(a[0]), uint32(a[1]), uint32(a[2]))
}

// Request head encoding (little-endian): u32 field count, then that many
// strings [method, uri, host, remote_addr, request_id]; then u32 header count
// and that many (name, value) string pairs. A string is u32 length + bytes.
// New fields are appended to the first list, so older SDKs skip them.
func encodeRequestHead(dst []byte, r *Request) []byte {
	fields := [...]string{r.Method, r.URI, r.Host, r.RemoteAddr, r.ID}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(fields)))
	for _, f := range fields {
		dst = AppendString(dst, f)
	}
	n := 0
	for _, vs := range r.Header {
		n += len(vs)
	}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(n))
	for k, vs := range r.Header {
		for _, v := range vs {
			dst = AppendString(dst, k)
			dst = AppendString(dst, v)
		}
	}
	return dst
}

// AppendString appends s in the ABI's string encoding: u32 length + bytes.
func AppendString(dst []byte, s string) []byte {
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
		if k, b, ok = takeString(b); !ok || !ValidHeaderName(k) {
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

// ValidHeaderName reports whether s is an HTTP token net/http would send
// as a header name (and a method).
func ValidHeaderName(s string) bool {
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
