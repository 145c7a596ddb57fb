package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/verge-edge/verge"
)

func writeApp(t *testing.T, manifest string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "app")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "verge.toml"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLoadAppErrorsNameTheFile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, manifest, want string }{
		{"syntax", "name = \"x\"\n[[function]\n", "verge.toml"},
		{"wrong type", "name = 3\n", "verge.toml"},
		{"build without module", "name = \"x\"\n[[function]]\nname = \"f\"\nbuild = \"true\"\n", "module must name the file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := writeApp(t, tc.manifest)
			_, err := loadApp(dir)
			if err == nil {
				t.Fatalf("loadApp accepted %q", tc.manifest)
			}
			if !strings.Contains(err.Error(), filepath.Join(dir, "verge.toml")) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not name the manifest path and %q", err, tc.want)
			}
		})
	}
	if _, err := loadApp(t.TempDir()); err == nil || !strings.Contains(err.Error(), "verge.toml") {
		t.Fatalf("missing manifest: got %v, want an error naming verge.toml", err)
	}
}

func TestBuildAppRunsEachCommandOnceInItsDir(t *testing.T) {
	t.Parallel()
	// Two functions share one command; a third has its own. The shared command
	// appends to a file so running it twice would show.
	dir := writeApp(t, `name = "multi"
[[function]]
name = "a"
module = "a.wasm"
executor = "verge"
routes = ["/a"]
build = "echo run >> runs.log && touch a.wasm b.wasm"
[[function]]
name = "b"
module = "b.wasm"
executor = "verge"
routes = ["/b"]
build = "echo run >> runs.log && touch a.wasm b.wasm"
[[function]]
name = "c"
module = "c.wasm"
executor = "verge"
routes = ["/c"]
build = "touch c.wasm"
[[function]]
name = "prebuilt"
module = "a.wasm"
executor = "verge"
routes = ["/prebuilt"]
`)
	a, err := loadApp(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := buildApp(context.Background(), a, time.Minute, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	runs, err := os.ReadFile(filepath.Join(dir, "runs.log"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(string(runs), "run"); got != 1 {
		t.Fatalf("shared build command ran %d times, want 1", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "c.wasm")); err != nil {
		t.Fatalf("second build command did not run in the app dir: %v", err)
	}
}

func TestBuildAppFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, build string
		timeout     time.Duration
		want        []string
	}{
		{"exit status", "echo broken >&2; exit 3", time.Minute, []string{"example failing", `function "f"`, "exit status 3"}},
		{"no output", "true", time.Minute, []string{"example failing", "out.wasm", "missing"}},
		{"timeout", "sleep 30", 200 * time.Millisecond, []string{"example failing", "timed out"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := writeApp(t, fmt.Sprintf("name = \"failing\"\n[[function]]\nname = \"f\"\nmodule = \"out.wasm\"\nexecutor = \"wagi\"\nroutes = [\"/\"]\nbuild = %q\n", tc.build))
			a, err := loadApp(dir)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			err = buildApp(context.Background(), a, tc.timeout, io.Discard, io.Discard)
			if err == nil {
				t.Fatal("build succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			// Under the 10s WaitDelay: the timeout must kill sh's children
			// too, not just wait for them to let go of the output pipes.
			if d := time.Since(start); d > 8*time.Second {
				t.Errorf("failed build took %v: the timeout did not stop the command's process group", d)
			}
		})
	}
}

// TestWAGIExamples builds every example whose function "hello" uses the wagi
// executor (so a new language gets checked by adding its directory) and runs
// the module the way a WAGI host does: CGI variables in the environment, the
// body on stdin, headers + blank line + body on stdout. The expected outputs
// are derived from the inputs, so every example must honour the same contract.
//
// A module older than any file next to it is rebuilt in place, exactly like
// `make examples` and `verge dev` do (this needs the toolchains from
// scripts/setup.sh); an up-to-date one is used as it is, so that under
// `make test` this test never rewrites a module that another package's tests
// may be reading at the same moment.
func TestWAGIExamples(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	dirs, err := exampleDirs(filepath.Join(root, "examples"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	t.Cleanup(func() { r.Close(ctx) })
	wasi_snapshot_preview1.MustInstantiate(ctx, r)

	found := 0
	for _, dir := range dirs {
		a, err := loadApp(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range a.Manifest.Functions {
			if f.Executor != verge.ExecutorWAGI || f.Name != "hello" {
				continue
			}
			found++
			t.Run(a.Manifest.Name, func(t *testing.T) {
				if !upToDate(t, dir, f.Module) {
					var log bytes.Buffer
					if err := buildApp(ctx, a, 5*time.Minute, &log, &log); err != nil {
						t.Fatalf("%v\n%s\n(install the toolchains with scripts/setup.sh)", err, log.String())
					}
				}
				wasm, err := os.ReadFile(f.Module)
				if err != nil {
					t.Fatal(err)
				}
				cm, err := r.CompileModule(ctx, wasm)
				if err != nil {
					t.Fatalf("compiling %s: %v", f.Module, err)
				}
				t.Cleanup(func() { cm.Close(ctx) })
				checkWAGIHello(t, func(env map[string]string, body []byte) cgiResponse {
					return runCGI(t, r, cm, env, body)
				})
			})
		}
	}
	if found < 3 {
		t.Fatalf("found %d WAGI hello examples under %s, want at least 3 (C, Rust, Go)", found, filepath.Join(root, "examples"))
	}
}

// upToDate reports whether module (a path) exists and is newer than every
// other file in dir (sources, manifest). Subdirectories are not examined:
// the examples are flat.
func upToDate(t *testing.T, dir, module string) bool {
	t.Helper()
	mod, err := os.Stat(module)
	if err != nil {
		return false
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() || filepath.Join(dir, e.Name()) == module {
			continue
		}
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if info.ModTime().After(mod.ModTime()) {
			return false
		}
	}
	return true
}

type cgiResponse struct {
	status int
	header map[string]string // canonical lower-case names
	body   []byte
	stderr string
}

func checkWAGIHello(t *testing.T, call func(env map[string]string, body []byte) cgiResponse) {
	get := func(pathInfo, query string) map[string]string {
		return map[string]string{
			"REQUEST_METHOD": "GET", "SCRIPT_NAME": "/hello", "PATH_INFO": pathInfo,
			"QUERY_STRING": query, "CONTENT_LENGTH": "0",
		}
	}

	// GET /hello/NAME: the name comes from PATH_INFO, already decoded.
	res := call(get("/Alice Smith", ""), nil)
	lang := res.header["x-hello-language"]
	if res.status != 200 || lang == "" {
		t.Fatalf("GET /hello/Alice Smith: status %d, X-Hello-Language %q, want 200 and a language\n%s", res.status, lang, res.body)
	}
	for _, want := range []string{"Hello, Alice Smith!", "from " + lang, "GET /hello/Alice Smith\n"} {
		if !bytes.Contains(res.body, []byte(want)) {
			t.Errorf("GET /hello/Alice Smith: body %q lacks %q", res.body, want)
		}
	}
	if !strings.HasPrefix(res.header["content-type"], "text/plain") {
		t.Errorf("GET: Content-Type %q, want text/plain", res.header["content-type"])
	}
	if !strings.Contains(res.stderr, "name=Alice Smith") {
		t.Errorf("GET: stderr %q lacks the log line with the name", res.stderr)
	}

	// GET /hello?name=...: the query wins and is URL-decoded.
	res = call(get("", "x=1&name=Ada+L%C3%B6vel%61ce&y"), nil)
	for _, want := range []string{"Hello, Ada Lövelace!", "GET /hello?x=1&name=Ada+L%C3%B6vel%61ce&y\n"} {
		if res.status != 200 || !bytes.Contains(res.body, []byte(want)) {
			t.Errorf("GET ?name=: status %d body %q, want 200 and %q", res.status, res.body, want)
		}
	}

	// GET /hello: a default name, and a malformed escape must not fail.
	res = call(get("", "name=%zz"), nil)
	if res.status != 200 || !bytes.Contains(res.body, []byte("Hello, %zz!")) {
		t.Errorf("GET ?name=%%zz: status %d body %q, want 200 and the raw name", res.status, res.body)
	}
	res = call(get("", ""), nil)
	if res.status != 200 || !bytes.Contains(res.body, []byte("Hello, world!")) {
		t.Errorf("GET /hello: status %d body %q, want 200 and \"Hello, world!\"", res.status, res.body)
	}

	// POST echoes the body byte for byte, larger than any stdio buffer.
	body := make([]byte, 300_000)
	rand.Read(body)
	res = call(map[string]string{
		"REQUEST_METHOD": "POST", "SCRIPT_NAME": "/hello", "PATH_INFO": "",
		"CONTENT_TYPE": "application/x-test", "CONTENT_LENGTH": fmt.Sprint(len(body)),
	}, body)
	if res.status != 200 || !bytes.Equal(res.body, body) {
		t.Errorf("POST: status %d, echoed %d bytes (equal: %v), want 200 and the %d bytes sent",
			res.status, len(res.body), bytes.Equal(res.body, body), len(body))
	}
	if ct := res.header["content-type"]; ct != "application/x-test" {
		t.Errorf("POST: Content-Type %q, want the request's application/x-test", ct)
	}

	// Status headers: wrong method, wrong path.
	res = call(map[string]string{"REQUEST_METHOD": "DELETE", "SCRIPT_NAME": "/hello", "PATH_INFO": "/x"}, nil)
	if res.status != 405 || !strings.Contains(res.header["allow"], "GET") {
		t.Errorf("DELETE: status %d Allow %q, want 405 and an Allow header", res.status, res.header["allow"])
	}
	res = call(map[string]string{"REQUEST_METHOD": "GET", "SCRIPT_NAME": "/goodbye", "PATH_INFO": ""}, nil)
	if res.status != 404 {
		t.Errorf("GET /goodbye: status %d, want 404", res.status)
	}
}

func runCGI(t *testing.T, r wazero.Runtime, cm wazero.CompiledModule, env map[string]string, body []byte) cgiResponse {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cfg := wazero.NewModuleConfig().
		WithName(""). // anonymous, so instances never clash
		WithArgs("hello.wasm").
		WithStdin(bytes.NewReader(body)).
		WithStdout(&stdout).
		WithStderr(&stderr).
		WithRandSource(rand.Reader)
	for k, v := range env {
		cfg = cfg.WithEnv(k, v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	mod, err := r.InstantiateModule(ctx, cm, cfg)
	if err != nil {
		t.Fatalf("running the module with %v: %v\nstderr: %s", env, err, stderr.String())
	}
	mod.Close(ctx)
	return parseCGI(t, stdout.Bytes(), stderr.String())
}

// parseCGI splits a CGI response into headers and body. Both "\n" and "\r\n"
// line ends are accepted, as WAGI hosts do.
func parseCGI(t *testing.T, out []byte, stderr string) cgiResponse {
	t.Helper()
	res := cgiResponse{status: 200, header: map[string]string{}, stderr: stderr}
	for {
		i := bytes.IndexByte(out, '\n')
		if i < 0 {
			t.Fatalf("CGI response has no blank line after its headers: %q", out)
		}
		line := strings.TrimSuffix(string(out[:i]), "\r")
		out = out[i+1:]
		if line == "" {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("malformed CGI header line %q", line)
		}
		name, value = strings.ToLower(strings.TrimSpace(name)), strings.TrimSpace(value)
		res.header[name] = value
		if name == "status" {
			if _, err := fmt.Sscanf(value, "%d", &res.status); err != nil {
				t.Fatalf("malformed Status header %q", value)
			}
		}
	}
	res.body = out
	return res
}
