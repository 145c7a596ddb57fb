// Package wasmtest builds and finds the guests that tests of the engine and
// of host capabilities run. It does not import the engine, so the engine's
// own tests use it too.
package wasmtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/verge-edge/verge"
)

var (
	mu    sync.Mutex
	built = map[string]*build{} // by package (and mode)
	dir   string
)

// build is one guest's build, shared by the tests that want it: distinct
// guests build at the same time (a test binary's parallel tests would
// otherwise wait for each other's links), the same one once.
type build struct {
	once sync.Once
	path string
	err  error
}

// Root is the repository's root directory: the nearest parent holding go.mod.
func Root(tb testing.TB) string {
	tb.Helper()
	d, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		parent := filepath.Dir(d)
		if parent == d {
			tb.Fatal("wasmtest: no go.mod above the working directory")
		}
		d = parent
	}
}

// Fixture is the path of a test module in internal/wasm/testdata.
func Fixture(tb testing.TB, name string) string {
	tb.Helper()
	return filepath.Join(Root(tb), "internal", "wasm", "testdata", name)
}

// BuildGo builds a Go guest package (a path relative to the repository's
// root) for wasip1, once per test binary, and returns the .wasm path; reactor
// builds it with -buildmode=c-shared (the verge executor). Call Cleanup from
// TestMain to remove what it built.
func BuildGo(tb testing.TB, pkg string, reactor bool) string {
	tb.Helper()
	key := pkg
	if reactor {
		key += "#reactor"
	}
	mu.Lock()
	if dir == "" {
		d, err := os.MkdirTemp("", "verge-wasmtest-")
		if err != nil {
			mu.Unlock()
			tb.Fatal(err)
		}
		dir = d
	}
	b := built[key]
	if b == nil {
		b = &build{}
		built[key] = b
	}
	out := filepath.Join(dir, filepath.Base(pkg)+map[bool]string{true: "-reactor", false: ""}[reactor]+".wasm")
	mu.Unlock()
	root := Root(tb)
	b.once.Do(func() {
		args := []string{"build", "-o", out}
		if reactor {
			args = append(args, "-buildmode=c-shared")
		}
		cmd := exec.Command("go", append(args, "./"+pkg)...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		if o, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("building %s: %v\n%s", pkg, err, o)
			return
		}
		b.path = out
	})
	if b.err != nil {
		tb.Fatal(b.err)
	}
	return b.path
}

// Cleanup removes the guests BuildGo built.
func Cleanup() {
	mu.Lock()
	defer mu.Unlock()
	if dir != "" {
		os.RemoveAll(dir)
		dir, built = "", map[string]*build{}
	}
}

// Spec completes a test function's spec the way a manifest would: named
// "fn", routed at "/*", pooled, with default limits.
func Spec(spec verge.Function) verge.Function {
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
	return spec
}
