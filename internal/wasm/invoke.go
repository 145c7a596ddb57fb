package wasm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/tetratelabs/wazero/api"
)

// Invoker is what the invoke host call reaches: the app's central functions,
// which always run at the central PoP.
type Invoker interface {
	// Invoke runs the app's central function fn with an HTTP-like request
	// and returns its response; it may cross the WAN (one round trip).
	//
	// A failure of the called function itself (a trap, a limit) is its
	// response: either a *Response as the gateway would answer, or an
	// *Error, which the guest receives as the gateway's JSON error body.
	// Other errors are the invocation's: those implementing DocError give
	// the guest their status (NOT_FOUND for an unknown function,
	// UNAVAILABLE when the centre cannot be reached), context errors
	// UNAVAILABLE, anything else INTERNAL.
	Invoke(ctx context.Context, app, fn string, req *Request) (*Response, error)
}

var errNoInvoker = docErr{StatusUnsupported, "invoking central functions is not available in this host (no central PoP configured)"}

const (
	maxInvokeName   = 1 << 10
	maxInvokeMethod = 32
	maxInvokePath   = 8 << 10
	// MaxInvokeDepth bounds a chain of invocations (a central function
	// invoking one, which invokes one...): a function that invokes itself
	// would otherwise hold an instance per level until its wall time ends.
	MaxInvokeDepth = 8
)

// InvokeDepthHeader carries an invocation's depth in the chain (the first
// is 1) to the called function's request, so its own invocations count on.
const InvokeDepthHeader = "Verge-Invoke-Depth"

// invokeDepth is the depth of the request r; a missing or malformed header
// is 0 (a client can only make its own chain shorter).
func invokeDepth(r *Request) int {
	if r == nil {
		return 0
	}
	d, err := strconv.Atoi(r.Header.Get(InvokeDepthHeader))
	if err != nil || d < 0 {
		return 0
	}
	return d
}

// invoke(fn, fn_len, method, method_len, path, path_len, body, body_len,
// buf, cap, len_out, status_out): runs the app's central function fn and
// returns its response body in buf and its HTTP status in *status_out (u32).
func hostInvoke(ctx context.Context, m api.Memory, cs *callState, a []uint64) uint32 {
	var args [4][]byte
	for i := range args {
		b, ok := read(m, uint32(a[2*i]), uint32(a[2*i+1]))
		if !ok {
			return StatusMemory
		}
		args[i] = b
	}
	ptr, capacity, lenOut, statusOut := uint32(a[8]), uint32(a[9]), uint32(a[10]), uint32(a[11])
	if _, ok := read(m, statusOut, 4); !ok || !outBuf(m, ptr, capacity, lenOut) {
		return StatusMemory
	}
	fn, method, path, body := args[0], args[1], args[2], args[3]
	if msg := checkInvoke(fn, method, path); msg != "" {
		cs.lastErr = msg
		return StatusInvalid
	}
	// What a function sends out is bounded like what it answers.
	if int64(len(body)) > cs.bodyLimit {
		cs.lastErr = fmt.Sprintf("the request body of %d bytes exceeds this function's limit of %d bytes (limits.response_body)", len(body), cs.bodyLimit)
		return StatusLimit
	}
	if cs.invoker == nil {
		return cs.fail(errNoInvoker)
	}
	depth := invokeDepth(cs.req) + 1
	if depth > MaxInvokeDepth {
		cs.lastErr = fmt.Sprintf("central functions invoked each other %d deep, the most allowed (does a function invoke itself?)", MaxInvokeDepth)
		return StatusLimit
	}
	if r := cs.retrieve("invoke", 0, args[:]); r != nil {
		m.WriteUint32Le(statusOut, uint32(r.num))
		return cs.deliver(m, r.status, r.out, r.num, ptr, capacity, lenOut, "invoke", 0, args[:])
	}
	p, query, _ := strings.Cut(string(path), "?")
	req := &Request{
		ID:     cs.req.ID, // one id across the call, for tracing
		Method: string(method),
		URI:    string(path),
		Path:   p,
		Query:  query,
		Proto:  "HTTP/1.1",
		Host:   cs.req.Host,
		Header: http.Header{InvokeDepthHeader: {strconv.Itoa(depth)}},
		Body:   append([]byte(nil), body...),
	}
	name := string(fn)
	var resp *Response
	var err error
	blocking(ctx, func(ctx context.Context) { resp, err = cs.invoker.Invoke(ctx, cs.app, name, req) })
	var fe *Error
	switch {
	case err == nil && resp == nil:
		return cs.fail(fmt.Errorf("invoking central function %q: the invoker returned no response", name))
	case err == nil:
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return cs.fail(fmt.Errorf("invoking central function %q: %w", name, err))
	case errors.As(err, &fe):
		resp = errorResponse(fe, req.ID)
	default:
		return cs.fail(err)
	}
	if int64(len(resp.Body)) > cs.bodyLimit {
		cs.lastErr = fmt.Sprintf("the response of central function %q is %d bytes, over this function's limit of %d bytes (limits.response_body)", name, len(resp.Body), cs.bodyLimit)
		return StatusLimit
	}
	status := uint64(resp.Status)
	if status == 0 {
		status = http.StatusOK
	}
	m.WriteUint32Le(statusOut, uint32(status))
	return cs.deliver(m, StatusOK, resp.Body, status, ptr, capacity, lenOut, "invoke", 0, args[:])
}

// checkInvoke explains what is wrong with an invocation's name, method or
// path, or returns "".
func checkInvoke(fn, method, path []byte) string {
	switch {
	case len(fn) == 0 || len(fn) > maxInvokeName:
		return fmt.Sprintf("the function name must be 1 to %d bytes, got %d", maxInvokeName, len(fn))
	case len(method) == 0 || len(method) > maxInvokeMethod || !validHeaderName(string(method)):
		return fmt.Sprintf("invalid method %q: an HTTP token of 1 to %d bytes, e.g. GET or POST", method, maxInvokeMethod)
	case len(path) == 0 || path[0] != '/' || len(path) > maxInvokePath:
		return fmt.Sprintf("invalid path %q: it must start with / and be at most %d bytes", path, maxInvokePath)
	}
	for _, c := range path {
		if c <= ' ' || c == 0x7f {
			return fmt.Sprintf("invalid path %q: it holds a space or a control character; escape it", path)
		}
	}
	return ""
}

// errorResponse renders a failed call as the gateway answers a failed
// request (gateway.ErrorBody), so a central function's failure reads the
// same to a caller as to an HTTP client.
func errorResponse(e *Error, id string) *Response {
	body := struct {
		Error     string `json:"error"`
		Kind      string `json:"kind"`
		Limit     string `json:"limit,omitempty"`
		RequestID string `json:"request_id"`
	}{Error: e.Msg, Kind: e.Kind, RequestID: id}
	if e.IsLimit() {
		body.Limit = e.Kind
	}
	b, _ := json.Marshal(body)
	status := e.Status
	if status < 100 || status > 999 {
		status = http.StatusInternalServerError
	}
	return &Response{Status: status, Header: http.Header{"Content-Type": {"application/json"}}, Body: append(b, '\n')}
}
