package wasm

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/verge-edge/verge"
)

func TestRealRandomSource(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	f := load(t, e, verge.Function{Module: fixture("random.wasm"), Executor: verge.ExecutorVerge})
	a, err := f.Serve(context.Background(), get("/"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.Serve(context.Background(), get("/"))
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Body) != 16 || bytes.Equal(a.Body, b.Body) || bytes.Equal(a.Body, make([]byte, 16)) {
		t.Fatalf("random_get gave %x then %x; want 16 different, non-zero bytes", a.Body, b.Body)
	}
}

func TestEnvironment(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	f := load(t, e, verge.Function{Module: fixture("env.wasm"), Executor: verge.ExecutorVerge, Env: map[string]string{"GREETING": "hi", "A": "1"}})
	resp, err := f.Serve(context.Background(), get("/"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "A=1\x00GREETING=hi\x00"; string(resp.Body) != want {
		t.Fatalf("environment %q, want %q", resp.Body, want)
	}
}

func TestCompilationCacheOnDisk(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e, err := NewEngine(Options{CacheDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	f := load(t, e, verge.Function{Module: fixture("hello.wasm"), Executor: verge.ExecutorVerge})
	serveOK(t, f, "/", "hi")
	entries, _ := os.ReadDir(dir)
	if len(entries) == 0 {
		t.Fatal("the compilation cache directory is empty after loading a module")
	}
}
