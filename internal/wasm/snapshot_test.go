package wasm

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/verge-edge/verge"
)

// Under strict isolation every request sees a freshly initialised instance:
// nothing a request writes to memory or globals reaches the next one.
func TestStrictRequestsDoNotShareState(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	strict := load(t, e, verge.Function{Module: fixture("state.wasm"), Executor: verge.ExecutorVerge, Isolation: verge.IsolationStrict})
	if strict.snap == nil {
		t.Fatal("no snapshot of a module that allows one")
	}
	for i := 0; i < 5; i++ {
		serveOK(t, strict, "/", "\x01\x01")
	}
	// Pooled, the same instance counts on.
	pooled := load(t, e, verge.Function{Module: fixture("state.wasm"), Executor: verge.ExecutorVerge})
	for i := 1; i <= 3; i++ {
		serveOK(t, pooled, "/", string([]byte{byte(i), byte(i)}))
	}
}

// A Go guest's globals and heap are restored too, and its random generator
// (math/rand, map seeds) draws different numbers in every instance restored
// from the snapshot, including instances created from it concurrently.
func TestStrictGoGuest(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	f := load(t, e, verge.Function{Module: buildGo(t, "internal/wasm/testdata/gostate", true), Executor: verge.ExecutorVerge, Isolation: verge.IsolationStrict})
	if f.snap == nil {
		t.Fatal("no snapshot of the Go guest")
	}
	if len(f.snap.reseed) != 1 {
		t.Fatalf("the Go SDK registered %d ranges to reseed, want its runtime's generator", len(f.snap.reseed))
	}
	body := func(path string) string {
		t.Helper()
		resp, err := f.Serve(context.Background(), get(path))
		if err != nil {
			t.Fatal(err)
		}
		return string(resp.Body)
	}
	seen := map[string]bool{}
	check := func(b string) {
		t.Helper()
		var n int
		var secret, r string
		if _, err := fmt.Sscanf(b, "%d %q %s", &n, &secret, &r); err != nil || n != 1 || secret != "" && secret != "x" {
			t.Fatalf("response %q: a request saw another's state", b)
		}
		if seen[r] {
			t.Fatalf("the random number %s came out of two instances", r)
		}
		seen[r] = true
	}
	if b := body("/?set=x"); !strings.HasPrefix(b, `1 "x" `) {
		t.Fatalf("got %q", b)
	}
	for i := 0; i < 10; i++ {
		b := body("/")
		if !strings.HasPrefix(b, `1 "" `) {
			t.Fatalf("request %d after one that set a secret: %q", i, b)
		}
		check(b)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var out []string
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := f.Serve(context.Background(), get("/"))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			out = append(out, string(resp.Body))
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, b := range out {
		check(b)
	}
}

// random_get is live in a restored instance.
func TestStrictRandomSource(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	f := load(t, e, verge.Function{Module: fixture("random.wasm"), Executor: verge.ExecutorVerge, Isolation: verge.IsolationStrict})
	a, err := f.Serve(context.Background(), get("/"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.Serve(context.Background(), get("/"))
	if err != nil {
		t.Fatal(err)
	}
	if string(a.Body) == string(b.Body) {
		t.Fatalf("two strict requests drew the same random bytes %x", a.Body)
	}
}

// An instance whose memory grew cannot shrink back, and one that changed
// its files cannot be restored: both are replaced, and the next strict
// request still gets a fresh instance.
func TestStrictInstancesThatCannotBeReset(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	f := load(t, e, verge.Function{Module: fixture("strict_edges.wasm"), Executor: verge.ExecutorVerge, Isolation: verge.IsolationStrict})
	if f.snap == nil {
		t.Fatal("no snapshot")
	}
	for _, path := range []string{"/", "/grow", "/", "/close", "/", "/grow", "/close", "/"} {
		want := "\x01\x01"
		if path == "/grow" {
			want = "\x01\x02"
		}
		// Requests run one at a time: the instance on top serves next.
		f.pool.mu.Lock()
		var next *instance
		if n := len(f.pool.idle); n > 0 {
			next = f.pool.idle[n-1]
		}
		f.pool.mu.Unlock()
		serveOK(t, f, path, want)
		if next != nil && path != "/" && !next.mod.IsClosed() {
			t.Fatalf("the instance that served %s was kept", path)
		}
		if next != nil && path == "/" && next.mod.IsClosed() {
			t.Fatal("an instance that could be reset was closed")
		}
	}
}
