package wasm

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/verge-edge/verge"
)

var (
	buildMu    sync.Mutex
	buildCache = map[string]string{}
	buildDir   string
)

// buildGo builds a Go guest package (relative to the repo root) for wasip1,
// once per test binary, and returns the .wasm path.
func buildGo(tb testing.TB, pkg string, reactor bool) string {
	tb.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	key := pkg
	if reactor {
		key += "#reactor"
	}
	if p, ok := buildCache[key]; ok {
		return p
	}
	if buildDir == "" {
		d, err := os.MkdirTemp("", "verge-wasm-test-")
		if err != nil {
			tb.Fatal(err)
		}
		buildDir = d
	}
	out := filepath.Join(buildDir, filepath.Base(pkg)+map[bool]string{true: "-reactor", false: ""}[reactor]+".wasm")
	args := []string{"build", "-o", out}
	if reactor {
		args = append(args, "-buildmode=c-shared")
	}
	args = append(args, "./"+pkg)
	cmd := exec.Command("go", args...)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("building %s: %v\n%s", pkg, err, b)
	}
	buildCache[key] = out
	return out
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
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
	if spec.Name == "" {
		spec.Name = "fn"
	}
	if len(spec.Routes) == 0 {
		spec.Routes = []string{"/*"}
	}
	if spec.Isolation == "" {
		spec.Isolation = verge.IsolationPooled
	}
	spec.Limits = spec.Limits.WithDefaults()
	f, err := e.Load(context.Background(), spec)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close(context.Background()) })
	return f
}
