package cache

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The hit path, in process: what the cache itself costs per request, beside
// a plain handler writing the same bytes to the same writer. Nothing here
// is asserted; see docs/benchmarks.md.

var page = []byte(strings.Repeat("<p>hello from the edge</p>\n", 40)) // ~1 KiB

// discard is a ResponseWriter that keeps nothing.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}

func pageHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "max-age=3600")
	w.Header().Set("Content-Type", "text/html")
	w.Write(page)
}

func BenchmarkPlainHandler(b *testing.B) {
	h := http.HandlerFunc(pageHandler)
	b.ReportAllocs()
	b.SetBytes(int64(len(page)))
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest("GET", "http://shop.example/p/1", nil)
		w := &discard{h: http.Header{}}
		for pb.Next() {
			clear(w.h)
			h.ServeHTTP(w, req)
		}
	})
}

func BenchmarkHitHandler(b *testing.B) {
	c := New(Options{})
	h := c.Handler("app", http.HandlerFunc(pageHandler))
	req := httptest.NewRequest("GET", "http://shop.example/p/1", nil)
	h.ServeHTTP(&discard{h: http.Header{}}, req) // fill
	b.ReportAllocs()
	b.SetBytes(int64(len(page)))
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest("GET", "http://shop.example/p/1", nil)
		w := &discard{h: http.Header{}}
		for pb.Next() {
			clear(w.h)
			h.ServeHTTP(w, req)
		}
	})
	if s := c.Stats(); s.OriginRequests != 1 {
		b.Fatalf("%d origin requests", s.OriginRequests)
	}
}

// BenchmarkHitDo is a function's fetch answered by the cache.
func BenchmarkHitDo(b *testing.B) {
	c := New(Options{})
	origin := func(ctx context.Context, r *http.Request) (*http.Response, error) {
		rec := httptest.NewRecorder()
		pageHandler(rec, r)
		return rec.Result(), nil
	}
	req, _ := http.NewRequest("GET", "https://api.example/p/1", nil)
	get := func(buf []byte) {
		resp, err := c.Do(context.Background(), "app", req, origin)
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := resp.Body.Read(buf); err == io.EOF {
				break
			}
		}
		resp.Body.Close()
	}
	get(make([]byte, 4096))
	b.ReportAllocs()
	b.SetBytes(int64(len(page)))
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 4096)
		for pb.Next() {
			get(buf)
		}
	})
}

// Over loopback HTTP, side by side: a net/http server writing the bytes,
// and the same server with the cache in front (every request a hit).
func benchmarkHTTP(b *testing.B, h http.Handler) {
	srv := httptest.NewServer(h)
	defer srv.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	b.ReportAllocs()
	b.SetBytes(int64(len(page)))
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 4096)
		for pb.Next() {
			resp, err := client.Get(srv.URL + "/p/1")
			if err != nil {
				b.Fatal(err)
			}
			for {
				if _, err := resp.Body.Read(buf); err != nil {
					break
				}
			}
			resp.Body.Close()
		}
	})
}

func BenchmarkHTTPPlain(b *testing.B) { benchmarkHTTP(b, http.HandlerFunc(pageHandler)) }

func BenchmarkHTTPHit(b *testing.B) {
	benchmarkHTTP(b, New(Options{}).Handler("app", http.HandlerFunc(pageHandler)))
}
