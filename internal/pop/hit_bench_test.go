package pop

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/app"
	"github.com/verge-edge/verge/internal/cache"
	"github.com/verge-edge/verge/internal/deploy"
	"github.com/verge-edge/verge/internal/gateway"
)

// A cache hit through the PoP's router, in process, beside a plain handler
// writing the same body, both to a writer that handles the header as
// net/http's does (a map made per request, cloned at WriteHeader, written
// sorted). What bench/cache's pophit measures over loopback, less the
// connection's reads and writes. Nothing here is asserted; see
// docs/benchmarks.md.

var hitBody = []byte(strings.Repeat("x", 1024))

// headerWriter keeps the header map work of net/http's ResponseWriter and
// discards the bytes.
type headerWriter struct {
	h     http.Header
	wrote bool
}

func (w *headerWriter) Header() http.Header {
	if w.h == nil {
		w.h = make(http.Header)
	}
	return w.h
}

func (w *headerWriter) WriteHeader(int) {
	if !w.wrote {
		w.wrote = true
		w.Header().Clone().Write(io.Discard)
	}
}

func (w *headerWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return len(p), nil
}

// hitRequest is bench/cache's request: a browser's fields.
func hitRequest() *http.Request {
	r := httptest.NewRequest("GET", "http://proxy.localhost/products/42?fields=name,price&currency=EUR", nil)
	r.RequestURI = r.URL.RequestURI() // as a server has it
	r.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")
	r.Header.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	r.Header.Set("Accept-Language", "en-US,en;q=0.5")
	r.Header.Set("Accept-Encoding", "gzip, deflate, br")
	return r
}

func benchServe(b *testing.B, h http.Handler) {
	b.ReportAllocs()
	b.SetBytes(int64(len(hitBody)))
	b.RunParallel(func(pb *testing.PB) {
		r := hitRequest()
		w := &headerWriter{}
		for pb.Next() {
			w.h, w.wrote = nil, false
			h.ServeHTTP(w, r)
		}
	})
}

func BenchmarkPlainServe(b *testing.B) {
	benchServe(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Content-Type", "text/plain")
		w.Write(hitBody)
	}))
}

// BenchmarkPlainServeNine writes the nine fields a hit of examples/proxy
// carries, as a plain handler: what those fields cost net/http beside the
// two of BenchmarkPlainServe, whoever writes them.
func BenchmarkPlainServeNine(b *testing.B) {
	date := []string{time.Now().UTC().Format(http.TimeFormat)}
	benchServe(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Cache-Control"] = []string{"max-age=3600"}
		h["Content-Type"] = []string{"text/plain"}
		h["Date"] = date
		h["X-Proxied-By"] = []string{"verge"}
		h["Age"] = []string{"0"}
		h["X-Cache"] = []string{"HIT"}
		h[popHeader] = []string{"bench"}
		h[VersionHeader] = []string{"0123456789abcdef0123456789abcdef"}
		h[gateway.RequestIDHeader] = []string{"r-1"}
		w.Write(hitBody)
	}))
}

// BenchmarkRouterHit: examples/proxy's response (its origin's fields and
// X-Proxied-By) from the cache, through the router and hits first.
func BenchmarkRouterHit(b *testing.B) {
	net := verge.Network{PoPs: []verge.PoP{{ID: "bench", Region: "local", Central: true}}}
	p := &PoP{opts: Options{Self: "bench", Network: net}, Cache: cache.New(cache.Options{PerRequest: []string{gateway.RequestIDHeader}}),
		stats: deploy.NewStats()}
	p.self, _ = net.PoP("bench")
	p.slow.Threshold = 100 * time.Millisecond
	m := &verge.Manifest{Name: "proxy", Functions: []verge.Function{{Name: "proxy", Routes: []string{"/*"}}}}
	h := &hosted{name: "proxy", full: m, app: &app.App{Gateway: gateway.New(slog.New(slog.DiscardHandler))}}
	v := "0123456789abcdef0123456789abcdef"
	h.version.Store(&v)
	date := time.Now().UTC().Format(http.TimeFormat)
	fn := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Date", date)
		w.Header().Set("X-Proxied-By", "verge")
		w.Write(hitBody)
	})
	h.edge = &edgeApp{gateway: fn, cached: p.Cache.Handler("proxy", fn)}
	h.handler, h.hits = p.appHandler(h), p.hitsFirst(h)
	p.apps.table.Store(&routing{byName: map[string]*hosted{"proxy": h}, byHost: map[string]*hosted{"proxy.localhost": h}})
	router := p.router()
	for i := range 2 {
		rec := httptest.NewRecorder()
		router.ServeHTTP(rec, hitRequest())
		if want := []string{cache.Miss, cache.Hit}[i]; rec.Header().Get(cache.HeaderXCache) != want || rec.Body.Len() != len(hitBody) {
			b.Fatalf("answer %d: %s with %d bytes, want %s", i, rec.Header().Get(cache.HeaderXCache), rec.Body.Len(), want)
		}
	}
	benchServe(b, router)
}
