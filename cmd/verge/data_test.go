package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// newDataApp writes an app with two collections into a temp dir.
func newDataApp(t *testing.T) string {
	t.Helper()
	dir := newApp(t, fixture("hello.wasm"))
	f, err := os.OpenFile(filepath.Join(dir, "verge.toml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("[[collection]]\nname = \"carts\"\nscope = \"local\"\n[[collection]]\nname = \"stats\"\nscope = \"global\"\nregions = [\"eu\"]\n"); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startDevAdmin runs verge dev on dir with the admin API on a free loopback
// port and returns the process and the admin API's URL.
func startDevAdmin(t *testing.T, dir string, extra ...string) (*devProc, string) {
	t.Helper()
	args := append([]string{"--admin", "127.0.0.1:0", "--watch", "0"}, extra...)
	return launchDev(t, true, []string{"VERGE_ADMIN_TOKEN=", "VERGE_APP="}, append(args, dir)...)
}

// vergeData runs `verge data ARGS` in dir and returns its exit code and output.
func vergeData(t *testing.T, dir string, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, vergeBin, append([]string{"data"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "VERGE_ADMIN_TOKEN=", "VERGE_APP="), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), o.String(), e.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, o.String(), e.String()
}

func TestDataCLI(t *testing.T) {
	e2e(t)
	t.Parallel()
	dir := newDataApp(t)
	p, admin := startDevAdmin(t, dir)
	if _, err := os.Stat(filepath.Join(dir, ".verge", "data")); err != nil {
		t.Fatalf("the store is not in the app directory: %v", err)
	}
	data := func(args ...string) (int, string, string) {
		t.Helper()
		return vergeData(t, t.TempDir(), nil, append([]string{"--admin", admin, "--app", "test"}, args...)...)
	}
	wantOK := func(want string, args ...string) {
		t.Helper()
		code, out, errs := data(args...)
		if code != 0 || strings.TrimSpace(out) != want {
			t.Fatalf("verge data %q: exit %d, stdout %q, stderr %q; want %q", args, code, out, errs, want)
		}
	}
	wantFail := func(wantCode int, mention string, args ...string) {
		t.Helper()
		code, out, errs := data(args...)
		if code != wantCode || !strings.Contains(errs, mention) {
			t.Fatalf("verge data %q: exit %d, stdout %q, stderr %q; want exit %d mentioning %q", args, code, out, errs, wantCode, mention)
		}
	}

	wantOK(`{"collections":[{"name":"carts","scope":"local"},{"name":"stats","scope":"global","regions":["eu"]}]}`, "collections")
	wantOK(`{"items":[]}`, "put", "carts", "u1", `{"items": []}`)
	wantOK(`{"items":[42]}`, "update", "carts", "u1", `[{"op":"append","path":"items","value":42}]`)
	wantOK(`{"items":[7,42],"views":1}`, "update", "carts", "u1",
		`{"ops":[{"op":"prepend","path":"items","value":7},{"op":"increment","path":"views","value":1}]}`)
	wantOK(`{"items":[7,42],"views":1}`, "get", "carts", "u1")
	wantOK(`{"n":1}`, "update", "carts", "a/b c", `[{"op":"increment","path":"n","value":1}]`)
	wantOK("a/b c\nu1", "list", "carts")
	wantOK("u1", "list", "--after", "a/b c", "carts")
	wantOK("a/b c\nu1", "list", "carts", "--limit", "1", "--all")

	wantFail(1, `op 1 (increment "items")`, "update", "carts", "u1", `[{"op":"increment","path":"views","value":1},{"op":"increment","path":"items","value":1}]`)
	wantOK(`{"items":[7,42],"views":1}`, "get", "carts", "u1") // the failed batch changed nothing
	wantFail(1, `"orders"`, "get", "orders", "u1")
	wantFail(1, "HTTP 404", "get", "carts", "nobody")
	wantFail(2, "unknown subcommand", "fetch", "carts", "u1")
	wantFail(2, "takes 3 arguments", "put", "carts", "u1")

	wantOK("", "delete", "carts", "a/b c")
	wantFail(1, "HTTP 404", "get", "carts", "a/b c")

	// --app defaults to the name in ./verge.toml.
	if code, out, errs := vergeData(t, dir, nil, "--admin", admin, "get", "carts", "u1"); code != 0 || !strings.Contains(out, `"views":1`) {
		t.Fatalf("without --app in the app directory: exit %d %q %q", code, out, errs)
	}

	// An acknowledged write survives kill -9.
	wantOK(`{"items":[7,42],"views":2}`, "update", "carts", "u1", `[{"op":"increment","path":"views","value":1}]`)
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done
	_, admin = startDevAdmin(t, dir)
	wantOK(`{"items":[7,42],"views":2}`, "get", "carts", "u1")
	wantOK("u1", "list", "carts")
}

func TestDataCLIToken(t *testing.T) {
	e2e(t)
	t.Parallel()
	dir := newDataApp(t)
	_, admin := startDevAdmin(t, dir, "--admin-token", "tok3n", "--data", filepath.Join(t.TempDir(), "store"))
	if _, err := os.Stat(filepath.Join(dir, ".verge")); !os.IsNotExist(err) {
		t.Fatalf("--data was ignored: %v", err)
	}
	code, _, errs := vergeData(t, dir, nil, "--admin", admin, "put", "carts", "k", `{}`)
	if code != 1 || !strings.Contains(errs, "HTTP 401") {
		t.Fatalf("without the token: exit %d %q", code, errs)
	}
	if code, out, errs := vergeData(t, dir, []string{"VERGE_ADMIN_TOKEN=tok3n"}, "--admin", admin, "put", "carts", "k", `{"a":1}`); code != 0 || strings.TrimSpace(out) != `{"a":1}` {
		t.Fatalf("with $VERGE_ADMIN_TOKEN: exit %d %q %q", code, out, errs)
	}
	if code, out, errs := vergeData(t, dir, nil, "--admin", admin, "--token", "tok3n", "get", "carts", "k"); code != 0 || strings.TrimSpace(out) != `{"a":1}` {
		t.Fatalf("with --token: exit %d %q %q", code, out, errs)
	}
}

func TestDevRefusesAdminBeyondLoopbackWithoutToken(t *testing.T) {
	e2e(t)
	t.Parallel()
	dir := newDataApp(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, vergeBin, "dev", "--listen", "127.0.0.1:0", "--admin", "0.0.0.0:0", "--cache-dir", "-", dir)
	cmd.Env = append(os.Environ(), "VERGE_ADMIN_TOKEN=")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "VERGE_ADMIN_TOKEN") {
		t.Fatalf("err %v, output %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, ".verge")); !os.IsNotExist(err) {
		t.Fatalf("a refused start created the store: %v", err)
	}
}

// An app without collections gets no store: serving it leaves its
// directory as it was (the examples are served from the repository).
func TestDevWithoutCollectionsOpensNoStore(t *testing.T) {
	e2e(t)
	t.Parallel()
	dir := newApp(t, fixture("hello.wasm"))
	p := startDev(t, dir)
	if code, body := get(t, p.url+"/"); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	if _, err := os.Stat(filepath.Join(dir, ".verge")); !os.IsNotExist(err) {
		t.Fatalf("verge dev created %s/.verge for an app without collections: %v", dir, err)
	}
}
