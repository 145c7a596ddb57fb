package cache

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"
)

// clock is a settable clock; it starts on a whole second so that Date
// headers (second precision) say exactly what the cache sees.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// origin is a real HTTP origin (httptest) whose handler a test sets; it
// records every request it gets.
type origin struct {
	srv    *httptest.Server
	client *http.Client
	clk    *clock

	mu      sync.Mutex
	handler http.HandlerFunc
	reqs    []http.Header
	arrived chan struct{} // one value per request received
}

func newOrigin(t testing.TB, clk *clock) *origin {
	o := &origin{clk: clk, arrived: make(chan struct{}, 10000)}
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.reqs = append(o.reqs, r.Header.Clone())
		h := o.handler
		o.mu.Unlock()
		o.arrived <- struct{}{}
		if clk != nil {
			w.Header().Set("Date", clk.Now().UTC().Format(http.TimeFormat))
		}
		h(w, r)
	}))
	t.Cleanup(o.srv.Close)
	// DisableCompression: the origin sees Accept-Encoding only when the
	// request has it (Vary tests depend on it).
	tr := &http.Transport{MaxIdleConnsPerHost: 200, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	o.client = &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return o
}

func (o *origin) set(h http.HandlerFunc) {
	o.mu.Lock()
	o.handler = h
	o.mu.Unlock()
}

func (o *origin) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.reqs)
}

func (o *origin) last() http.Header {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.reqs[len(o.reqs)-1]
}

// fetch is the cache's Origin: the request, sent to the test server.
func (o *origin) fetch(ctx context.Context, req *http.Request) (*http.Response, error) {
	r := req.Clone(ctx)
	r.RequestURI = ""
	r.URL.Scheme, r.URL.Host = "http", o.srv.Listener.Addr().String()
	return o.client.Do(r)
}

// static answers with a fixed body and headers (name, value pairs).
func static(body string, kv ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(kv); i += 2 {
			w.Header().Add(kv[i], kv[i+1])
		}
		w.Write([]byte(body))
	}
}

type result struct {
	status int
	header http.Header
	body   string
}

func (r result) label() string { return r.header.Get(HeaderXCache) }
func (r result) age() int {
	n, err := strconv.Atoi(r.header.Get("Age"))
	if err != nil {
		return -1
	}
	return n
}

// do sends GET path (header: name, value pairs) through the cache and
// reads the whole response.
func do(t testing.TB, c *Cache, o *origin, path string, kv ...string) result {
	t.Helper()
	return doMethod(t, c, o, http.MethodGet, path, kv...)
}

func doMethod(t testing.TB, c *Cache, o *origin, method, path string, kv ...string) result {
	t.Helper()
	req, err := http.NewRequest(method, "http://origin.test"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Add(kv[i], kv[i+1])
	}
	resp, err := c.Do(context.Background(), "app", req, o.fetch)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return result{resp.StatusCode, resp.Header, string(b)}
}

// request sends method path (header: name, value pairs) to srv and reads the
// whole response.
func request(t testing.TB, srv *httptest.Server, method, path string, kv ...string) result {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Set(kv[i], kv[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return result{resp.StatusCode, resp.Header, string(b)}
}

// expect checks the X-Cache label, body and origin request count.
func expect(t testing.TB, r result, label, body string, o *origin, originRequests int) {
	t.Helper()
	if r.label() != label || r.body != body || o.count() != originRequests {
		t.Fatalf("got %d %s %q after %d origin requests; want %s %q after %d (headers %v)",
			r.status, r.label(), r.body, o.count(), label, body, originRequests, r.header)
	}
}

// waitFor waits until cond holds, for at most 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// arrivals waits for n origin requests to arrive.
func (o *origin) arrivals(t testing.TB, n int) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for range n {
		select {
		case <-o.arrived:
		case <-timeout:
			t.Fatalf("timed out waiting for %d origin requests", n)
		}
	}
}

func newCache(t testing.TB, clk *clock, opts Options) *Cache {
	t.Helper()
	if clk != nil {
		opts.Now = clk.Now
	}
	c, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
