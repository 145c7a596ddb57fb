// Package gateway is the HTTP edge of a PoP: it routes requests to functions,
// reads bodies within limits, turns failures into clear JSON errors and swaps
// function versions without dropping requests in flight.
package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/verge-edge/verge/internal/jsonapi"
	"github.com/verge-edge/verge/internal/obs"
	"github.com/verge-edge/verge/internal/wasm"
)

// RequestIDHeader carries the request id on every response.
const RequestIDHeader = "X-Verge-Request-Id"

// Observer is told of every request a gateway served: the function, the
// HTTP status, the time since the request reached the gateway, the guest's
// CPU time, and the limit it hit ("" none).
type Observer func(function string, status int, elapsed, cpu time.Duration, limit string)

// Gateway is an http.Handler serving one app's functions.
type Gateway struct {
	table  atomic.Pointer[table]
	log    *slog.Logger
	prefix string
	seq    atomic.Uint64
	// Observe, if set, is called after every request (metrics).
	Observe Observer
	// acquired, if set, is called once a request holds its version (tests:
	// to know requests are in flight before swapping the version).
	acquired func()
}

// A version is one loaded function; requests hold a read lock on it while
// they run, and swapping in a new version takes the write lock (after the new
// version is already routed) to wait for the old one's requests to finish.
type version struct {
	fn     *wasm.Function
	mu     sync.RWMutex
	closed bool
}

type route struct {
	pattern string
	prefix  string // for "/x/*": "/x/"; empty for exact routes
	fn      string
}

type table struct {
	routes   []route // exact routes first, then prefixes, longest first
	versions map[string]*version
}

// New returns a gateway with no functions.
func New(log *slog.Logger) *Gateway {
	if log == nil {
		log = slog.Default()
	}
	var b [4]byte
	rand.Read(b[:])
	g := &Gateway{log: log, prefix: hex.EncodeToString(b[:]) + "-"}
	g.table.Store(&table{versions: map[string]*version{}})
	return g
}

// Set routes fn's routes to fn, replacing any previous version of the
// function of the same name; the old version is closed once its requests in
// flight have finished. It returns when the new version is routed.
func (g *Gateway) Set(fn *wasm.Function) {
	old := g.table.Load()
	t := &table{versions: make(map[string]*version, len(old.versions)+1)}
	for name, v := range old.versions {
		if name != fn.Spec.Name {
			t.versions[name] = v
		}
	}
	t.versions[fn.Spec.Name] = &version{fn: fn}
	for _, r := range old.routes {
		if r.fn != fn.Spec.Name {
			t.routes = append(t.routes, r)
		}
	}
	for _, p := range fn.Spec.Routes {
		r := route{pattern: p, fn: fn.Spec.Name}
		if strings.HasSuffix(p, "/*") {
			r.prefix = strings.TrimSuffix(p, "*")
		}
		t.routes = append(t.routes, r)
	}
	sort.SliceStable(t.routes, func(i, j int) bool {
		a, b := t.routes[i], t.routes[j]
		if (a.prefix == "") != (b.prefix == "") {
			return a.prefix == ""
		}
		return len(a.pattern) > len(b.pattern)
	})
	g.table.Store(t)
	if prev := old.versions[fn.Spec.Name]; prev != nil {
		go prev.retire()
	}
}

// Functions returns the functions routed now.
func (g *Gateway) Functions() []*wasm.Function {
	t := g.table.Load()
	out := make([]*wasm.Function, 0, len(t.versions))
	for _, v := range t.versions {
		out = append(out, v.fn)
	}
	return out
}

// Close retires every function, waiting for requests in flight.
func (g *Gateway) Close() {
	t := g.table.Swap(&table{versions: map[string]*version{}})
	for _, v := range t.versions {
		v.retire()
	}
}

func (v *version) retire() {
	v.mu.Lock()
	v.closed = true
	v.mu.Unlock()
	v.fn.Close(context.Background())
}

func (t *table) match(path string) (route, bool) {
	for _, r := range t.routes {
		if r.prefix == "" {
			if path == r.pattern {
				return r, true
			}
		} else if strings.HasPrefix(path, r.prefix) || path == strings.TrimSuffix(r.prefix, "/") {
			return r, true
		}
	}
	return route{}, false
}

// acquire returns the live version serving path, read-locked.
func (g *Gateway) acquire(path string) (*version, route, bool) {
	for {
		t := g.table.Load()
		r, ok := t.match(path)
		if !ok {
			return nil, r, false
		}
		v := t.versions[r.fn]
		v.mu.RLock()
		if !v.closed {
			return v, r, true
		}
		// Retired between the table load and the lock: the new table is
		// already stored, so the next iteration finds the new version.
		v.mu.RUnlock()
	}
}

func (g *Gateway) requestID() string {
	var b [32]byte
	return string(strconv.AppendUint(append(b[:0], g.prefix...), g.seq.Add(1), 36))
}

// Call runs req, whose body is already read, through function fn as
// ServeHTTP would if req were routed to it, and returns the response; a
// failure is answered as the gateway answers it (Error.Response). A request
// whose path is not routed to fn gets 404. This is how the central PoP runs
// central functions for invocations, without an HTTP round trip.
func (g *Gateway) Call(ctx context.Context, fn string, req *wasm.Request) *wasm.Response {
	if req.ID == "" {
		req.ID = g.requestID()
	}
	v, rt, ok := g.acquire(req.Path)
	if !ok || rt.fn != fn {
		if ok {
			v.mu.RUnlock()
		}
		return (&wasm.Error{Kind: "not_found", Status: http.StatusNotFound, Msg: "no function " + strconv.Quote(fn) + " is routed at " + req.Path}).Response(req.ID)
	}
	defer v.mu.RUnlock()
	req.Route = rt.pattern
	start := time.Now()
	resp, err := g.serve(ctx, v.fn, req, start)
	if err != nil {
		e := g.logFailure(ctx, v.fn, req.ID, err, start)
		resp = e.Response(req.ID)
	}
	// The function's header may be shared with its other responses.
	h := make(http.Header, len(resp.Header)+1)
	for k, vs := range resp.Header {
		h[k] = vs
	}
	h[RequestIDHeader] = []string{req.ID}
	resp.Header = h
	return resp
}

// ServeHTTP implements http.Handler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// The PoP names a request it sends through its cache before the cache
	// knows whether the function will run (NewRequestID): a run keeps it.
	var id string
	if v := h[RequestIDHeader]; len(v) == 1 && v[0] != "" {
		id = v[0]
	} else {
		id = g.requestID()
	}
	// One allocation for the values of the two headers the gateway sets.
	vals := &[2]string{id}
	h[RequestIDHeader] = vals[0:1:1]
	v, rt, ok := g.acquire(r.URL.Path)
	if !ok {
		writeError(w, id, &wasm.Error{Kind: "not_found", Status: http.StatusNotFound, Msg: "no function is routed at " + r.URL.Path})
		return
	}
	defer v.mu.RUnlock()
	if g.acquired != nil {
		g.acquired()
	}
	fn := v.fn
	start := time.Now()
	body, err := readBody(r, fn.Limits.RequestBody)
	if err != nil {
		g.fail(r.Context(), w, id, fn, err, start)
		return
	}
	sr := &streamedRequest{Request: wasm.Request{
		ID:         id,
		Method:     r.Method,
		URI:        r.RequestURI,
		Path:       r.URL.Path,
		Query:      r.URL.RawQuery,
		Proto:      r.Proto,
		Host:       r.Host,
		RemoteAddr: r.RemoteAddr,
		Header:     r.Header,
		Body:       body,
		Route:      rt.pattern,
	}, w: w}
	req := &sr.Request
	req.Stream = sr
	if body == nil {
		// Nothing was read: the gateway's start is the guest's too. A
		// body's reading does not count against the wall-time limit.
		req.Start = start
	}
	resp, err := g.serve(r.Context(), fn, req, start)
	if sr.started {
		if err == nil && len(resp.Body) > 0 {
			err = sr.Body(resp.Body)
		}
		if err != nil {
			// The head is out: the status cannot change. Cutting the
			// connection is how the client learns the body is incomplete.
			g.logFailure(r.Context(), fn, id, err, start)
			panic(http.ErrAbortHandler)
		}
		return
	}
	if err != nil {
		g.fail(r.Context(), w, id, fn, err, start)
		return
	}
	for k, vs := range resp.Header {
		h[k] = vs
	}
	vals[1] = strconv.Itoa(len(resp.Body))
	h["Content-Length"] = vals[1:2:2]
	w.WriteHeader(resp.Status)
	w.Write(resp.Body)
}

// streamedRequest is a request whose guest may stream its response
// (wasm.Stream): the head goes out at the guest's first flush (chunked
// unless the guest set a Content-Length), and the body as the guest writes
// it. One allocation with
// the request.
type streamedRequest struct {
	wasm.Request
	w       http.ResponseWriter
	started bool
}

func (s *streamedRequest) Head(status int, h http.Header) error {
	hdr := s.w.Header()
	for k, vs := range h {
		hdr[k] = vs
	}
	// A Content-Length the guest set stays (a known length, e.g. a
	// proxied body's); otherwise the body goes out chunked.
	s.started = true
	s.w.WriteHeader(status)
	return s.flush()
}

func (s *streamedRequest) Body(p []byte) error {
	if _, err := s.w.Write(p); err != nil {
		return err
	}
	return s.flush()
}

// flush pushes what was written to the client; a writer that cannot flush
// (it hands on every write anyway, or buffers for a test) is no error.
func (s *streamedRequest) flush() error {
	if err := http.NewResponseController(s.w).Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

// serve runs the guest for req, in a span of its own when the request is
// traced, and tells the observer.
func (g *Gateway) serve(ctx context.Context, fn *wasm.Function, req *wasm.Request, start time.Time) (*wasm.Response, error) {
	parent := trace.SpanFromContext(ctx)
	span, traced := parent, parent.IsRecording()
	if traced { // the name is built only for a traced request
		ctx, span = obs.Child(ctx, fn.SpanName(), attribute.String("verge.function", fn.Spec.Name), attribute.String("verge.route", req.Route))
	}
	resp, err := fn.Serve(ctx, req)
	var status int
	var cpu time.Duration
	var limit string
	if err != nil {
		e := wasm.AsError(err)
		status, cpu = e.Status, e.CPU
		if e.IsLimit() {
			limit = e.Kind
		}
	} else {
		status, cpu = resp.Status, resp.CPU
	}
	if traced {
		// One call with every attribute: the span's slice grows once.
		attrs := [3]attribute.KeyValue{attribute.Int64("verge.cpu_time_us", cpu.Microseconds()), attribute.Int("http.response.status_code", status)}
		if err != nil {
			e := wasm.AsError(err)
			span.SetStatus(codes.Error, e.Kind)
			attrs[2] = attribute.String("verge.error", e.Kind)
		} else {
			attrs[2] = attribute.Bool("verge.fresh_instance", resp.Fresh)
		}
		obs.SetAttributes(span, attrs[:]...)
		span.End()
		obs.SetAttributes(parent, attribute.String("verge.function", fn.Spec.Name))
	}
	if g.Observe != nil {
		g.Observe(fn.Spec.Name, status, time.Since(start), cpu, limit)
	}
	return resp, err
}

// readBody reads the request body, refusing more than limit bytes.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	tooLarge := func() error {
		return &wasm.Error{Kind: wasm.KindRequestBody, Status: http.StatusRequestEntityTooLarge,
			Msg: "request body exceeds the function's limit of " + strconv.FormatInt(limit, 10) + " bytes (limits.request_body)"}
	}
	if r.ContentLength > limit {
		return nil, tooLarge()
	}
	if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	size := int64(512)
	if r.ContentLength > 0 {
		size = r.ContentLength
	}
	buf := make([]byte, 0, size)
	for {
		if int64(len(buf)) == int64(cap(buf)) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return nil, tooLarge()
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, &wasm.Error{Kind: "bad_request", Status: http.StatusBadRequest, Msg: "reading the request body: " + err.Error()}
		}
	}
}

func (g *Gateway) fail(ctx context.Context, w http.ResponseWriter, id string, fn *wasm.Function, err error, start time.Time) {
	writeError(w, id, g.logFailure(ctx, fn, id, err, start))
}

// logFailure logs a failed request with ctx, so that the line carries the
// request's trace and span ids when it is traced.
func (g *Gateway) logFailure(ctx context.Context, fn *wasm.Function, id string, err error, start time.Time) *wasm.Error {
	e := wasm.AsError(err)
	attrs := []any{"function", fn.Spec.Name, "request_id", id, "kind", e.Kind, "err", e.Error(), "elapsed", time.Since(start)}
	switch {
	case e.Status == 499:
		g.log.DebugContext(ctx, "client went away", attrs...)
	case e.IsLimit():
		g.log.WarnContext(ctx, "request exceeded a limit", attrs...)
	default:
		g.log.ErrorContext(ctx, "request failed", attrs...)
	}
	return e
}

func writeError(w http.ResponseWriter, id string, e *wasm.Error) {
	if e.Status == 499 {
		return // nobody is listening
	}
	resp := e.Response(id)
	jsonapi.Write(w, resp.Status, resp.Body)
}
