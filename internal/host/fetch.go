package host

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/verge-edge/verge/internal/fetch"
	"github.com/verge-edge/verge/internal/obs"
	"github.com/verge-edge/verge/internal/wasm"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
)

// Fetchers gives an app's outbound HTTP: the fetch service built from its
// manifest's backends (internal/fetch), nil for an app that has none.
type Fetchers func(app string) *fetch.Service

// FetchCapability is the fetch_* host functions (docs/abi.md, "Outbound
// fetch"): a guest opens an exchange with one of its app's backends,
// streams the request body, reads the response head and streams the
// response body, each through a handle valid for the request. Capabilities
// includes it, with Services.Fetchers.
//
// A nil fetchers answers every call UNSUPPORTED.
func FetchCapability(fetchers Fetchers) wasm.Capability {
	fc := &fetchCalls{fetchers: fetchers}
	return wasm.Capability{Name: "fetch", Functions: []wasm.HostFunction{
		{Name: "fetch_open", Params: wasm.I32s(6), Call: fc.open},
		{Name: "fetch_body_write", Params: wasm.I32s(3), Call: fc.bodyWrite},
		{Name: "fetch_body_close", Params: wasm.I32s(1), Call: fc.bodyClose},
		{Name: "fetch_head", Params: wasm.I32s(4), Call: fc.head},
		{Name: "fetch_body_read", Params: wasm.I32s(4), Call: fc.bodyRead},
		{Name: "fetch_close", Params: wasm.I32s(1), Call: fc.close},
	}}
}

// Flags of fetch_open.
const (
	FetchHasBody = 1 << 0 // the guest streams a request body with fetch_body_write
	FetchNoCache = 1 << 1 // bypass the PoP's HTTP cache
	fetchFlags   = FetchHasBody | FetchNoCache
)

// firstFetchHandle: handles 1 and 2 are the request and its response.
const firstFetchHandle = 3

var (
	errNoFetch     = errorOf(ErrUnsupported, "outbound fetch is not available in this host")
	errFetchClosed = errors.New("the fetch was closed")
)

// fetchCalls is the fetch capability; a request's exchanges are kept in
// its wasm.Call (Call.Value) and closed when it ends (Call.OnEnd).
type fetchCalls struct {
	fetchers Fetchers
}

type fetchKey struct{}

// fetchState is one request's fetches. Its context ends with the request
// (its client gone, or the response sent) or at its wall-time deadline,
// whichever comes first; every exchange still open is then closed, so a
// guest that forgets a body, or traps, leaves no connection behind.
type fetchState struct {
	req     *wasm.Request
	ctx     context.Context
	cancel  context.CancelFunc
	session *fetch.Session
	mu      sync.Mutex
	handles map[uint32]*exchange
	next    uint32
	sent    int64 // request body bytes, against the function's body limit
}

// exchange is one fetch: the request under way, its body's writer, and
// once it came, the response.
type exchange struct {
	done chan struct{} // closed once resp or err is set
	resp *http.Response
	err  error
	head []byte // the encoded response head, made once
	pw   *io.PipeWriter
	pr   *io.PipeReader
}

// abort ends the exchange; it may run beside the guest's calls (when the
// request ends), so it touches only what those calls do not change.
func (x *exchange) abort() {
	if x.pr != nil {
		x.pr.CloseWithError(errFetchClosed) // a body being sent ends here
	}
	go func() { // the response may still be on its way
		<-x.done
		if x.resp != nil {
			x.resp.Body.Close()
		}
	}()
}

// state is the request's fetch state, created on its first fetch.
func (fc *fetchCalls) state(ctx context.Context, c *wasm.Call) (*fetchState, error) {
	if st, ok := c.Value(fetchKey{}).(*fetchState); ok {
		return st, nil
	}
	if fc.fetchers == nil {
		return nil, errNoFetch
	}
	svc := fc.fetchers(c.App())
	if svc == nil {
		return nil, errorOf(ErrUnsupported, fmt.Sprintf("app %q declares no [[backend]] to fetch from", c.App()))
	}
	// The request's wall-time deadline is known inside Blocking only.
	var deadline, ok = ctx.Deadline()
	wasm.Blocking(ctx, func(bctx context.Context) { deadline, ok = bctx.Deadline() })
	sctx, cancel := context.WithCancel(ctx)
	if ok {
		sctx, cancel = context.WithDeadline(ctx, deadline)
	}
	st := &fetchState{req: c.Request(), ctx: sctx, cancel: cancel, session: svc.Session(), handles: map[uint32]*exchange{}, next: firstFetchHandle}
	c.SetValue(fetchKey{}, st)
	c.OnEnd(cancel)
	context.AfterFunc(sctx, func() {
		st.mu.Lock()
		for h, x := range st.handles {
			x.abort()
			delete(st.handles, h)
		}
		st.mu.Unlock()
		st.session.Close()
	})
	return st, nil
}

// exchange finds handle h of the current request.
func (fc *fetchCalls) exchange(c *wasm.Call, h uint32) (*fetchState, *exchange) {
	st, _ := c.Value(fetchKey{}).(*fetchState)
	if st == nil {
		return nil, nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st, st.handles[h]
}

// fetch_open(backend, backend_len, head, head_len, flags, handle_out):
// starts a request to the backend and writes its handle. The head is
// u32 field_count, string method, string url, then a header list.
func (fc *fetchCalls) open(ctx context.Context, c *wasm.Call, a []uint64) uint32 {
	backend, ok1 := c.Bytes(uint32(a[0]), uint32(a[1]))
	head, ok2 := c.Bytes(uint32(a[2]), uint32(a[3]))
	flags, handleOut := uint32(a[4]), uint32(a[5])
	if !ok1 || !ok2 || !c.Writable(handleOut, 4) {
		return wasm.StatusMemory
	}
	if flags&^fetchFlags != 0 {
		return c.Refuse(wasm.StatusInvalid, "unknown fetch_open flags %#x", flags&^fetchFlags)
	}
	req, msg := decodeFetchHead(head)
	if msg != "" {
		return c.Refuse(wasm.StatusInvalid, "%s", msg)
	}
	st, err := fc.state(ctx, c)
	if err != nil {
		return fail(c, err)
	}
	// A span for the fetch, from the call to the response's head (or its
	// failure), and the trace goes along (traceparent, baggage) unless the
	// guest set its own: the origin's spans are the fetch's children.
	sctx, span := obs.Child(ctx, "fetch "+string(backend), attribute.String("verge.backend", string(backend)),
		attribute.String("http.request.method", req.Method), attribute.String("url.path", req.URL.Path))
	if req.Header.Get("Traceparent") == "" {
		obs.Propagator.Inject(sctx, propagation.HeaderCarrier(req.Header))
	}
	x := &exchange{done: make(chan struct{})}
	if flags&FetchHasBody != 0 {
		x.pr, x.pw = io.Pipe()
		req.Body, req.ContentLength = x.pr, -1
	}
	st.mu.Lock()
	h := st.next
	st.next++
	st.handles[h] = x
	st.mu.Unlock()
	p := fetch.Params{Backend: string(backend), NoCache: flags&FetchNoCache != 0}
	go func() {
		x.resp, x.err = st.session.Do(st.ctx, req, p)
		if x.err != nil && x.pr != nil {
			x.pr.CloseWithError(x.err) // a guest writing the body learns it at once
		}
		if span.IsRecording() {
			if x.err != nil {
				span.SetStatus(codes.Error, x.err.Error())
			} else {
				span.SetAttributes(attribute.Int("http.response.status_code", x.resp.StatusCode),
					attribute.String("verge.cache", x.resp.Header.Get("X-Cache")))
			}
			span.End()
		}
		close(x.done)
	}()
	c.PutUint32(handleOut, h)
	return wasm.StatusOK
}

// decodeFetchHead parses a fetch_open head into a request, or says what is
// wrong with it.
func decodeFetchHead(b []byte) (*http.Request, string) {
	r := fetchHeadReader{b: b}
	n, ok := r.u32()
	if !ok || n < 2 {
		return nil, "malformed fetch head: expected u32 field_count (≥ 2), method, url and a header list"
	}
	var fields [2]string
	for i := uint32(0); i < n; i++ {
		s, ok := r.str()
		if !ok {
			return nil, "malformed fetch head: a field is cut short"
		}
		if i < 2 {
			fields[i] = s
		}
	}
	method, target := fields[0], fields[1]
	if method == "" {
		method = http.MethodGet
	}
	if !wasm.ValidHeaderName(method) || len(method) > 32 {
		return nil, fmt.Sprintf("invalid method %q", method)
	}
	u, err := url.Parse(target)
	if err != nil || (!strings.HasPrefix(target, "/") && !u.IsAbs()) {
		return nil, fmt.Sprintf("invalid url %q: a path starting with / or an absolute http(s) URL on the backend's origin", target)
	}
	nh, ok := r.u32()
	if !ok || uint64(nh)*8 > uint64(len(r.b)) {
		return nil, "malformed fetch head: bad header count"
	}
	h := make(http.Header, nh)
	for i := uint32(0); i < nh; i++ {
		k, ok1 := r.str()
		v, ok2 := r.str()
		if !ok1 || !ok2 {
			return nil, "malformed fetch head: a header is cut short"
		}
		if !wasm.ValidHeaderName(k) || strings.ContainsAny(v, "\r\n\x00") {
			return nil, fmt.Sprintf("invalid header %q", k)
		}
		h.Add(k, v)
	}
	if len(r.b) != 0 {
		return nil, "malformed fetch head: trailing bytes"
	}
	req := &http.Request{Method: method, URL: u, Header: h, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Body: http.NoBody}
	if host := h.Get("Host"); host != "" {
		req.Host = host
		h.Del("Host")
	}
	return req, ""
}

type fetchHeadReader struct{ b []byte }

func (r *fetchHeadReader) u32() (uint32, bool) {
	if len(r.b) < 4 {
		return 0, false
	}
	v := binary.LittleEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v, true
}

func (r *fetchHeadReader) str() (string, bool) {
	n, ok := r.u32()
	if !ok || uint64(n) > uint64(len(r.b)) {
		return "", false
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s, true
}

// fetch_body_write(h, ptr, len): streams bytes of the request body; it
// returns once the connection has taken them.
func (fc *fetchCalls) bodyWrite(ctx context.Context, c *wasm.Call, a []uint64) uint32 {
	st, x := fc.exchange(c, uint32(a[0]))
	if x == nil {
		return wasm.StatusBadHandle
	}
	b, ok := c.Bytes(uint32(a[1]), uint32(a[2]))
	if !ok {
		return wasm.StatusMemory
	}
	if x.pw == nil {
		return c.Refuse(wasm.StatusInvalid, "fetch %d has no request body to write: open it with the has-body flag, and write before fetch_body_close or fetch_head", a[0])
	}
	st.mu.Lock()
	st.sent += int64(len(b))
	over := st.sent > c.BodyLimit()
	st.mu.Unlock()
	if over {
		// What a function sends out is bounded like what it answers.
		x.pw.CloseWithError(fmt.Errorf("the request body exceeds the function's limit of %d bytes", c.BodyLimit()))
		x.pw = nil
		return c.Refuse(wasm.StatusLimit, "the request bodies of this request's fetches exceed the function's limit of %d bytes (limits.response_body)", c.BodyLimit())
	}
	var err error
	wasm.Blocking(ctx, func(bctx context.Context) {
		// The pipe hands b to the connection and returns once it was read,
		// so the view of guest memory is not kept past this call.
		stop := context.AfterFunc(bctx, func() { x.pr.CloseWithError(bctx.Err()) })
		_, err = x.pw.Write(b)
		stop()
	})
	if err == nil {
		return wasm.StatusOK
	}
	x.pw = nil
	// The exchange failed (a limit, the backend gone): its error says why.
	select {
	case <-x.done:
		if x.err != nil {
			return fail(c, x.err)
		}
	default:
	}
	if wasm.IsContextError(err) {
		return fail(c, fmt.Errorf("writing the request body: %w", err))
	}
	return fail(c, errorOf(fetch.ErrUnavailable, "writing the request body: "+err.Error()))
}

// fetch_body_close(h): ends the request body.
func (fc *fetchCalls) bodyClose(_ context.Context, c *wasm.Call, a []uint64) uint32 {
	_, x := fc.exchange(c, uint32(a[0]))
	if x == nil {
		return wasm.StatusBadHandle
	}
	if x.pw != nil {
		x.pw.Close()
		x.pw = nil
	}
	return wasm.StatusOK
}

// wait waits for the response head of x within the request's wall time;
// it ends the request body first if the guest has not.
func wait(ctx context.Context, c *wasm.Call, x *exchange) uint32 {
	if x.pw != nil {
		x.pw.Close()
		x.pw = nil
	}
	select {
	case <-x.done:
	default:
		wasm.Blocking(ctx, func(bctx context.Context) {
			select {
			case <-x.done:
			case <-bctx.Done():
			}
		})
	}
	select {
	case <-x.done:
	default:
		return fail(c, fmt.Errorf("waiting for the backend's response: %w", context.DeadlineExceeded))
	}
	if x.err != nil {
		return fail(c, x.err)
	}
	return wasm.StatusOK
}

// fetch_head(h, buf, cap, len_out): waits for the response and writes its
// head: u32 status, then a header list (output-buffer protocol).
func (fc *fetchCalls) head(ctx context.Context, c *wasm.Call, a []uint64) uint32 {
	_, x := fc.exchange(c, uint32(a[0]))
	if x == nil {
		return wasm.StatusBadHandle
	}
	ptr, capacity, lenOut := uint32(a[1]), uint32(a[2]), uint32(a[3])
	if !c.OutBuf(ptr, capacity, lenOut) {
		return wasm.StatusMemory
	}
	if st := wait(ctx, c, x); st != wasm.StatusOK {
		return st
	}
	if x.head == nil {
		x.head = encodeResponseHead(x.resp)
	}
	return c.Out(x.head, ptr, capacity, lenOut)
}

func encodeResponseHead(resp *http.Response) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(resp.StatusCode))
	n := 0
	for _, vs := range resp.Header {
		n += len(vs)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(n))
	for k, vs := range resp.Header {
		for _, v := range vs {
			b = wasm.AppendString(b, k)
			b = wasm.AppendString(b, v)
		}
	}
	return b
}

// fetch_body_read(h, buf, cap, n_out): reads up to cap bytes of the
// response body; *n_out = 0 at its end. It waits for the response first.
func (fc *fetchCalls) bodyRead(ctx context.Context, c *wasm.Call, a []uint64) uint32 {
	_, x := fc.exchange(c, uint32(a[0]))
	if x == nil {
		return wasm.StatusBadHandle
	}
	ptr, capacity, nOut := uint32(a[1]), uint32(a[2]), uint32(a[3])
	dst, ok := c.Bytes(ptr, capacity)
	if !ok || !c.Writable(nOut, 4) {
		return wasm.StatusMemory
	}
	if st := wait(ctx, c, x); st != wasm.StatusOK {
		return st
	}
	if capacity == 0 {
		c.PutUint32(nOut, 0)
		return wasm.StatusOK
	}
	var n int
	var err error
	wasm.Blocking(ctx, func(bctx context.Context) {
		// Reading straight into guest memory, which does not move while the
		// guest waits in this call; the body is closed if the wall time
		// ends first, which ends the read.
		stop := context.AfterFunc(bctx, func() { x.resp.Body.Close() })
		for n == 0 && err == nil {
			n, err = x.resp.Body.Read(dst)
		}
		stop()
	})
	if n > 0 || err == io.EOF {
		c.PutUint32(nOut, uint32(n))
		return wasm.StatusOK
	}
	return fail(c, fmt.Errorf("reading the response body: %w", err))
}

// fetch_close(h): releases the fetch: an unread response is discarded, an
// unfinished request body aborted.
func (fc *fetchCalls) close(_ context.Context, c *wasm.Call, a []uint64) uint32 {
	st, x := fc.exchange(c, uint32(a[0]))
	if x == nil {
		return wasm.StatusBadHandle
	}
	st.mu.Lock()
	delete(st.handles, uint32(a[0]))
	st.mu.Unlock()
	x.abort()
	return wasm.StatusOK
}
