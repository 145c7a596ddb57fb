package cache

import (
	"net/http"
	"time"
)

// Hit-for-pass (RATIONALE.md, "The cache remembers what it cannot
// store"). A function whose responses are not cacheable would otherwise
// pay the whole miss path on every request: a flight, a goroutine and a
// pipe to run it, a copy of its response, and concurrent requests for the
// same URL collapsed onto one run only to find it cannot be shared. So a
// URL whose response the cache may not store is remembered for passTTL:
// until then its requests run the function directly, in the client's
// goroutine, as if there were no cache, and are labelled PASS. As Varnish
// and Fastly do, a response that cannot be stored because of this request
// (Authorization) or of a server error does not mark its URL; any purge of
// the app forgets its marks, and so does passTTL: a function that starts
// answering cacheably is cached again within passTTL.

// passTTL is how long a URL whose response could not be stored goes
// straight to the function.
const passTTL = 30 * time.Second

// maxPassMarks bounds the marks the cache keeps (a few dozen bytes each);
// past it, they are all forgotten and learnt again.
const maxPassMarks = 1 << 16

// markPassLocked remembers that app's URL primary is not cacheable.
func (c *Cache) markPassLocked(app, primary string, now time.Time) {
	if c.passMarks >= maxPassMarks {
		c.passes, c.passMarks = nil, 0
	}
	if c.passes == nil {
		c.passes = map[string]map[string]time.Time{}
	}
	m := c.passes[app]
	if m == nil {
		m = map[string]time.Time{}
		c.passes[app] = m
	}
	if _, ok := m[primary]; !ok {
		c.passMarks++
	}
	m[primary] = now.Add(passTTL)
}

// forgetPassesLocked drops app's marks (a purge).
func (c *Cache) forgetPassesLocked(app string) {
	c.passMarks -= len(c.passes[app])
	delete(c.passes, app)
}

// passMarkedLocked reports whether app's URL primary is marked as not
// cacheable, forgetting an expired mark.
func (c *Cache) passMarkedLocked(app string, primary []byte, now time.Time) bool {
	m := c.passes[app]
	if m == nil {
		return false
	}
	until, ok := m[string(primary)]
	if !ok {
		return false
	}
	if now.After(until) {
		delete(m, string(primary))
		c.passMarks--
		return false
	}
	return true
}

// safe reports whether a request's method lets the cache answer it; the
// others go straight to the function and invalidate after (pass).
func safe(method string) bool { return method == http.MethodGet || method == http.MethodHead }

// pass runs next for a request that goes straight to it, labelling the
// response PASS and stripping its purge tags, as the miss path would; an
// unsafe request that succeeded invalidates what it names afterwards.
func (h *handler) pass(w http.ResponseWriter, r *http.Request) {
	h.c.stats.originRequests.Add(1)
	pw := &passWriter{ResponseWriter: w}
	h.next.ServeHTTP(pw, r)
	if !pw.wrote {
		pw.WriteHeader(http.StatusOK)
	}
	if safe(r.Method) {
		return // counted by get
	}
	h.c.count(Pass)
	if r.Method != http.MethodOptions && r.Method != http.MethodTrace && pw.code < 400 {
		h.c.invalidate(h.app, r, w.Header())
	}
}

// passWriter is the response writer of a request passed straight to the
// function: the client's, with the head adjusted once.
type passWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *passWriter) WriteHeader(code int) {
	if w.wrote {
		return
	}
	w.wrote, w.code = true, code
	h := w.Header()
	delete(h, HeaderSurrogateKey)
	delete(h, "Surrogate-Control")
	h[HeaderXCache] = labelHdr[Pass][:1:1]
	w.ResponseWriter.WriteHeader(code)
}

func (w *passWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

func (w *passWriter) Flush() {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (w *passWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
