package cache

import (
	"net/http"
	"testing"
	"time"
)

func TestPurge(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	c := newCache(t, clk, Options{})
	o.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		switch r.URL.Path {
		case "/p/1":
			w.Header().Set("Surrogate-Key", "product-1  all-products")
		case "/p/2":
			w.Header().Set("Surrogate-Key", "product-2 all-products")
		}
		w.Write([]byte(r.URL.Path))
	})
	fill := func() {
		for _, p := range []string{"/p/1", "/p/2", "/home", "/home?x=1"} {
			do(t, c, o, p)
		}
	}
	hit := func(path string) bool { return do(t, c, o, path).label() == Hit }
	fill()
	if r := do(t, c, o, "/p/1"); r.header.Get(HeaderSurrogateKey) == "" {
		t.Fatal("Do hides Surrogate-Key from the function (only the Handler strips it)")
	}

	if n := c.Purge("app", Purge{Keys: []string{"product-1"}}); n != 1 {
		t.Fatalf("purged %d for product-1", n)
	}
	if hit("/p/1") || !hit("/p/2") || !hit("/home") {
		t.Fatal("purge by key: wrong entries left")
	}
	fill()
	if n := c.Purge("app", Purge{Keys: []string{"all-products", "nothing"}}); n != 2 {
		t.Fatalf("purged %d for all-products", n)
	}
	if hit("/p/1") || hit("/p/2") || !hit("/home") {
		t.Fatal("purge by shared key: wrong entries left")
	}
	fill()
	// By URL: absolute (any scheme, host case-insensitive) or a path.
	if n := c.Purge("app", Purge{URLs: []string{"https://ORIGIN.test/home"}}); n != 1 {
		t.Fatalf("purged %d for the absolute URL", n)
	}
	if hit("/home") || !hit("/home?x=1") {
		t.Fatal("purge by URL: the query is part of the URL")
	}
	fill()
	if n := c.Purge("app", Purge{URLs: []string{"/home?x=1", "/p/2"}}); n != 2 {
		t.Fatalf("purged %d for two paths", n)
	}
	if hit("/home?x=1") || hit("/p/2") || !hit("/p/1") {
		t.Fatal("purge by path: wrong entries left")
	}
	fill()
	if n := c.Purge("other-app", Purge{All: true}); n != 0 {
		t.Fatalf("purging another app purged %d", n)
	}
	if n := c.Purge("app", Purge{All: true}); n != 4 {
		t.Fatalf("purge all purged %d, want 4", n)
	}
	if s := c.Stats(); s.Entries != 0 || s.MemoryBytes != 0 {
		t.Fatalf("after purging all: %+v", s)
	}
}

func TestSoftPurge(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	c := newCache(t, clk, Options{})
	o.set(static("v1", "Cache-Control", "max-age=600", "ETag", `"1"`, "Surrogate-Key", "k"))
	do(t, c, o, "/s")
	clk.Advance(5 * time.Second)
	if n := c.Purge("app", Purge{Keys: []string{"k"}, Soft: true}); n != 1 {
		t.Fatalf("soft purge: %d", n)
	}
	// Still stored, but stale: revalidated before use.
	o.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.WriteHeader(http.StatusNotModified)
	})
	expect(t, do(t, c, o, "/s"), Revalidated, "v1", o, 2)
	expect(t, do(t, c, o, "/s"), Hit, "v1", o, 2)

	// With stale-while-revalidate, a softly purged entry is served stale
	// while it is refreshed; with stale-if-error, it covers an outage.
	o.set(static("w1", "Cache-Control", "max-age=600, stale-while-revalidate=30, stale-if-error=300"))
	do(t, c, o, "/w")
	c.Purge("app", Purge{URLs: []string{"/w"}, Soft: true})
	o.set(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) })
	if r := do(t, c, o, "/w"); r.label() != Stale || r.body != "w1" {
		t.Fatalf("soft-purged within stale-while-revalidate: %s %q", r.label(), r.body)
	}
	clk.Advance(60 * time.Second)
	o.arrivals(t, 4) // the earlier requests and the background one
	if r := do(t, c, o, "/w"); r.label() != StaleIfError || r.body != "w1" {
		t.Fatalf("soft-purged within stale-if-error: %s %q", r.label(), r.body)
	}
	// A hard purge removes it: the outage shows.
	c.Purge("app", Purge{All: true})
	if r := do(t, c, o, "/w"); r.status != http.StatusServiceUnavailable {
		t.Fatalf("after a hard purge: %d %s", r.status, r.label())
	}
}

func TestPurgeDuringFetchIsNotStored(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	c := newCache(t, clk, Options{})
	release := make(chan struct{})
	o.set(func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Cache-Control", "max-age=600")
		w.Write([]byte("old"))
	})
	got := make(chan result)
	go func() { got <- do(t, c, o, "/f") }()
	o.arrivals(t, 1)
	// The purge happens while the origin is answering: that answer may be
	// what was purged.
	c.Purge("app", Purge{URLs: []string{"/f"}})
	close(release)
	if r := <-got; r.body != "old" {
		t.Fatalf("the request in flight got %q", r.body)
	}
	o.set(static("new", "Cache-Control", "max-age=600"))
	expect(t, do(t, c, o, "/f"), Miss, "new", o, 2)
}
