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
	if h.c.passing(h.app, r) {
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
	if s.resp != nil {
		writeResponse(w, s.resp)
		return
	}
	hdr := w.Header()
	src := s.e.header
	if s.notModified {
		src = notModifiedHeader(src)
	}
	for k, v := range src {
		if k == HeaderSurrogateKey || k == "Surrogate-Control" {
			continue
		}
		hdr[k] = v[:len(v):len(v)] // shared with the entry: an append must copy
	}
	switch {
	case s.notModified:
		delete(hdr, "Content-Length")
	case s.lengthHdr != nil:
		hdr["Content-Length"] = s.lengthHdr[:1:1]
	default:
		if n := s.e.body.knownLength(); n >= 0 {
			hdr["Content-Length"] = []string{strconv.FormatInt(n, 10)}
		} else {
			delete(hdr, "Content-Length")
		}
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
