package gateway

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/wasm"
	"github.com/verge-edge/verge/internal/wasm/wasmtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	wasmtest.Cleanup()
	os.Exit(code)
}

// streamGateway serves the gostream guest; its test_wait host call blocks
// until release is closed.
func streamGateway(t *testing.T, release <-chan struct{}) *httptest.Server {
	t.Helper()
	wait := wasm.HostFunction{Name: "test_wait", Call: func(ctx context.Context, c *wasm.Call, _ []uint64) uint32 {
		wasm.Blocking(ctx, func(ctx context.Context) {
			select {
			case <-release:
			case <-ctx.Done():
			}
		})
		return wasm.StatusOK
	}}
	e, err := wasm.NewEngine(wasm.Options{CacheDir: "-", Logger: quiet,
		Capabilities: []wasm.Capability{{Name: "test", Functions: []wasm.HostFunction{wait}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	f, err := e.Load(context.Background(), wasmtest.Spec(verge.Function{Name: "stream", Executor: verge.ExecutorVerge,
		Module: wasmtest.BuildGo(t, "internal/gateway/testdata/gostream", true), Routes: []string{"/*"},
		Limits: verge.Limits{WallTime: 2 * time.Minute, CPUTime: time.Minute}}))
	if err != nil {
		t.Fatal(err)
	}
	g := New(quiet)
	t.Cleanup(g.Close)
	g.Set(f)
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return srv
}

// The client reads the first piece while the guest is still running: the
// guest waits (test_wait) until the client has it, so a buffered response
// would never arrive.
func TestStreamReachesTheClientWhileTheGuestRuns(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := streamGateway(t, release)
	resp, err := http.Get(srv.URL + "/?wait=1&n=100")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != -1 || resp.Header.Get("Content-Type") != "text/plain" {
		t.Fatalf("head: %d, length %d, %v", resp.StatusCode, resp.ContentLength, resp.Header)
	}
	got := make(chan string, 1)
	br := bufio.NewReader(resp.Body)
	go func() { line, _ := br.ReadString('\n'); got <- line }()
	select {
	case line := <-got:
		if line != "first\n" {
			t.Fatalf("first piece %q", line)
		}
	case <-time.After(30 * time.Second):
		close(release)
		t.Fatal("the first piece did not arrive while the guest waited: the response was not streamed")
	}
	close(release)
	rest, err := io.ReadAll(br)
	if err != nil || len(rest) != 100 {
		t.Fatalf("rest: %d bytes, %v", len(rest), err)
	}
}

// A guest that fails after its head went out cannot change the status: the
// client sees the body cut short (an error), never a complete response.
func TestStreamFailureCutsTheResponse(t *testing.T) {
	t.Parallel()
	srv := streamGateway(t, nil)
	resp, err := http.Get(srv.URL + "/?n=200000&fail=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("a failed stream read as complete: %d %d bytes", resp.StatusCode, len(b))
	}
	if !strings.HasPrefix(string(b), "first\n") {
		t.Fatalf("the body before the cut: %q", b[:min(len(b), 20)])
	}
}

// 1 GiB streamed through a function: the PoP's heap stays within a few MiB
// (a buffered response would need the whole GiB, past the body limit).
func TestStreamGigabyteInFlatMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 1 GiB through a guest")
	}
	srv := streamGateway(t, nil)
	const size = 1 << 30
	var peak atomic.Uint64
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // sample the heap while the body flows
		defer close(done)
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	resp, err := http.Get(srv.URL + "/?n=" + strconv.Itoa(size))
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	close(stop)
	<-done
	if err != nil || n != size+int64(len("first\n")) {
		t.Fatalf("read %d bytes, %v", n, err)
	}
	growth := int64(peak.Load()) - int64(base)
	t.Logf("heap grew by at most %.1f MiB while 1 GiB streamed", float64(growth)/(1<<20))
	if growth > 32<<20 {
		t.Fatalf("heap grew by %d MiB while streaming 1 GiB", growth>>20)
	}
}
