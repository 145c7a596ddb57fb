package wasm

import (
	"context"
	"log/slog"
	"os"
	"testing"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/wasm/wasmtest"
)

func buildGo(tb testing.TB, pkg string, reactor bool) string {
	return wasmtest.BuildGo(tb, pkg, reactor)
}

func TestMain(m *testing.M) {
	code := m.Run()
	wasmtest.Cleanup()
	os.Exit(code)
}

func newTestEngine(tb testing.TB) *Engine {
	tb.Helper()
	e, err := NewEngine(Options{CacheDir: "-", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.Close(context.Background()) })
	return e
}

func load(tb testing.TB, e *Engine, spec verge.Function) *Function {
	tb.Helper()
	f, err := e.Load(context.Background(), wasmtest.Spec(spec))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close(context.Background()) })
	return f
}
