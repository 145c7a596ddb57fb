package host

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/wasm"
	"github.com/verge-edge/verge/internal/wasm/wasmtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	wasmtest.Cleanup()
	os.Exit(code)
}

func fixture(name string) string { return filepath.Join("testdata", name) }

// newEngine is an engine whose guests reach s.
func newEngine(tb testing.TB, s Services) *wasm.Engine {
	tb.Helper()
	e, err := wasm.NewEngine(wasm.Options{CacheDir: "-", Logger: slog.New(slog.DiscardHandler), Capabilities: Capabilities(s)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.Close(context.Background()) })
	return e
}

func load(tb testing.TB, e *wasm.Engine, spec verge.Function) *wasm.Function {
	tb.Helper()
	f, err := e.Load(context.Background(), wasmtest.Spec(spec))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close(context.Background()) })
	return f
}

func buildGo(tb testing.TB, pkg string) string { return wasmtest.BuildGo(tb, pkg, true) }

func get(path string) *wasm.Request {
	return &wasm.Request{ID: "t", Method: "GET", URI: path, Path: path, Host: "127.0.0.1", RemoteAddr: "127.0.0.1:9", Header: http.Header{}, Route: "/*", Proto: "HTTP/1.1"}
}

// serveOK asserts that f answers a good request with status 200 and body.
func serveOK(t *testing.T, f *wasm.Function, path, body string) {
	t.Helper()
	resp, err := f.Serve(context.Background(), get(path))
	if err != nil {
		t.Fatalf("good request failed: %v", err)
	}
	if resp.Status != 200 || string(resp.Body) != body {
		t.Fatalf("good request: got %d %q, want 200 %q", resp.Status, resp.Body, body)
	}
}

// kerr is an error of a kind (a service's sentinel) with its own message,
// as services return them.
func kerr(kind error, format string, args ...any) error { return Errorf(kind, format, args...) }
