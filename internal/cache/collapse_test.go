package cache

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// waiters is how many requests wait behind the flight of path.
func (c *Cache) waiters(app, path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.flights[app+"\x00origin.test"+path]; f != nil {
		return f.waiters
	}
	return -1
}

// concurrently runs n requests for path and returns their results once
// every one has finished.
func concurrently(t *testing.T, c *Cache, o *origin, n int, path string) []result {
	var wg sync.WaitGroup
	out := make([]result, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", "http://origin.test"+path, nil)
			resp, err := c.Do(context.Background(), "app", req, o.fetch)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Error(err)
			}
			out[i] = result{resp.StatusCode, resp.Header, string(b)}
		}()
	}
	return func() []result { wg.Wait(); return out }()
}

func TestCollapsing(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	c := newCache(t, clk, Options{})
	release := make(chan struct{})
	body := strings.Repeat("x", 100<<10) // several chunks
	o.set(func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Cache-Control", "max-age=60")
		w.Write([]byte(body))
	})
	done := make(chan []result)
	go func() { done <- concurrently(t, c, o, 100, "/hot") }()
	o.arrivals(t, 1)
	// Hold the origin until the 99 others are waiting for its answer.
	waitFor(t, "99 requests waiting", func() bool { return c.waiters("app", "/hot") == 99 })
	close(release)
	res := <-done
	labels := map[string]int{}
	for _, r := range res {
		if r.body != body {
			t.Fatalf("a collapsed request got %d bytes, want %d", len(r.body), len(body))
		}
		labels[r.label()]++
	}
	if o.count() != 1 || labels[Miss] != 1 || labels[Hit] != 99 {
		t.Fatalf("%d origin requests, labels %v; want 1 request, 1 MISS and 99 HIT", o.count(), labels)
	}
	if s := c.Stats(); s.Collapsed != 99 || s.OriginRequests != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestCollapsedPrivateResponsesAreNotShared(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	c := newCache(t, clk, Options{})
	release := make(chan struct{})
	o.set(func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Cache-Control", "private, max-age=60")
		w.Write([]byte("mine"))
	})
	done := make(chan []result)
	go func() { done <- concurrently(t, c, o, 10, "/me") }()
	o.arrivals(t, 1)
	waitFor(t, "9 requests waiting", func() bool { return c.waiters("app", "/me") == 9 })
	close(release)
	res := <-done
	for _, r := range res {
		if r.label() != Pass || r.body != "mine" {
			t.Fatalf("got %s %q; want PASS mine", r.label(), r.body)
		}
	}
	// The leader's private answer went to the leader only: each waiter
	// asked the origin itself.
	if o.count() != 10 {
		t.Fatalf("%d origin requests; want 10", o.count())
	}
}

func TestCollapsedWaitersBounded(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	c := newCache(t, clk, Options{MaxWaiters: 3})
	release := make(chan struct{})
	o.set(func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Cache-Control", "max-age=60")
		w.Write([]byte("b"))
	})
	done := make(chan []result)
	go func() { done <- concurrently(t, c, o, 10, "/b") }()
	// 1 leader and 3 waiters share a request; the 6 others go on their own.
	o.arrivals(t, 7)
	close(release)
	<-done
	if n := o.count(); n != 7 {
		t.Fatalf("%d origin requests; want 7", n)
	}
}

func TestLeaderLeavingDoesNotFailWaiters(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	c := newCache(t, clk, Options{})
	release := make(chan struct{})
	o.set(func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Cache-Control", "max-age=60")
		w.Write([]byte("ok"))
	})
	ctx, cancel := context.WithCancel(context.Background())
	leaderErr := make(chan error)
	go func() {
		req, _ := http.NewRequest("GET", "http://origin.test/l", nil)
		_, err := c.Do(ctx, "app", req, o.fetch)
		leaderErr <- err
	}()
	o.arrivals(t, 1)
	done := make(chan []result)
	go func() { done <- concurrently(t, c, o, 5, "/l") }()
	waitFor(t, "5 waiters", func() bool { return c.waiters("app", "/l") == 5 })
	cancel()
	if err := <-leaderErr; err != context.Canceled {
		t.Fatalf("leader: %v; want context.Canceled", err)
	}
	close(release)
	for _, r := range <-done {
		if r.body != "ok" || r.label() != Hit {
			t.Fatalf("waiter: %s %q; want HIT ok", r.label(), r.body)
		}
	}
	if o.count() != 1 {
		t.Fatalf("%d origin requests; want 1", o.count())
	}
	expect(t, do(t, c, o, "/l"), Hit, "ok", o, 1)
}

func TestCollapsedVariantsDoNotMix(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	c := newCache(t, clk, Options{})
	release := make(chan struct{})
	o.set(func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "Accept-Language")
		w.Write([]byte(r.Header.Get("Accept-Language")))
	})
	langs := []string{"en", "fr", "de"}
	var wg sync.WaitGroup
	got := make([]string, len(langs))
	for i, l := range langs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = do(t, c, o, "/lang", "Accept-Language", l).body
		}()
	}
	o.arrivals(t, 1)
	waitFor(t, "2 waiters", func() bool { return c.waiters("app", "/lang") == 2 })
	close(release)
	wg.Wait()
	for i, l := range langs {
		if got[i] != l {
			t.Fatalf("Accept-Language %s got %q", l, got[i])
		}
	}
}

func TestOriginErrorIsShared(t *testing.T) {
	c := newCache(t, newClock(), Options{})
	var calls int
	var mu sync.Mutex
	release := make(chan struct{})
	origin := func(ctx context.Context, r *http.Request) (*http.Response, error) {
		mu.Lock()
		calls++
		mu.Unlock()
		<-release
		return nil, io.ErrUnexpectedEOF
	}
	errs := make(chan error, 5)
	for range 5 {
		go func() {
			req, _ := http.NewRequest("GET", "http://origin.test/err", nil)
			_, err := c.Do(context.Background(), "app", req, origin)
			errs <- err
		}()
	}
	waitFor(t, "4 waiters", func() bool { return c.waiters("app", "/err") == 4 })
	close(release)
	for range 5 {
		if err := <-errs; err != io.ErrUnexpectedEOF {
			t.Fatalf("got %v; want the origin's error", err)
		}
	}
	if calls != 1 {
		t.Fatalf("%d origin calls; want 1", calls)
	}
}
