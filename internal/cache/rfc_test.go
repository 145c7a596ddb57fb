package cache

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Every RFC 9111 behaviour below is asserted by the headers a client sees
// (X-Cache, Age, the status) and by what reached the origin.

func TestMaxAgeHitAndAge(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	c := newCache(t, clk, Options{})
	o.set(static("v1", "Cache-Control", "max-age=60"))
	expect(t, do(t, c, o, "/a"), Miss, "v1", o, 1)
	r := do(t, c, o, "/a")
	expect(t, r, Hit, "v1", o, 1)
	if r.age() != 0 || r.header.Get("Content-Length") != "2" {
		t.Fatalf("Age %q, Content-Length %q; want 0 and 2", r.header.Get("Age"), r.header.Get("Content-Length"))
	}
	clk.Advance(30 * time.Second)
	if r = do(t, c, o, "/a"); r.label() != Hit || r.age() != 30 {
		t.Fatalf("after 30 s: %s Age %d; want HIT 30", r.label(), r.age())
	}
	clk.Advance(31 * time.Second)
	o.set(static("v2", "Cache-Control", "max-age=60"))
	expect(t, do(t, c, o, "/a"), Miss, "v2", o, 2)
	expect(t, do(t, c, o, "/a?x=1"), Miss, "v2", o, 3) // the query is part of the key
}

func TestAgeFromOrigin(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	c := newCache(t, clk, Options{})
	// An upstream cache already held it 50 s of its 60.
	o.set(static("v1", "Cache-Control", "max-age=60", "Age", "50"))
	if r := do(t, c, o, "/a"); r.label() != Miss || r.age() != 50 {
		t.Fatalf("%s Age %d; want MISS 50", r.label(), r.age())
	}
	clk.Advance(9 * time.Second)
	if r := do(t, c, o, "/a"); r.label() != Hit || r.age() != 59 {
		t.Fatalf("%s Age %d; want HIT 59", r.label(), r.age())
	}
	clk.Advance(2 * time.Second)
	expect(t, do(t, c, o, "/a"), Miss, "v1", o, 2)
}

func TestSMaxAgeWinsForASharedCache(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	c := newCache(t, clk, Options{})
	o.set(static("v", "Cache-Control", "max-age=3600, s-maxage=10"))
	do(t, c, o, "/a")
	clk.Advance(9 * time.Second)
	expect(t, do(t, c, o, "/a"), Hit, "v", o, 1)
	clk.Advance(2 * time.Second)
	expect(t, do(t, c, o, "/a"), Miss, "v", o, 2)
}

func TestExpires(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	c := newCache(t, clk, Options{})
	o.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Expires", clk.Now().Add(20*time.Second).UTC().Format(http.TimeFormat))
		w.Write([]byte("e"))
	})
	do(t, c, o, "/e")
	clk.Advance(19 * time.Second)
	expect(t, do(t, c, o, "/e"), Hit, "e", o, 1)
	clk.Advance(2 * time.Second)
	expect(t, do(t, c, o, "/e"), Miss, "e", o, 2)

	// An invalid Expires means already expired: with no validator it is
	// not worth storing.
	o.set(static("z", "Expires", "0"))
	expect(t, do(t, c, o, "/z"), Pass, "z", o, 3)
	expect(t, do(t, c, o, "/z"), Pass, "z", o, 4)
	// max-age wins over Expires.
	o.set(static("m", "Expires", "0", "Cache-Control", "max-age=60"))
	do(t, c, o, "/m")
	expect(t, do(t, c, o, "/m"), Hit, "m", o, 5)
}

func TestHeuristicFreshness(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	c := newCache(t, clk, Options{})
	// Modified 100 hours ago: fresh for a tenth of that, 10 hours.
	o.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Last-Modified", clk.Now().Add(-100*time.Hour).UTC().Format(http.TimeFormat))
		w.Write([]byte("h"))
	})
	do(t, c, o, "/h")
	clk.Advance(9 * time.Hour)
	expect(t, do(t, c, o, "/h"), Hit, "h", o, 1)
	clk.Advance(2 * time.Hour)
	// Stale: revalidated with If-Modified-Since.
	o.set(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNotModified) })
	expect(t, do(t, c, o, "/h"), Revalidated, "h", o, 2)
	if o.last().Get("If-Modified-Since") == "" {
		t.Fatal("the revalidation carried no If-Modified-Since")
	}
	// A 302 is not heuristically cacheable.
	o.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Last-Modified", clk.Now().Add(-100*time.Hour).UTC().Format(http.TimeFormat))
		w.Header().Set("Location", "/elsewhere")
		w.WriteHeader(http.StatusFound)
	})
	if r := do(t, c, o, "/r"); r.label() != Pass || r.status != http.StatusFound {
		t.Fatalf("302 without freshness: %d %s; want 302 PASS", r.status, r.label())
	}
	// Unless it says so.
	o.set(static("", "Location", "/x", "Cache-Control", "max-age=60"))
	o.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "/x")
		w.Header().Set("Cache-Control", "max-age=60")
		w.WriteHeader(http.StatusFound)
	})
	do(t, c, o, "/r2")
	if r := do(t, c, o, "/r2"); r.label() != Hit || r.status != http.StatusFound || r.header.Get("Location") != "/x" {
		t.Fatalf("302 with max-age: %d %s %v; want a 302 HIT", r.status, r.label(), r.header)
	}
}

func TestNotStored(t *testing.T) {
	for _, tc := range []struct {
		name string
		kv   []string
		req  []string
	}{
		{"no-store", []string{"Cache-Control", "max-age=60, no-store"}, nil},
		{"private", []string{"Cache-Control", "private, max-age=60"}, nil},
		{"qualified private", []string{"Cache-Control", `max-age=60, private="X-User"`}, nil},
		{"set-cookie", []string{"Cache-Control", "max-age=60", "Set-Cookie", "s=1"}, nil},
		{"vary star", []string{"Cache-Control", "max-age=60", "Vary", "*"}, nil},
		{"authorization", []string{"Cache-Control", "max-age=60"}, []string{"Authorization", "Bearer x"}},
		{"request no-store", []string{"Cache-Control", "max-age=60"}, []string{"Cache-Control", "no-store"}},
		{"no freshness, no validator", []string{"Content-Type", "text/plain"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			o := newOrigin(t, clk)
			c := newCache(t, clk, Options{})
			o.set(static("p", tc.kv...))
			expect(t, do(t, c, o, "/p", tc.req...), Pass, "p", o, 1)
			expect(t, do(t, c, o, "/p", tc.req...), Pass, "p", o, 2)
			if s := c.Stats(); s.Entries != 0 {
				t.Fatalf("%d entries stored", s.Entries)
			}
		})
	}
}

func TestAuthorizationWithPublic(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	c := newCache(t, clk, Options{})
	o.set(static("shared", "Cache-Control", "public, max-age=60"))
	do(t, c, o, "/p", "Authorization", "Bearer a")
	expect(t, do(t, c, o, "/p", "Authorization", "Bearer b"), Hit, "shared", o, 1)
	// An entry stored without public does not answer requests with
	// Authorization.
	o.set(static("plain", "Cache-Control", "max-age=60"))
	do(t, c, o, "/q")
	expect(t, do(t, c, o, "/q", "Authorization", "Bearer a"), Pass, "plain", o, 3)
}

func TestNoCacheRevalidatesEveryUse(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	c := newCache(t, clk, Options{})
	o.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache, max-age=3600")
		w.Header().Set("ETag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Write([]byte("body"))
	})
	expect(t, do(t, c, o, "/n"), Miss, "body", o, 1)
	for i := 2; i <= 4; i++ {
		expect(t, do(t, c, o, "/n"), Revalidated, "body", o, i)
		if o.last().Get("If-None-Match") != `"v1"` {
			t.Fatalf("revalidation %d carried If-None-Match %q", i, o.last().Get("If-None-Match"))
		}
	}
}

func TestRevalidationMergesHeaders(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	c := newCache(t, clk, Options{})
	o.set(static("original", "Cache-Control", "max-age=10", "ETag", `"e1"`, "X-Old", "kept", "X-Changed", "before"))
	do(t, c, o, "/m")
	clk.Advance(11 * time.Second)
	o.set(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("If-None-Match") != `"e1"` {
			t.Errorf("revalidation with If-None-Match %q", r.Header.Get("If-None-Match"))
		}
		w.Header().Set("Cache-Control", "max-age=100")
		w.Header().Set("ETag", `"e1"`)
		w.Header().Set("X-Changed", "after")
		w.Header().Set("Content-Length", "999") // describes no body: ignored
		w.WriteHeader(http.StatusNotModified)
	})
	r := do(t, c, o, "/m")
	expect(t, r, Revalidated, "original", o, 2)
	if r.status != 200 || r.header.Get("X-Old") != "kept" || r.header.Get("X-Changed") != "after" ||
		r.header.Get("Content-Length") != "8" || r.header.Get("Cache-Control") != "max-age=100" {
		t.Fatalf("merged response: %d %v", r.status, r.header)
	}
	// Fresh for the 304's 100 s now.
	clk.Advance(90 * time.Second)
	expect(t, do(t, c, o, "/m"), Hit, "original", o, 2)
	clk.Advance(11 * time.Second)
	// A 200 replaces the entry.
	o.set(static("new", "Cache-Control", "max-age=100", "ETag", `"e2"`))
	expect(t, do(t, c, o, "/m"), Miss, "new", o, 3)
	expect(t, do(t, c, o, "/m"), Hit, "new", o, 3)
}

func TestNotModifiedForAnotherRepresentation(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	c := newCache(t, clk, Options{})
	o.set(static("one", "Cache-Control", "max-age=1", "ETag", `"1"`))
	do(t, c, o, "/x")
	clk.Advance(2 * time.Second)
	o.set(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("If-None-Match") != "" {
			// A confused origin validates an ETag we do not hold.
			w.Header().Set("ETag", `"2"`)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", `"2"`)
		w.Header().Set("Cache-Control", "max-age=60")
		w.Write([]byte("two"))
	})
	// RFC 9111 4.3.4: that 304 updates nothing; the cache asks again
	// without conditions.
	expect(t, do(t, c, o, "/x"), Miss, "two", o, 3)
}

func TestVary(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	c := newCache(t, clk, Options{})
	o.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "Accept-Encoding, Accept-Language")
		w.Write([]byte("enc=" + r.Header.Get("Accept-Encoding") + " lang=" + r.Header.Get("Accept-Language")))
	})
	expect(t, do(t, c, o, "/v", "Accept-Encoding", "gzip"), Miss, "enc=gzip lang=", o, 1)
	expect(t, do(t, c, o, "/v", "Accept-Encoding", "br"), Miss, "enc=br lang=", o, 2)
	expect(t, do(t, c, o, "/v"), Miss, "enc= lang=", o, 3)
	expect(t, do(t, c, o, "/v", "Accept-Encoding", "gzip"), Hit, "enc=gzip lang=", o, 3)
	expect(t, do(t, c, o, "/v", "Accept-Encoding", "br"), Hit, "enc=br lang=", o, 3)
	expect(t, do(t, c, o, "/v"), Hit, "enc= lang=", o, 3)
	// Whitespace around commas does not make another variant.
	expect(t, do(t, c, o, "/v", "Accept-Encoding", "gzip,br"), Miss, "enc=gzip,br lang=", o, 4)
	expect(t, do(t, c, o, "/v", "Accept-Encoding", "gzip, br"), Hit, "enc=gzip,br lang=", o, 4)
	// A second varying field.
	expect(t, do(t, c, o, "/v", "Accept-Encoding", "gzip", "Accept-Language", "fr"), Miss, "enc=gzip lang=fr", o, 5)
	expect(t, do(t, c, o, "/v", "Accept-Encoding", "gzip"), Hit, "enc=gzip lang=", o, 5)
	if s := c.Stats(); s.Entries != 5 {
		t.Fatalf("%d entries, want 5 variants", s.Entries)
	}
}

func TestStaleWhileRevalidate(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	c := newCache(t, clk, Options{})
	o.set(static("v1", "Cache-Control", "max-age=10, stale-while-revalidate=60", "ETag", `"1"`))
	do(t, c, o, "/s")
	o.arrivals(t, 1)
	clk.Advance(15 * time.Second)
	// The origin is slow now: the revalidation waits until released.
	release := make(chan struct{})
	o.set(func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Cache-Control", "max-age=10, stale-while-revalidate=60")
		w.Header().Set("ETag", `"2"`)
		w.Write([]byte("v2"))
	})
	for range 10 {
		r := do(t, c, o, "/s")
		if r.label() != Stale || r.body != "v1" || r.age() != 15 {
			t.Fatalf("stale within stale-while-revalidate: %s %q Age %d; want STALE v1 15", r.label(), r.body, r.age())
		}
	}
	o.arrivals(t, 1) // one revalidation, in the background
	close(release)
	waitFor(t, "the revalidated body", func() bool { return do(t, c, o, "/s").body == "v2" })
	if n := o.count(); n != 2 {
		t.Fatalf("%d origin requests; want 2 (ten stale answers share one revalidation)", n)
	}
	if o.last().Get("If-None-Match") != `"1"` {
		t.Fatal("the background revalidation was not conditional")
	}
	expect(t, do(t, c, o, "/s"), Hit, "v2", o, 2)
	// Past the window: a plain (blocking) revalidation.
	clk.Advance(80 * time.Second)
	o.set(static("v3", "Cache-Control", "max-age=10"))
	expect(t, do(t, c, o, "/s"), Miss, "v3", o, 3)
}

func TestStaleIfError(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	c := newCache(t, clk, Options{})
	o.set(static("good", "Cache-Control", "max-age=10, stale-if-error=60"))
	do(t, c, o, "/e")
	clk.Advance(15 * time.Second)
	o.set(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) })
	if r := do(t, c, o, "/e"); r.label() != StaleIfError || r.body != "good" || r.status != 200 || r.age() != 15 {
		t.Fatalf("503 within stale-if-error: %d %s %q Age %d; want 200 STALE-IF-ERROR good 15", r.status, r.label(), r.body, r.age())
	}
	// A connection error counts as an error too.
	req, _ := http.NewRequest("GET", "http://origin.test/e", nil)
	resp, err := c.Do(t.Context(), "app", req, func(context.Context, *http.Request) (*http.Response, error) {
		return nil, errors.New("connection refused")
	})
	if err != nil || resp.Header.Get(HeaderXCache) != StaleIfError {
		t.Fatalf("connection error within stale-if-error: %v %v", err, resp)
	}
	resp.Body.Close()
	// Past the window, the error reaches the client.
	clk.Advance(60 * time.Second)
	if r := do(t, c, o, "/e"); r.status != http.StatusServiceUnavailable || r.label() != Pass {
		t.Fatalf("503 past stale-if-error: %d %s; want 503 PASS", r.status, r.label())
	}
	// The request's own stale-if-error extends it.
	o.set(static("good", "Cache-Control", "max-age=10"))
	do(t, c, o, "/f")
	clk.Advance(30 * time.Second)
	o.set(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusBadGateway) })
	if r := do(t, c, o, "/f", "Cache-Control", "stale-if-error=60"); r.label() != StaleIfError {
		t.Fatalf("request stale-if-error: %s; want STALE-IF-ERROR", r.label())
	}
	if r := do(t, c, o, "/f"); r.status != http.StatusBadGateway {
		t.Fatalf("without it: %d; want 502", r.status)
	}
}

func TestMustRevalidateIsNeverServedStale(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	c := newCache(t, clk, Options{})
	for _, cc := range []string{"must-revalidate", "proxy-revalidate", "s-maxage=10"} {
		path := "/" + strings.ReplaceAll(cc, "=", "")
		o.set(static("v", "Cache-Control", "max-age=10, stale-if-error=600, stale-while-revalidate=600, "+cc))
		do(t, c, o, path)
		clk.Advance(11 * time.Second)
		o.set(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) })
		if r := do(t, c, o, path); r.status != http.StatusServiceUnavailable {
			t.Fatalf("%s: stale served on error: %d %s", cc, r.status, r.label())
		}
		// Nor with max-stale from the request.
		if r := do(t, c, o, path, "Cache-Control", "max-stale"); r.status != http.StatusServiceUnavailable {
			t.Fatalf("%s: stale served for max-stale: %d %s", cc, r.status, r.label())
		}
	}
}

func TestRequestDirectives(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	c := newCache(t, clk, Options{})
	o.set(static("v", "Cache-Control", "max-age=100", "ETag", `"a"`))
	do(t, c, o, "/r")
	clk.Advance(50 * time.Second)
	// no-cache and max-age=0 revalidate; Pragma: no-cache too.
	o.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=100")
		w.WriteHeader(http.StatusNotModified)
	})
	expect(t, do(t, c, o, "/r", "Cache-Control", "no-cache"), Revalidated, "v", o, 2)
	clk.Advance(50 * time.Second)
	expect(t, do(t, c, o, "/r", "Cache-Control", "max-age=10"), Revalidated, "v", o, 3)
	expect(t, do(t, c, o, "/r", "Pragma", "no-cache"), Revalidated, "v", o, 4)
	// min-fresh: fresh for 100 s, but not 200 more.
	expect(t, do(t, c, o, "/r", "Cache-Control", "min-fresh=200"), Revalidated, "v", o, 5)
	expect(t, do(t, c, o, "/r", "Cache-Control", "min-fresh=50"), Hit, "v", o, 5)
	// max-stale accepts a stale response as it is.
	clk.Advance(110 * time.Second)
	expect(t, do(t, c, o, "/r", "Cache-Control", "max-stale=20"), Stale, "v", o, 5)
	expect(t, do(t, c, o, "/r", "Cache-Control", "max-stale=5"), Revalidated, "v", o, 6)
	// only-if-cached: 504 rather than a request to the origin.
	if r := do(t, c, o, "/nothing", "Cache-Control", "only-if-cached"); r.status != http.StatusGatewayTimeout || o.count() != 6 {
		t.Fatalf("only-if-cached miss: %d after %d origin requests; want 504 after 6", r.status, o.count())
	}
	expect(t, do(t, c, o, "/r", "Cache-Control", "only-if-cached"), Hit, "v", o, 6)
}

func TestClientConditionalAnsweredFromCache(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	c := newCache(t, clk, Options{})
	lm := clk.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)
	o.set(static("body", "Cache-Control", "max-age=60", "ETag", `W/"t1"`, "Last-Modified", lm, "Content-Type", "text/plain"))
	// The client's conditional does not reach the origin: the cache wants
	// a full response to store.
	if r := do(t, c, o, "/c", "If-None-Match", `W/"t1"`); r.status != http.StatusNotModified || r.label() != Miss {
		t.Fatalf("conditional miss: %d %s; want 304 MISS", r.status, r.label())
	}
	if o.last().Get("If-None-Match") != "" {
		t.Fatal("the client's If-None-Match reached the origin")
	}
	r := do(t, c, o, "/c", "If-None-Match", `"x", "t1"`)
	if r.status != http.StatusNotModified || r.label() != Hit || r.body != "" || r.header.Get("ETag") != `W/"t1"` || r.header.Get("Content-Type") != "" {
		t.Fatalf("If-None-Match hit: %d %s %q %v", r.status, r.label(), r.body, r.header)
	}
	if r := do(t, c, o, "/c", "If-None-Match", `"other"`); r.status != 200 || r.body != "body" {
		t.Fatalf("If-None-Match mismatch: %d %q", r.status, r.body)
	}
	if r := do(t, c, o, "/c", "If-Modified-Since", lm); r.status != http.StatusNotModified {
		t.Fatalf("If-Modified-Since: %d", r.status)
	}
	if r := do(t, c, o, "/c", "If-Modified-Since", clk.Now().Add(-2*time.Hour).UTC().Format(http.TimeFormat)); r.status != 200 {
		t.Fatalf("If-Modified-Since before the change: %d", r.status)
	}
	if o.count() != 1 {
		t.Fatalf("%d origin requests; want 1", o.count())
	}
}

func TestHead(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	c := newCache(t, clk, Options{})
	o.set(static("twelve bytes", "Cache-Control", "max-age=60"))
	// A HEAD miss goes to the origin as a HEAD and stores nothing.
	if r := doMethod(t, c, o, http.MethodHead, "/h"); r.label() != Pass || r.body != "" {
		t.Fatalf("HEAD miss: %s %q", r.label(), r.body)
	}
	do(t, c, o, "/h")
	r := doMethod(t, c, o, http.MethodHead, "/h")
	if r.label() != Hit || r.body != "" || r.header.Get("Content-Length") != "12" || o.count() != 2 {
		t.Fatalf("HEAD hit: %s %q %v after %d origin requests", r.label(), r.body, r.header, o.count())
	}
}

func TestUnsafeMethodInvalidates(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	c := newCache(t, clk, Options{})
	o.set(static("v", "Cache-Control", "max-age=60"))
	do(t, c, o, "/u")
	do(t, c, o, "/other")
	o.set(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			w.Header().Set("Location", "/other")
			w.WriteHeader(http.StatusCreated)
			return
		}
		w.Header().Set("Cache-Control", "max-age=60")
		w.Write([]byte("v2"))
	})
	if r := doMethod(t, c, o, http.MethodPost, "/u"); r.status != http.StatusCreated || r.label() != Pass {
		t.Fatalf("POST: %d %s", r.status, r.label())
	}
	expect(t, do(t, c, o, "/u"), Miss, "v2", o, 4)
	expect(t, do(t, c, o, "/other"), Miss, "v2", o, 5) // named by Location
	// A failed POST invalidates nothing.
	o.set(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusConflict) })
	doMethod(t, c, o, http.MethodPost, "/u")
	expect(t, do(t, c, o, "/u"), Hit, "v2", o, 6)
}

func TestAppsAreSeparate(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	c := newCache(t, clk, Options{})
	o.set(static("v", "Cache-Control", "max-age=60"))
	req := func() *http.Request { r, _ := http.NewRequest("GET", "http://origin.test/x", nil); return r }
	for _, app := range []string{"a", "b", "a"} {
		resp, err := c.Do(t.Context(), app, req(), o.fetch)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if o.count() != 2 {
		t.Fatalf("%d origin requests; want one per app", o.count())
	}
}
