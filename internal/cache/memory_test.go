package cache

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestLRUEvictionByBytes(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	// Room for about four 10 KiB objects with their overhead.
	c := newCache(t, clk, Options{MemoryBytes: 48 << 10, MaxObjectBytes: 12 << 10})
	o.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Write([]byte(strings.Repeat(r.URL.Path[1:], 10<<10)))
	})
	for _, p := range []string{"/a", "/b", "/c", "/d"} {
		do(t, c, o, p)
	}
	if s := c.Stats(); s.Entries != 4 || s.Evictions != 0 {
		t.Fatalf("after 4 objects: %+v", s)
	}
	expect(t, do(t, c, o, "/a"), Hit, strings.Repeat("a", 10<<10), o, 4) // /a is now the most recent
	do(t, c, o, "/e")                                                    // evicts /b, the least recently used
	s := c.Stats()
	if s.Evictions != 1 || s.Entries != 4 || s.MemoryBytes > 48<<10 {
		t.Fatalf("after the fifth: %+v", s)
	}
	for _, p := range []string{"/a", "/c", "/d", "/e"} {
		if r := do(t, c, o, p); r.label() != Hit {
			t.Fatalf("%s: %s, want HIT", p, r.label())
		}
	}
	if r := do(t, c, o, "/b"); r.label() != Miss {
		t.Fatalf("/b: %s, want MISS (evicted)", r.label())
	}
}

func TestLargeObjectPassesThroughUncached(t *testing.T) {
	for _, known := range []bool{true, false} {
		t.Run(fmt.Sprintf("content-length=%v", known), func(t *testing.T) {
			clk := newClock()
			o := newOrigin(t, clk)
			c := newCache(t, clk, Options{MaxObjectBytes: 64 << 10})
			big := strings.Repeat("0123456789abcdef", 64<<10) // 1 MiB
			o.set(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", "max-age=600")
				if known {
					w.Header().Set("Content-Length", fmt.Sprint(len(big)))
				}
				w.Write([]byte(big))
			})
			expect(t, do(t, c, o, "/big"), Miss, big, o, 1)
			expect(t, do(t, c, o, "/big"), Miss, big, o, 2)
			if s := c.Stats(); s.Entries != 0 || s.MemoryBytes != 0 {
				t.Fatalf("a large object was kept: %+v", s)
			}
			// Small ones are still stored.
			o.set(static("small", "Cache-Control", "max-age=600"))
			do(t, c, o, "/small")
			expect(t, do(t, c, o, "/small"), Hit, "small", o, 3)
		})
	}
}

// A body reaches its first client while the origin is still sending it,
// and a second client reads the same bytes without asking the origin.
func TestStreamingFill(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	c := newCache(t, clk, Options{})
	more := make(chan struct{})
	o.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Write([]byte("first line\n"))
		w.(http.Flusher).Flush()
		<-more
		w.Write([]byte("second line\n"))
	})
	open := func() (*http.Response, *bufio.Reader) {
		req, _ := http.NewRequest("GET", "http://origin.test/stream", nil)
		resp, err := c.Do(context.Background(), "app", req, o.fetch)
		if err != nil {
			t.Fatal(err)
		}
		return resp, bufio.NewReader(resp.Body)
	}
	r1, b1 := open()
	defer r1.Body.Close()
	if line, err := b1.ReadString('\n'); err != nil || line != "first line\n" {
		t.Fatalf("first client, before the origin finished: %q %v", line, err)
	}
	if r1.ContentLength != -1 || r1.Header.Get("Content-Length") != "" {
		t.Fatalf("an incomplete body has a length: %d %q", r1.ContentLength, r1.Header.Get("Content-Length"))
	}
	r2, b2 := open()
	defer r2.Body.Close()
	if r2.Header.Get(HeaderXCache) != Hit {
		t.Fatalf("second client: %s, want HIT (reading the filling entry)", r2.Header.Get(HeaderXCache))
	}
	if line, err := b2.ReadString('\n'); err != nil || line != "first line\n" {
		t.Fatalf("second client: %q %v", line, err)
	}
	close(more)
	for _, b := range []*bufio.Reader{b1, b2} {
		rest, err := io.ReadAll(b)
		if err != nil || string(rest) != "second line\n" {
			t.Fatalf("rest: %q %v", rest, err)
		}
	}
	if o.count() != 1 {
		t.Fatalf("%d origin requests", o.count())
	}
	r := do(t, c, o, "/stream")
	if r.label() != Hit || r.header.Get("Content-Length") != "23" {
		t.Fatalf("complete: %s Content-Length %q", r.label(), r.header.Get("Content-Length"))
	}
}

// An origin that breaks off mid-body: the client sees an error, and
// nothing is stored.
func TestTruncatedBodyIsNotStored(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	c := newCache(t, clk, Options{})
	o.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Content-Length", "100")
		w.Write([]byte("only ten b"))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // closes the connection
	})
	req, _ := http.NewRequest("GET", "http://origin.test/t", nil)
	resp, err := c.Do(context.Background(), "app", req, o.fetch)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Fatalf("read %q without an error", b)
	}
	waitFor(t, "the entry to go", func() bool { return c.Stats().Entries == 0 })
	o.set(static("whole", "Cache-Control", "max-age=600"))
	expect(t, do(t, c, o, "/t"), Miss, "whole", o, 2)
}
