package cache

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A function's own responses, served through Handler: cacheable ones are
// served without running the function again.
func TestHandler(t *testing.T) {
	clk := newClock()
	c := newCache(t, clk, Options{})
	var runs atomic.Int64
	fn := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		switch r.URL.Path {
		case "/cacheable":
			w.Header().Set("Cache-Control", "public, max-age=60")
			w.Header().Set("Surrogate-Key", "page home")
			w.Header().Set("Date", clk.Now().UTC().Format(http.TimeFormat))
			w.Write([]byte("page"))
		case "/panic":
			panic("boom")
		default:
			w.Write([]byte("dynamic"))
		}
	})
	srv := httptest.NewServer(c.Handler("app", fn))
	defer srv.Close()
	get := func(path string, kv ...string) result {
		t.Helper()
		return request(t, srv, http.MethodGet, path, kv...)
	}
	r := get("/cacheable")
	if r.label() != Miss || r.body != "page" || r.header.Get(HeaderSurrogateKey) != "" || runs.Load() != 1 {
		t.Fatalf("first: %s %q %v after %d runs", r.label(), r.body, r.header, runs.Load())
	}
	clk.Advance(7e9)
	// A client's no-cache does not reach past the edge cache.
	r = get("/cacheable", "Cache-Control", "no-cache", "Pragma", "no-cache")
	if r.label() != Hit || r.age() != 7 || r.body != "page" || r.header.Get(HeaderSurrogateKey) != "" ||
		r.header.Get("Content-Length") != "4" || runs.Load() != 1 {
		t.Fatalf("second: %s Age %d %q %v after %d runs", r.label(), r.age(), r.body, r.header, runs.Load())
	}
	if n := c.Purge("app", Purge{Keys: []string{"home"}}); n != 1 {
		t.Fatalf("purged %d", n)
	}
	if r = get("/cacheable"); r.label() != Miss || runs.Load() != 2 {
		t.Fatalf("after the purge: %s after %d runs", r.label(), runs.Load())
	}
	// Responses that do not say they are cacheable run the function every time.
	for i := 3; i <= 4; i++ {
		if r = get("/dynamic"); r.label() != Pass || r.body != "dynamic" || runs.Load() != int64(i) {
			t.Fatalf("dynamic: %s %q after %d runs", r.label(), r.body, runs.Load())
		}
	}
	if r = get("/panic"); r.status != http.StatusBadGateway {
		t.Fatalf("a panicking function: %d", r.status)
	}
	// A client's conditional request is answered from the cache.
	if r = get("/cacheable", "If-Modified-Since", clk.Now().UTC().Format(http.TimeFormat)); r.status != 200 {
		t.Fatalf("no Last-Modified, so If-Modified-Since is ignored: %d", r.status)
	}
}

func TestHandlerCollapsesAndStreams(t *testing.T) {
	c := newCache(t, nil, Options{})
	var runs atomic.Int64
	first, rest := make(chan struct{}), make(chan struct{})
	fn := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		w.Header().Set("Cache-Control", "max-age=60")
		w.Write([]byte("head\n"))
		w.(http.Flusher).Flush()
		close(first)
		<-rest
		w.Write([]byte("tail\n"))
	})
	srv := httptest.NewServer(c.Handler("app", fn))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/s")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "head\n" {
		t.Fatalf("the first piece before the function finished: %q %v", line, err)
	}
	<-first
	var wg sync.WaitGroup
	bodies := make([]string, 10)
	for i := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(srv.URL + "/s")
			if err != nil {
				t.Error(err)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			bodies[i] = string(b)
		}()
	}
	close(rest)
	wg.Wait()
	tail, _ := io.ReadAll(br)
	if string(tail) != "tail\n" {
		t.Fatalf("tail %q", tail)
	}
	for _, b := range bodies {
		if b != "head\ntail\n" {
			t.Fatalf("a concurrent client got %q", b)
		}
	}
	if runs.Load() != 1 {
		t.Fatalf("the function ran %d times", runs.Load())
	}
}

// Per-request fields (a request id) are not stored: the request whose miss
// ran the function gets the function's, every answer from the cache the
// caller's own.
func TestHandlerPerRequestFields(t *testing.T) {
	clk := newClock()
	c := newCache(t, clk, Options{PerRequest: []string{"x-request-id"}})
	var runs atomic.Int64
	fn := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := runs.Add(1)
		w.Header().Set("X-Request-Id", "run-"+strconv.FormatInt(n, 10))
		w.Header().Set("Cache-Control", "max-age=60")
		w.Write([]byte("page"))
	})
	var calls atomic.Int64
	h := c.Handler("app", fn)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The caller's own id, as the PoP sets it before the cache.
		w.Header().Set("X-Request-Id", "caller-"+strconv.FormatInt(calls.Add(1), 10))
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	get := func() result {
		t.Helper()
		return request(t, srv, http.MethodGet, "/p")
	}
	if r := get(); r.label() != Miss || r.header.Get("X-Request-Id") != "run-1" {
		t.Fatalf("the miss: %s, id %q; want the run's, run-1", r.label(), r.header.Get("X-Request-Id"))
	}
	for i := 2; i <= 3; i++ {
		r := get()
		if want := "caller-" + strconv.Itoa(i); r.label() != Hit || r.header.Get("X-Request-Id") != want || r.body != "page" {
			t.Fatalf("hit %d: %s, id %q %q; want its own id %s", i, r.label(), r.header.Get("X-Request-Id"), r.body, want)
		}
	}
	if runs.Load() != 1 {
		t.Fatalf("the function ran %d times", runs.Load())
	}
	// Do (a function's fetch) does not hand out the stored id either.
	resp, err := c.Do(t.Context(), "app", httptest.NewRequest("GET", srv.URL+"/p", nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get(HeaderXCache) != Hit || resp.Header.Get("X-Request-Id") != "" {
		t.Fatalf("Do: %s, id %q", resp.Header.Get(HeaderXCache), resp.Header.Get("X-Request-Id"))
	}
}

// ServeHit answers exactly what Handler would answer from memory, fresh,
// and leaves everything else to it, having written nothing.
func TestServeHit(t *testing.T) {
	clk := newClock()
	c := newCache(t, clk, Options{})
	var runs atomic.Int64
	fn := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		w.Header().Set("Cache-Control", "max-age=10")
		w.Header().Set("Etag", `"v1"`)
		w.Header().Set("Surrogate-Key", "k")
		w.Header().Set("Date", clk.Now().UTC().Format(http.TimeFormat))
		w.Write([]byte("hello"))
	})
	h := c.Handler("app", fn)
	head := func(hdr http.Header) { hdr.Set("X-Own", "1") }
	hit := func(method, path string, kv ...string) (*httptest.ResponseRecorder, bool) {
		t.Helper()
		req := httptest.NewRequest(method, "http://shop.example"+path, nil)
		for i := 0; i+1 < len(kv); i += 2 {
			req.Header.Set(kv[i], kv[i+1])
		}
		w := httptest.NewRecorder()
		code, ok := c.ServeHit("app", w, req, head)
		if ok && code != w.Code || !ok && code != 0 {
			t.Errorf("%s %s: ServeHit says %d (%v), answered %d", method, path, code, ok, w.Code)
		}
		return w, ok
	}
	if w, ok := hit("GET", "/a"); ok || len(w.Header()) != 0 || w.Body.Len() != 0 {
		t.Fatalf("nothing stored: answered %v, wrote %v %q", ok, w.Header(), w.Body)
	}
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "http://shop.example/a", nil))
	clk.Advance(3e9)
	w, ok := hit("GET", "/a")
	if !ok || w.Code != 200 || w.Body.String() != "hello" || w.Header().Get(HeaderXCache) != Hit || w.Header().Get("Age") != "3" ||
		w.Header().Get("X-Own") != "1" || w.Header().Get(HeaderSurrogateKey) != "" || w.Header().Get("Etag") != `"v1"` {
		t.Fatalf("a fresh hit: %v %d %v %q", ok, w.Code, w.Header(), w.Body)
	}
	if w, ok = hit("GET", "/a", "If-None-Match", `"v1"`); !ok || w.Code != 304 || w.Body.Len() != 0 {
		t.Fatalf("a conditional hit: %v %d %q", ok, w.Code, w.Body)
	}
	if w, ok = hit("HEAD", "/a"); !ok || w.Code != 200 || w.Body.Len() != 0 || w.Header().Get("Content-Length") != "5" {
		t.Fatalf("HEAD: %v %d %v", ok, w.Code, w.Header())
	}
	for _, kv := range [][]string{{"Range", "bytes=0-1"}, {}} {
		method := "GET"
		if len(kv) == 0 {
			method = "POST"
		}
		if w, ok = hit(method, "/a", kv...); ok || len(w.Header()) != 0 {
			t.Fatalf("%s %v: answered %v, wrote %v", method, kv, ok, w.Header())
		}
	}
	hits := c.Stats().Hits
	clk.Advance(10e9) // stale: Handler revalidates it, ServeHit does not
	if w, ok = hit("GET", "/a"); ok || len(w.Header()) != 0 || w.Body.Len() != 0 || c.Stats().Hits != hits {
		t.Fatalf("stale: answered %v, wrote %v, hits %d → %d", ok, w.Header(), hits, c.Stats().Hits)
	}
	if runs.Load() != 1 {
		t.Fatalf("the function ran %d times", runs.Load())
	}
}

// Hit-for-pass: a URL whose response could not be stored goes straight to
// the function for passTTL, without the miss path's collapsing (concurrent
// requests run at once); server errors and request-specific reasons do not
// mark a URL, a purge forgets the marks, and unsafe requests passed
// straight on still invalidate.
func TestHandlerHitForPass(t *testing.T) {
	clk := newClock()
	c := newCache(t, clk, Options{})
	var cacheable, failing atomic.Bool
	var runs atomic.Int64
	const together = 4
	var arrived sync.WaitGroup
	arrived.Add(together)
	var barrier atomic.Bool
	fn := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		if barrier.Load() {
			// Every one of the concurrent requests must be running at
			// once; collapsed onto one run, they would never all arrive.
			arrived.Done()
			done := make(chan struct{})
			go func() { arrived.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				w.Write([]byte("collapsed"))
				return
			}
		}
		switch {
		case failing.Load():
			w.WriteHeader(http.StatusServiceUnavailable)
		case cacheable.Load():
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("Date", clk.Now().UTC().Format(http.TimeFormat))
		}
		w.Header().Set(HeaderSurrogateKey, "k")
		w.Write([]byte("ok"))
	})
	srv := httptest.NewServer(c.Handler("app", fn))
	defer srv.Close()
	do := func(method, path string, kv ...string) result {
		t.Helper()
		return request(t, srv, method, path, kv...)
	}
	expectLabel := func(r result, label string) {
		t.Helper()
		if r.label() != label || r.header.Get(HeaderSurrogateKey) != "" {
			t.Fatalf("%s (Surrogate-Key %q), want %s", r.label(), r.header.Get(HeaderSurrogateKey), label)
		}
	}

	expectLabel(do("GET", "/a"), Pass) // not cacheable: marked
	barrier.Store(true)
	var wg sync.WaitGroup
	bodies := make([]string, together)
	for i := range together {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", srv.URL+"/a", nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				bodies[i] = resp.Header.Get(HeaderXCache) + " " + string(b)
			}
		}()
	}
	wg.Wait()
	barrier.Store(false)
	for _, b := range bodies {
		if b != "PASS ok" {
			t.Fatalf("concurrent requests for a marked URL: %q", bodies)
		}
	}

	// It turns cacheable: passed on until the mark expires, then stored.
	cacheable.Store(true)
	expectLabel(do("GET", "/a"), Pass)
	clk.Advance(passTTL + time.Second)
	expectLabel(do("GET", "/a"), Miss)
	expectLabel(do("GET", "/a"), Hit)

	// A purge forgets the marks.
	cacheable.Store(false)
	expectLabel(do("GET", "/b"), Pass)
	cacheable.Store(true)
	c.Purge("app", Purge{URLs: []string{"/elsewhere"}})
	expectLabel(do("GET", "/b"), Miss)

	// A server error does not mark its URL, nor does a response that could
	// not be stored because the request had Authorization.
	failing.Store(true)
	if r := do("GET", "/c"); r.status != http.StatusServiceUnavailable || r.label() != Pass {
		t.Fatalf("server error: %d %s", r.status, r.label())
	}
	failing.Store(false)
	expectLabel(do("GET", "/c"), Miss)
	expectLabel(do("GET", "/d", "Authorization", "Bearer x"), Pass)
	expectLabel(do("GET", "/d"), Miss)

	// An unsafe request goes straight on, and invalidates its URL.
	n := runs.Load()
	expectLabel(do("GET", "/d"), Hit)
	expectLabel(do("POST", "/d"), Pass)
	expectLabel(do("GET", "/d"), Miss)
	if runs.Load() != n+2 {
		t.Fatalf("%d runs for a hit, a POST and a miss, want 2", runs.Load()-n)
	}
}
