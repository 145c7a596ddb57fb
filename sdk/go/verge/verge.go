// Package verge is the Go SDK for Verge functions. A function registers a
// handler in an init function and is built as a WebAssembly reactor:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o app.wasm .
//
//	func init() {
//		verge.HandleFunc(func(w verge.ResponseWriter, r *verge.Request) {
//			w.Header().Set("Content-Type", "text/plain")
//			fmt.Fprintf(w, "hello from %s\n", r.URL.Path)
//		})
//	}
//
//	func main() {} // not called in a reactor; required by the go tool
//
// The API mirrors net/http so handlers read like ordinary Go, without pulling
// net/http's weight into the module. Each instance serves one request at a
// time, so handlers need no locking for per-instance state.
package verge

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"unsafe"
)

// Status codes of the host ABI (docs/abi.md).
const (
	statusOK          = 0
	statusInvalid     = 1
	statusMemory      = 2
	statusTooSmall    = 3
	statusBadHandle   = 4
	statusNotFound    = 5
	statusLimit       = 6
	statusUnsupported = 7
	statusUnavailable = 8
	statusConflict    = 9
	statusInternal    = 10
	statusUnknown     = 11 // UNKNOWN_OUTCOME
)

var statusText = [...]string{"ok", "invalid argument", "pointer out of bounds", "buffer too small",
	"bad handle", "not found", "limit reached", "not supported by this host", "unavailable",
	"conflict", "host internal error", "outcome unknown"}

// HostError is a non-zero status from a host call.
type HostError struct {
	Call   string
	Status uint32
	Msg    string // the host's explanation, when it gave one
}

func (e *HostError) Error() string {
	s := "status " + strconv.Itoa(int(e.Status))
	if int(e.Status) < len(statusText) {
		s = statusText[e.Status]
	}
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	return "verge: " + e.Call + ": " + s
}

// Sentinels matched (errors.Is) by the host errors of the same status.
var (
	// ErrLimit: a limit was reached (response body size, log volume, ...).
	ErrLimit = errors.New("verge: limit reached")
	// ErrUnavailable: the central PoP (or another PoP) could not be reached
	// in time; retry later. It also matches errors that are
	// ErrUnknownOutcome.
	ErrUnavailable = errors.New("verge: unavailable")
	// ErrUnknownOutcome: a change reached for the central PoP and no answer
	// came back in time, so it may or may not have been applied. Read the
	// state (Stock, CentralDoc) before retrying a change that must not
	// happen twice; a claim is always safe to retry.
	ErrUnknownOutcome = errors.New("verge: outcome unknown")
	// ErrConflict: a condition failed, e.g. a central document moved to
	// another revision.
	ErrConflict = errors.New("verge: conflict")
)

func (e *HostError) Is(target error) bool {
	switch target {
	case ErrLimit:
		return e.Status == statusLimit
	case ErrUnavailable:
		return e.Status == statusUnavailable || e.Status == statusUnknown
	case ErrUnknownOutcome:
		return e.Status == statusUnknown
	case ErrConflict:
		return e.Status == statusConflict
	case ErrNotFound:
		return e.Status == statusNotFound
	}
	return false
}

func hostErr(call string, st uint32) error {
	if st == statusOK {
		return nil
	}
	return &HostError{Call: call, Status: st}
}

// Header is a response or request header map, keyed by canonical names
// (e.g. "Content-Type").
type Header map[string][]string

// Get returns the first value of key.
func (h Header) Get(key string) string {
	if v := h[CanonicalHeaderKey(key)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Set replaces the values of key.
func (h Header) Set(key, value string) { h[CanonicalHeaderKey(key)] = []string{value} }

// Add appends a value to key.
func (h Header) Add(key, value string) {
	k := CanonicalHeaderKey(key)
	h[k] = append(h[k], value)
}

// Del removes key.
func (h Header) Del(key string) { delete(h, CanonicalHeaderKey(key)) }

// CanonicalHeaderKey returns the canonical form of a header name, as
// net/http's: the first letter and each letter after a hyphen upper case.
func CanonicalHeaderKey(s string) string {
	upper := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (upper && 'a' <= c && c <= 'z') || (!upper && 'A' <= c && c <= 'Z') {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				c := b[j]
				if upper && 'a' <= c && c <= 'z' {
					b[j] = c - 'a' + 'A'
				} else if !upper && 'A' <= c && c <= 'Z' {
					b[j] = c - 'A' + 'a'
				}
				upper = c == '-'
			}
			return string(b)
		}
		upper = c == '-'
	}
	return s
}

// Request is an incoming HTTP request. As with net/http, a handler must not
// keep the request, its header or its body after it returns: the SDK reuses
// them for the next request to keep the warm path free of garbage.
type Request struct {
	Method     string
	URL        *url.URL
	RequestURI string
	Host       string
	RemoteAddr string
	ID         string // the request id Verge logs and returns in X-Verge-Request-Id
	Header     Header
	Body       io.Reader
}

// ResponseWriter builds the response, like net/http's.
type ResponseWriter interface {
	Header() Header
	Write([]byte) (int, error)
	WriteHeader(statusCode int)
}

// Flusher is implemented by the ResponseWriter a handler gets, as in
// net/http: Flush sends the head and what was written so far to the client
// now, and every later write goes out as it comes (no Content-Length; the
// body is not held in the PoP). Where the host cannot stream the response
// (a central function called by invoke), Flush does nothing and the
// response is sent whole at the end.
type Flusher interface {
	Flush()
}

// Handler responds to a request.
type Handler interface {
	ServeHTTP(ResponseWriter, *Request)
}

// HandlerFunc adapts a function to a Handler.
type HandlerFunc func(ResponseWriter, *Request)

// ServeHTTP calls f(w, r).
func (f HandlerFunc) ServeHTTP(w ResponseWriter, r *Request) { f(w, r) }

var handler Handler

// Handle registers the function's handler. Call it from an init function.
func Handle(h Handler) { handler = h }

// HandleFunc registers f as the function's handler.
func HandleFunc(f func(ResponseWriter, *Request)) { handler = HandlerFunc(f) }

// Log levels.
const (
	LevelDebug = 0
	LevelInfo  = 1
	LevelWarn  = 2
	LevelError = 3
)

// Log writes a line to the function's log, tagged with the request id.
func Log(level int, msg string) error { return hostErr("log", sysLog(uint32(level), msg)) }

// Logf formats and logs at info level.
func Logf(format string, args ...any) { Log(LevelInfo, fmt.Sprintf(format, args...)) }

// Per-instance state, reused across requests: an instance serves one
// request at a time, and every allocation costs about a microsecond in a Go
// Wasm guest, several times a host call.
var (
	rw      responseWriter
	curReq  Request
	curURL  url.URL
	curBody body
	// hdrVals backs the request header's values: one slice element per
	// header line instead of one allocation each.
	hdrVals []string
	// arena receives request heads. Every string of a request (method,
	// path, header values...) points into it, so decoding allocates
	// nothing; bytes the host wrote are never written again, so those
	// strings stay valid (and immutable) even if a handler keeps one. A new
	// arena is allocated when the free part is too small for a head.
	arena []byte
)

// arenaChunk is the size of a head arena: some fifty heads of a typical
// request, so the warm path allocates once every many requests.
const arenaChunk = 4096

func serve(reqH, respH uint32) (rc uint32) {
	req, err := readRequest(reqH)
	if err != nil {
		Log(LevelError, "verge sdk: "+err.Error())
		return 1
	}
	rw.reset(respH)
	if !runHandler(req) {
		return 2
	}
	if err := rw.finish(); err != nil {
		Log(LevelError, "verge sdk: "+err.Error())
		return 3
	}
	return 0
}

// warmUp does once, before a host snapshots the instance, what the first
// requests of a fresh instance would otherwise do each time when every
// request runs on an instance restored from that snapshot: it sizes the
// SDK's buffers and maps, and gives the allocator a span of every small
// size class, with and without pointers (taking a span from the heap costs
// a Go guest tens of microseconds: the runtime switches stacks for it).
func warmUp() {
	head := binary.LittleEndian.AppendUint32(nil, 5)
	for _, f := range []string{"GET", "/", "localhost", "127.0.0.1:1", "warm-up"} {
		head = appendStr(head, f)
	}
	head = binary.LittleEndian.AppendUint32(head, 2)
	for _, f := range []string{"Accept", "*/*", "User-Agent", "warm-up"} {
		head = appendStr(head, f)
	}
	if _, err := decodeRequest(string(head), 0); err == nil {
		curReq.Header.Set("Warm-Up", "1")
		rw.reset(0)
		rw.Header().Set("Content-Type", "text/plain")
		rw.WriteString("warm-up")
		rw.encodeHead()
		rw.reset(0)
		clear(curReq.Header)
	}
	if cap(arena) == 0 {
		arena = make([]byte, 0, arenaChunk)
	}
	// fmt keeps its printers in a pool and learns, once per type, which
	// interfaces an argument implements.
	fmt.Fprintf(io.Discard, "%s %d %v %v %x %q %v", "s", 1, int64(1), uint64(1), []byte("b"), "q", errors.New("e"))
	io.WriteString(&rw, "")
	rw.reset(0)
	// net/url reads a GODEBUG setting the first time it parses a query.
	url.ParseQuery("a=1&b=%20")
	for _, size := range sizeClasses {
		warmSink = make([]byte, size)
		warmSinkP = make([]*byte, size/8)
	}
	warmSink, warmSinkP = nil, nil
}

// sizeClasses are the Go allocator's small size classes up to 2 KiB.
var sizeClasses = [...]int{8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256,
	288, 320, 352, 384, 416, 448, 480, 512, 576, 640, 704, 768, 896, 1024, 1152, 1280, 1408, 1536, 1792, 2048}

var (
	warmSink  []byte
	warmSinkP []*byte
)

func appendStr(b []byte, s string) []byte {
	return append(binary.LittleEndian.AppendUint32(b, uint32(len(s))), s...)
}

// runHandler runs the handler and reports false if it panicked.
func runHandler(req *Request) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			Log(LevelError, fmt.Sprintf("handler panicked: %v", p))
			ok = false
		}
	}()
	if handler == nil {
		rw.WriteHeader(500)
		rw.WriteString("no handler registered: call verge.HandleFunc in an init function\n")
	} else {
		handler.ServeHTTP(&rw, req)
	}
	return true
}

// readHead fetches the request head into the arena and returns it as a
// string that shares the arena's bytes.
func readHead(h uint32) (string, error) {
	if cap(arena)-len(arena) < 512 {
		arena = make([]byte, 0, arenaChunk)
	}
	free := arena[len(arena):cap(arena)]
	n, st := sysReqHead(h, free)
	if st == statusTooSmall {
		arena = make([]byte, 0, max(int(n), arenaChunk))
		free = arena[:cap(arena)]
		n, st = sysReqHead(h, free)
	}
	if st != statusOK {
		return "", hostErr("http_req_head", st)
	}
	if n == 0 || int(n) > len(free) {
		return "", errors.New("malformed request head")
	}
	arena = arena[:len(arena)+int(n)]
	return unsafe.String(&free[0], int(n)), nil
}

func readRequest(h uint32) (*Request, error) {
	head, err := readHead(h)
	if err != nil {
		return nil, err
	}
	return decodeRequest(head, h)
}

// decodeRequest decodes a request head into the instance's Request.
func decodeRequest(head string, h uint32) (*Request, error) {
	r := headReader{s: head}
	nf, ok := r.u32()
	if !ok || nf < 5 {
		return nil, errors.New("malformed request head")
	}
	var f [5]string
	for i := uint32(0); i < nf; i++ {
		s, ok := r.str()
		if !ok {
			return nil, errors.New("malformed request head")
		}
		if i < 5 {
			f[i] = s
		}
	}
	nh, ok := r.u32()
	if !ok || uint64(nh)*8 > uint64(len(r.s)) {
		return nil, errors.New("malformed request headers")
	}
	hdr := curReq.Header
	if hdr == nil || len(hdr) > 64 {
		hdr = make(Header, nh)
	} else if len(hdr) > 0 {
		clear(hdr)
	}
	if uint32(cap(hdrVals)) < nh {
		hdrVals = make([]string, nh)
	}
	for i := uint32(0); i < nh; i++ {
		k, ok1 := r.str()
		v, ok2 := r.str()
		if !ok1 || !ok2 {
			return nil, errors.New("malformed request headers")
		}
		if vs, dup := hdr[k]; dup {
			hdr[k] = append(vs, v)
			continue
		}
		// A one-element slice of hdrVals, capped so that an append by the
		// handler copies instead of overwriting the next value.
		hdrVals[i] = v
		hdr[k] = hdrVals[i : i+1 : i+1]
	}
	curBody = body{h: h}
	curReq = Request{Method: f[0], RequestURI: f[1], URL: parseURI(f[1]), Host: f[2], RemoteAddr: f[3], ID: f[4],
		Header: hdr, Body: &curBody}
	return &curReq, nil
}

// parseURI splits a request URI without net/url's full parser when the path
// holds no escapes, the common case (url.ParseRequestURI costs several
// microseconds in Wasm), into the instance's url.URL.
func parseURI(uri string) *url.URL {
	path, query, _ := strings.Cut(uri, "?")
	curURL = url.URL{Path: path, RawQuery: query}
	if strings.IndexByte(path, '%') >= 0 || !strings.HasPrefix(path, "/") {
		if u, err := url.ParseRequestURI(uri); err == nil {
			curURL = *u
		}
	}
	return &curURL
}

// headReader decodes the request head's u32s and strings from one string.
type headReader struct{ s string }

func (r *headReader) u32() (uint32, bool) {
	if len(r.s) < 4 {
		return 0, false
	}
	v := uint32(r.s[0]) | uint32(r.s[1])<<8 | uint32(r.s[2])<<16 | uint32(r.s[3])<<24
	r.s = r.s[4:]
	return v, true
}

func (r *headReader) str() (string, bool) {
	n, ok := r.u32()
	if !ok || uint64(n) > uint64(len(r.s)) {
		return "", false
	}
	s := r.s[:n]
	r.s = r.s[n:]
	return s, true
}

func u32(b []byte) (uint32, []byte, bool) {
	if len(b) < 4 {
		return 0, nil, false
	}
	return binary.LittleEndian.Uint32(b), b[4:], true
}

func str(b []byte) (string, []byte, bool) {
	n, b, ok := u32(b)
	if !ok || uint64(n) > uint64(len(b)) {
		return "", nil, false
	}
	return string(b[:n]), b[n:], true
}

// body reads the request body from the host on demand.
type body struct {
	h   uint32
	eof bool
}

func (b *body) Read(p []byte) (int, error) {
	if b.eof {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, st := sysBodyRead(b.h, p)
	if st != statusOK {
		return 0, hostErr("body_read", st)
	}
	if n == 0 {
		b.eof = true
		return 0, io.EOF
	}
	return int(n), nil
}

// responseWriter buffers the body in chunks of up to 64 KiB, so a handler
// making many small writes costs few host calls.
type responseWriter struct {
	h       uint32
	header  Header
	status  int
	sent    bool
	buf     []byte
	headBuf []byte
	err     error
	// streaming: the host sends every write on (a Flush succeeded);
	// buffered: the host cannot stream this response.
	streaming, buffered bool
}

const flushAt = 64 << 10

func (w *responseWriter) reset(h uint32) {
	if w.header == nil || len(w.header) > 64 {
		w.header = Header{}
	} else {
		clear(w.header)
	}
	w.h, w.status, w.sent, w.buf, w.err = h, 0, false, w.buf[:0], nil
	w.streaming, w.buffered = false, false
}

// Flush implements Flusher.
func (w *responseWriter) Flush() {
	if w.err != nil || w.buffered {
		return
	}
	if w.flush() != nil {
		return
	}
	switch st := sysRespFlush(w.h); st {
	case statusOK:
		w.streaming = true
	case statusUnsupported:
		w.buffered = true
	default:
		w.err = hostErr("http_resp_flush", st)
	}
}

func (w *responseWriter) Header() Header { return w.header }

func (w *responseWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.status == 0 {
		w.status = 200
	}
	if len(w.buf)+len(p) > flushAt {
		if err := w.flush(); err != nil {
			return 0, err
		}
		if len(p) > flushAt {
			if w.err = hostErr("body_write", sysBodyWrite(w.h, p)); w.err != nil {
				return 0, w.err
			}
			return len(p), nil
		}
	}
	w.buf = append(w.buf, p...)
	return len(p), nil
}

// WriteString writes s without converting it to a byte slice first
// (io.WriteString and fmt use it).
func (w *responseWriter) WriteString(s string) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if len(w.buf)+len(s) > flushAt {
		return w.Write([]byte(s))
	}
	if w.status == 0 {
		w.status = 200
	}
	w.buf = append(w.buf, s...)
	return len(s), nil
}

// encodeHead encodes the header for the host, in one pass over the map
// (ranging over a map costs about a microsecond in a Go guest).
func (w *responseWriter) encodeHead() []byte {
	b := append(w.headBuf[:0], 0, 0, 0, 0)
	w.headBuf = b
	if len(w.header) == 0 {
		return b
	}
	n := uint32(0)
	for k, vs := range w.header {
		for _, v := range vs {
			b = binary.LittleEndian.AppendUint32(b, uint32(len(k)))
			b = append(b, k...)
			b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
			b = append(b, v...)
			n++
		}
	}
	binary.LittleEndian.PutUint32(b, n)
	w.headBuf = b
	return b
}

func (w *responseWriter) sendHead() error {
	if w.sent {
		return nil
	}
	w.sent = true
	if w.status == 0 {
		w.status = 200
	}
	return hostErr("http_resp_head", sysRespHead(w.h, w.status, w.encodeHead()))
}

func (w *responseWriter) flush() error {
	if w.err == nil {
		w.err = w.sendHead()
	}
	if w.err == nil && len(w.buf) > 0 {
		w.err = hostErr("body_write", sysBodyWrite(w.h, w.buf))
		w.buf = w.buf[:0]
	}
	return w.err
}

// finish sends what is left. A response that fit in the buffer, the common
// case, goes out in one host call with its head.
func (w *responseWriter) finish() error {
	if w.sent || w.err != nil {
		return w.flush()
	}
	w.sent = true
	if w.status == 0 {
		w.status = 200
	}
	w.err = hostErr("http_resp", sysResp(w.h, w.status, w.encodeHead(), w.buf))
	w.buf = w.buf[:0]
	return w.err
}
