package main

import (
	"bufio"
	"context"
	"flag"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var vergeBin string

// e2e marks a test that runs the verge binary: slow, so -short skips it.
func e2e(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end to end through the verge binary; run without -short (make test)")
	}
}

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run()) // every test here is end to end: no binary to build
	}
	dir, err := os.MkdirTemp("", "verge-cli-test-")
	if err != nil {
		panic(err)
	}
	vergeBin = filepath.Join(dir, "verge")
	if out, err := exec.Command("go", "build", "-o", vergeBin, ".").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		panic("building verge: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func fixture(name string) string {
	return filepath.Join("..", "..", "internal", "wasm", "testdata", name)
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	// Write to a temporary name and rename, as a build would, so the watcher
	// never sees a half-written module.
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

// newApp writes a one-function app serving module at /* into a temp dir.
func newApp(t *testing.T, module string) string {
	t.Helper()
	dir := t.TempDir()
	copyFile(t, module, filepath.Join(dir, "fn.wasm"))
	manifest := "name = \"test\"\n[[function]]\nname = \"fn\"\nmodule = \"fn.wasm\"\nexecutor = \"verge\"\nroutes = [\"/*\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "verge.toml"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

type devProc struct {
	cmd    *exec.Cmd
	url    string
	stderr *lockedBuffer
	done   chan error
}

// lockedBuffer collects a subprocess's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startDev(t *testing.T, dir string) *devProc {
	t.Helper()
	p, _ := launchDev(t, false, nil, "--watch", "50ms", dir)
	return p
}

// launchDev runs `verge dev --listen 127.0.0.1:0 --cache-dir - ARGS` and
// waits until it serves; with wantAdmin it also waits for the admin API's
// address, which it returns.
func launchDev(t *testing.T, wantAdmin bool, env []string, args ...string) (*devProc, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, vergeBin, append([]string{"dev", "--listen", "127.0.0.1:0", "--cache-dir", "-"}, args...)...)
	// An app without state keeps its data in the user cache: a test's own.
	cmd.Env = append(append(os.Environ(), "XDG_CACHE_HOME="+t.TempDir()), env...)
	stdout, _ := cmd.StdoutPipe()
	p := &devProc{cmd: cmd, stderr: &lockedBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	adminc, servingc := make(chan string, 1), make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "verge: admin API "); ok {
				adminc <- u
			}
			if u, ok := strings.CutPrefix(sc.Text(), "verge: serving "); ok {
				servingc <- u
			}
		}
	}()
	var adminURL string
	for p.url == "" || (wantAdmin && adminURL == "") {
		select {
		case adminURL = <-adminc:
		case p.url = <-servingc:
		case err := <-p.done:
			t.Fatalf("verge dev exited before serving: %v\n%s", err, p.stderr)
		// verge dev builds the app first: minutes when the machine is loaded.
		case <-time.After(3 * time.Minute):
			t.Fatalf("verge dev did not start\n%s", p.stderr)
		}
	}
	return p, adminURL
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// eventually polls cond every 50 ms for at most 20 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestDevServesReloadsAndShutsDown(t *testing.T) {
	e2e(t)
	t.Parallel()
	dir := newApp(t, fixture("hello.wasm"))
	p := startDev(t, dir)
	if code, body := get(t, p.url+"/x"); code != 200 || body != "hi" {
		t.Fatalf("GET: %d %q", code, body)
	}
	// A new module version is picked up.
	copyFile(t, fixture("bye.wasm"), filepath.Join(dir, "fn.wasm"))
	eventually(t, "the reload", func() bool { _, body := get(t, p.url+"/x"); return body == "bye" })
	// A broken one is reported, and the previous version keeps serving.
	if err := os.WriteFile(filepath.Join(dir, "fn.wasm.tmp"), []byte("not wasm"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Rename(filepath.Join(dir, "fn.wasm.tmp"), filepath.Join(dir, "fn.wasm"))
	eventually(t, "the reload error", func() bool { return strings.Contains(p.stderr.String(), "reload failed") })
	if !strings.Contains(p.stderr.String(), "fn.wasm: not a WebAssembly module") {
		t.Fatalf("reload error does not name the module and reason:\n%s", p.stderr)
	}
	if code, body := get(t, p.url+"/x"); code != 200 || body != "bye" {
		t.Fatalf("after a failed reload: %d %q, want the previous version", code, body)
	}
	// SIGTERM: a clean exit.
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, p.stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("verge dev did not exit after SIGTERM")
	}
}

func TestDevFailsOnBadModule(t *testing.T) {
	e2e(t)
	t.Parallel()
	for name, c := range map[string]struct{ module, want string }{
		"garbage":        {"../../go.mod", "fn.wasm: not a WebAssembly module"},
		"unknown import": {fixture("unknown_import.wasm"), "fn.wasm: imports unknown host function env.launch_missiles"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := newApp(t, c.module)
			cmd := exec.Command(vergeBin, "dev", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--cache-dir", "-", dir)
			cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+t.TempDir())
			out, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Fatalf("exit: %v, want exit code 1\n%s", err, out)
			}
			if !strings.Contains(string(out), filepath.Join(dir, c.want)) {
				t.Fatalf("output does not name the module and reason %q:\n%s", c.want, out)
			}
		})
	}
}

func TestDevFailsOnBadManifest(t *testing.T) {
	e2e(t)
	t.Parallel()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "verge.toml"), []byte("name = \"x\"\n[[function]]\nname = \"f\"\nmodule = \"f.wasm\"\nexecutor = \"cgi\"\nroutes = [\"/\"]\n"), 0o644)
	out, err := exec.Command(vergeBin, "dev", "--listen", "127.0.0.1:0", dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), filepath.Join(dir, "verge.toml")+": function[0].executor: \"cgi\" is not an executor; expected \"wagi\" or \"verge\"") {
		t.Fatalf("bad manifest: %v\n%s", err, out)
	}
}

func TestDevRunsBuildCommand(t *testing.T) {
	e2e(t)
	t.Parallel()
	dir := t.TempDir()
	src, _ := filepath.Abs(fixture("hello.wasm"))
	manifest := "name = \"b\"\n[[function]]\nname = \"fn\"\nmodule = \"out/fn.wasm\"\nexecutor = \"verge\"\nroutes = [\"/*\"]\nbuild = \"mkdir -p out && cp " + src + " out/fn.wasm\"\n"
	os.WriteFile(filepath.Join(dir, "verge.toml"), []byte(manifest), 0o644)
	p := startDev(t, dir)
	if code, body := get(t, p.url+"/"); code != 200 || body != "hi" {
		t.Fatalf("GET after build: %d %q", code, body)
	}
	// A failing build stops verge dev with the command in the message.
	os.WriteFile(filepath.Join(dir, "verge.toml"), []byte(strings.Replace(manifest, "mkdir -p out", "false", 1)), 0o644)
	out, err := exec.Command(vergeBin, "dev", "--listen", "127.0.0.1:0", dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "build command of function \"fn\" failed") {
		t.Fatalf("failing build: %v\n%s", err, out)
	}
}

// TestExamples serves every hello example through verge dev, which builds
// it first: Go with the SDK, and Go, C and Rust through WAGI.
func TestExamples(t *testing.T) {
	e2e(t)
	t.Parallel()
	for dir, lang := range map[string]string{"hello-go": "Go on Verge", "hello-wagi-go": "from Go, via WAGI", "hello-c": "from C, via WAGI", "hello-rust": "from Rust, via WAGI"} {
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			p := startDev(t, filepath.Join("..", "..", "examples", dir))
			code, body := get(t, p.url+"/hello?name=Ada")
			if code != 200 || !strings.Contains(body, "Ada") || !strings.Contains(body, lang) {
				t.Fatalf("GET: %d %q, want a greeting to Ada %s", code, body, lang)
			}
			if code, body = get(t, p.url+"/hello/Bob"); code != 200 || !strings.Contains(body, "Bob") {
				t.Fatalf("GET /hello/Bob: %d %q", code, body)
			}
			resp, err := http.Post(p.url+"/hello", "text/plain", strings.NewReader("echo, echo"))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != "echo, echo" {
				t.Fatalf("POST echo: %d %q", resp.StatusCode, b)
			}
		})
	}
}
