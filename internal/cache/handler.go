package cache

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
)

// Handler serves app's requests through the cache in front of next (the
// gateway's function): a response next marks cacheable is stored and
// served to later requests without running next, concurrent misses run it
// once, and Surrogate-Key is stripped before the client sees the response.
//
// Unlike Do, it ignores the request's own Cache-Control: clients of the
// public edge must not be able to bypass or empty the cache (CDNs do the
// same). next runs with a context detached from the client's, so that a
// response several requests wait for is not cut short when the first
// client leaves; the function's own wall-time limit bounds it.
func (c *Cache) Handler(app string, next http.Handler) http.Handler {
	return &handler{c: c, app: app, next: next}
}

type handler struct {
	c    *Cache
	app  string
	next http.Handler
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !safe(r.Method) {
		h.pass(w, r)
		return
	}
	s, err := h.c.get(r.Context(), h.app, r, h.origin, false, true)
	if err != nil {
		if !isContextErr(err) {
			http.Error(w, "cache: "+err.Error(), http.StatusBadGateway)
		}
		return
	}
	if s.straight {
		h.pass(w, r)
		return
	}
	if s.resp != nil {
		writeResponse(w, s.resp)
		return
	}
	writeServed(w, s)
}

// ServeHit answers r as app's Handler would when the cache holds a fresh
// response for it whose body is whole in memory, and reports whether it
// did, with the status it answered (the stored one, or 304 to a
// conditional request). Otherwise it writes nothing, counts nothing and
// changes nothing: the caller sends r down its full path, through
// Handler. It lets a PoP answer hits before the work only a function's run
// needs; before it writes, head (when not nil) adds the caller's own
// fields to the header.
func (c *Cache) ServeHit(app string, w http.ResponseWriter, r *http.Request, head func(http.Header)) (code int, ok bool) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead || len(r.Header["Range"]) > 0 || len(r.Header["If-Range"]) > 0 {
		return 0, false
	}
	var kb [256]byte
	pk, _ := keyOf(kb[:0], r)
	auth := len(r.Header["Authorization"]) > 0
	now := c.now()
	c.mu.Lock()
	e := c.lookupLocked(app, pk, r.Header, auth)
	// Complete and in the LRU: its body is whole in memory and never
	// changes again, so serveLocked needs no reader.
	if e == nil || e.lru == nil || judge(e, now, noDirectives()) != useFresh {
		c.unlock()
		return 0, false
	}
	s, ok := c.serveLocked(r.Context(), r, e, now, Hit, nil, true)
	c.unlock()
	if !ok || s.body != nil {
		closeReader(s.body) // not reached: a complete entry is written from its chunks
		return 0, false
	}
	c.count(Hit)
	if head != nil {
		head(w.Header())
	}
	writeServed(w, s)
	return s.status(), true
}

// autoLength is the largest body net/http's ResponseWriter measures itself
// when the handler writes it whole and returns without flushing (it
// buffers that much before it would chunk; "under a few KB" in its
// documentation). A writer that does not (httptest's recorder) sees no
// Content-Length for such a body.
const autoLength = 2048

// writeServed writes an answer from an entry.
func writeServed(w http.ResponseWriter, s served) {
	hdr := w.Header()
	if s.notModified {
		for k, v := range notModifiedHeader(s.e.header) {
			hdr[k] = v[:len(v):len(v)]
		}
		delete(hdr, "Content-Length")
	} else {
		for _, f := range s.e.fields {
			hdr[f.key] = f.vals
		}
		switch {
		case s.chunks != nil && s.e.size <= autoLength:
			// net/http adds the Content-Length of a small body written
			// whole: one field fewer in the maps it grows and clones.
		case s.lengthHdr != nil:
			hdr["Content-Length"] = s.lengthHdr[:1:1]
		default:
			if n := s.e.body.knownLength(); n >= 0 {
				hdr["Content-Length"] = []string{strconv.FormatInt(n, 10)}
			} else {
				delete(hdr, "Content-Length")
			}
		}
	}
	for _, f := range s.own {
		hdr[f.key] = f.vals
	}
	hdr["Age"] = s.ageHdr[:1:1]
	hdr[HeaderXCache] = labelHdr[s.label][:1:1]
	w.WriteHeader(s.status())
	for _, c := range s.chunks {
		if _, err := w.Write(c); err != nil {
			return
		}
	}
	if s.body != nil {
		_, err := s.body.WriteTo(w)
		s.body.Close()
		if err != nil {
			// The origin's body broke off (or the client left): ending the
			// response normally would hand the client a truncated body as
			// if whole. Cutting the connection tells it.
			panic(http.ErrAbortHandler)
		}
	}
}

// writeResponse copies a response that did not come from an entry.
func writeResponse(w http.ResponseWriter, resp *http.Response) {
	defer resp.Body.Close()
	hdr := w.Header()
	for k, v := range resp.Header {
		if k == HeaderSurrogateKey || k == "Surrogate-Control" {
			continue
		}
		hdr[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	buf := make([]byte, 32<<10)
	f, _ := w.(http.Flusher)
	var written int64
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			written += int64(n)
			// A streamed response reaches the client as it comes; a whole
			// one goes out with its head in one write when this returns.
			if f != nil && (resp.ContentLength < 0 || written < resp.ContentLength) {
				f.Flush()
			}
		}
		if err == io.EOF {
			return
		}
		if err != nil {
			resp.Body.Close()
			panic(http.ErrAbortHandler) // broke off: the client must not take it as whole
		}
	}
}

// origin runs next for a miss and returns its response as soon as next has
// written its head; the body streams through a pipe while next writes it.
func (h *handler) origin(ctx context.Context, req *http.Request) (*http.Response, error) {
	pr, pw := io.Pipe()
	w := &pipeWriter{header: http.Header{}, pw: pw, head: make(chan struct{})}
	go func() {
		defer func() {
			if p := recover(); p != nil {
				w.fail(fmt.Errorf("cache: the handler panicked: %v", p))
				return
			}
			w.WriteHeader(http.StatusOK) // no-op if written
			pw.Close()
		}()
		h.next.ServeHTTP(w, req)
	}()
	select {
	case <-w.head:
	case <-ctx.Done():
		pr.CloseWithError(ctx.Err())
		return nil, ctx.Err()
	}
	if w.err != nil {
		return nil, w.err
	}
	resp := &http.Response{
		Status: fmt.Sprintf("%d %s", w.code, http.StatusText(w.code)), StatusCode: w.code,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: w.sent, Body: pr, ContentLength: -1, Request: req,
	}
	if n, err := strconv.ParseInt(w.sent.Get("Content-Length"), 10, 64); err == nil && n >= 0 {
		resp.ContentLength = n
	}
	return resp, nil
}

// pipeWriter is the http.ResponseWriter next writes to on a miss.
type pipeWriter struct {
	header http.Header
	pw     *io.PipeWriter
	once   sync.Once
	head   chan struct{}
	code   int
	sent   http.Header
	err    error
}

func (w *pipeWriter) Header() http.Header { return w.header }

func (w *pipeWriter) WriteHeader(code int) {
	w.once.Do(func() {
		w.code, w.sent = code, w.header.Clone()
		close(w.head)
	})
}

func (w *pipeWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.pw.Write(p)
}

// Flush is a no-op: the pipe hands every write over as it happens.
func (w *pipeWriter) Flush() {}

func (w *pipeWriter) fail(err error) {
	sent := true
	w.once.Do(func() {
		sent = false
		w.err = err
		close(w.head)
	})
	if sent {
		w.pw.CloseWithError(err) // the client sees a truncated body
	}
}
