package host

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"

	"github.com/verge-edge/verge/internal/obs"
	"github.com/verge-edge/verge/internal/wasm"
)

// Invoker is what the invoke host call reaches: the app's central functions,
// which always run at the central PoP.
type Invoker interface {
	// Invoke runs the app's central function fn with an HTTP-like request
	// and returns its response; it may cross the WAN (one round trip).
	//
	// A failure of the called function itself (a trap, a limit) is its
	// response: either a *wasm.Response as the gateway would answer, or a
	// *wasm.Error, which the guest receives as the gateway's JSON error
	// body. Other errors are the invocation's and give the guest their
	// status (status.go): ErrNoFunction for an unknown function,
	// spot.ErrUnavailable when the centre cannot be reached (nothing ran),
	// spot.ErrUnknownOutcome when it was asked and did not answer in time.
	Invoke(ctx context.Context, app, fn string, req *wasm.Request) (*wasm.Response, error)
}

// ErrNoFunction is an invocation of a central function the app does not have.
var ErrNoFunction = errors.New("no such central function")

var errNoInvoker = errorOf(ErrUnsupported, "invoking central functions is not available in this host (no central PoP configured)")

func invokeCapability(inv Invoker) wasm.Capability {
	return wasm.Capability{Name: "invoke", Functions: []wasm.HostFunction{
		{Name: "invoke", Params: wasm.I32s(12), Call: invokeCalls{inv}.invoke},
	}}
}

type invokeCalls struct{ invoker Invoker }

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
func invokeDepth(r *wasm.Request) int {
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
func (h invokeCalls) invoke(ctx context.Context, c *wasm.Call, a []uint64) uint32 {
	var args [4][]byte
	for i := range args {
		b, ok := c.Bytes(uint32(a[2*i]), uint32(a[2*i+1]))
		if !ok {
			return wasm.StatusMemory
		}
		args[i] = b
	}
	ptr, capacity, lenOut, statusOut := uint32(a[8]), uint32(a[9]), uint32(a[10]), uint32(a[11])
	if !c.Writable(statusOut, 4) || !c.OutBuf(ptr, capacity, lenOut) {
		return wasm.StatusMemory
	}
	fn, method, path, body := args[0], args[1], args[2], args[3]
	if msg := checkInvoke(fn, method, path); msg != "" {
		return c.Refuse(wasm.StatusInvalid, "%s", msg)
	}
	// What a function sends out is bounded like what it answers.
	if int64(len(body)) > c.BodyLimit() {
		return c.Refuse(wasm.StatusLimit, "the request body of %d bytes exceeds this function's limit of %d bytes (limits.response_body)", len(body), c.BodyLimit())
	}
	if h.invoker == nil {
		return fail(c, errNoInvoker)
	}
	depth := invokeDepth(c.Request()) + 1
	if depth > MaxInvokeDepth {
		return c.Refuse(wasm.StatusLimit, "central functions invoked each other %d deep, the most allowed (does a function invoke itself?)", MaxInvokeDepth)
	}
	if r, ok := c.Retrieve("invoke", 0, args[:]); ok {
		c.PutUint32(statusOut, uint32(r.Num))
		return c.Deliver(r.Status, r.Out, r.Num, ptr, capacity, lenOut, "invoke", 0, args[:])
	}
	p, query, _ := strings.Cut(string(path), "?")
	req := &wasm.Request{
		ID:     c.Request().ID, // one id across the call, for tracing
		Method: string(method),
		URI:    string(path),
		Path:   p,
		Query:  query,
		Proto:  "HTTP/1.1",
		Host:   c.Request().Host,
		Header: http.Header{InvokeDepthHeader: {strconv.Itoa(depth)}},
		Body:   append([]byte(nil), body...),
	}
	name := string(fn)
	var resp *wasm.Response
	var err error
	sctx, span := obs.Child(ctx, "invoke "+name, attribute.String("verge.function", name), attribute.String("url.path", req.Path))
	wasm.Blocking(sctx, func(ctx context.Context) { resp, err = h.invoker.Invoke(ctx, c.App(), name, req) })
	endSpan(span, err)
	var fe *wasm.Error
	switch {
	case err == nil && resp == nil:
		return fail(c, fmt.Errorf("invoking central function %q: the invoker returned no response", name))
	case err == nil:
	case wasm.IsContextError(err):
		return fail(c, fmt.Errorf("invoking central function %q: %w", name, err))
	case errors.As(err, &fe):
		resp = fe.Response(req.ID)
	default:
		return fail(c, err)
	}
	if int64(len(resp.Body)) > c.BodyLimit() {
		return c.Refuse(wasm.StatusLimit, "the response of central function %q is %d bytes, over this function's limit of %d bytes (limits.response_body)", name, len(resp.Body), c.BodyLimit())
	}
	status := uint64(resp.Status)
	if status == 0 {
		status = http.StatusOK
	}
	c.PutUint32(statusOut, uint32(status))
	return c.Deliver(wasm.StatusOK, resp.Body, status, ptr, capacity, lenOut, "invoke", 0, args[:])
}

// checkInvoke explains what is wrong with an invocation's name, method or
// path, or returns "".
func checkInvoke(fn, method, path []byte) string {
	switch {
	case len(fn) == 0 || len(fn) > maxInvokeName:
		return fmt.Sprintf("the function name must be 1 to %d bytes, got %d", maxInvokeName, len(fn))
	case len(method) == 0 || len(method) > maxInvokeMethod || !wasm.ValidHeaderName(string(method)):
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
