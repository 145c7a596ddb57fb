package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/bundle"
)

// vergeCmd runs `verge ARGS` and returns its exit code and output.
func vergeCmd(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, vergeBin, args...)
	cmd.Env = append(os.Environ(), "VERGE_ADMIN_TOKEN=")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatalf("verge %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return 0, string(out)
}

// watApp writes an app named name serving a module of internal/wasm/testdata
// at /*, with the manifest's extra lines.
func watApp(t *testing.T, name, module, extra string) string {
	t.Helper()
	dir := t.TempDir()
	copyFile(t, fixture(module), filepath.Join(dir, "fn.wasm"))
	manifest := fmt.Sprintf("name = %q\n%s\n[[function]]\nname = \"fn\"\nmodule = \"fn.wasm\"\nexecutor = \"verge\"\nroutes = [\"/*\"]\n", name, extra)
	if err := os.WriteFile(filepath.Join(dir, "verge.toml"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// hostGet asks PoP id for path of app by its Host header.
func (n *testNet) hostGet(id, app, path string) (code int, body, version string) {
	req, _ := http.NewRequest("GET", "http://"+n.pop(id).HTTP+path, nil)
	req.Host = app + ".localhost"
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, err.Error(), ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("Verge-Version")
}

// traffic sends requests for app to every PoP until stop, and counts the
// answers that were not 200.
func (n *testNet) traffic(app string) (stop func() (sent, failed int)) {
	var s, f atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, p := range n.nf.PoPs {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				case <-time.After(5 * time.Millisecond):
				}
				if code, _, _ := n.hostGet(p.ID, app, "/"); code != 200 {
					f.Add(1)
				}
				s.Add(1)
			}
		})
	}
	return func() (int, int) {
		close(done)
		wg.Wait()
		return int(s.Load()), int(f.Load())
	}
}

// versionOf is the version id of the bundle verge deploy makes of dir.
func versionOf(t *testing.T, dir string) string {
	t.Helper()
	m, err := verge.LoadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, id, err := bundle.Pack(m, bundle.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestNetDeploy is the newcomer's path through the binary: an empty
// 5-PoP network, two apps deployed side by side, a canary rollout that
// passes, a broken version rolled back by its gate, the operator's
// rollback, and the deploy commands' refusals.
func TestNetDeploy(t *testing.T) {
	e2e(t)
	t.Parallel()
	dir := t.TempDir()
	if code, out := vergeCmd(t, "net", "up", "--dir", dir, "--pops", "5", "--latency-scale", "0"); code != 0 {
		t.Fatalf("verge net up: %d\n%s", code, out)
	}
	t.Cleanup(func() { vergeCmd(t, "net", "down", "--dir", dir) })
	nf, err := readNet(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := &testNet{t: t, dir: dir, nf: nf}
	if code, out := vergeCmd(t, "apps", "--net", dir); code != 0 || !strings.Contains(out, "no apps deployed") {
		t.Fatalf("verge apps on an empty network: %d %s", code, out)
	}

	// Two apps, each at every PoP by its Host.
	hello := filepath.Join("..", "..", "examples", "hello-go")
	if code, out := vergeCmd(t, "deploy", "--net", dir, "--gate", "0", "--no-build", hello); code != 0 || !strings.Contains(out, "done every PoP serves it") {
		t.Fatalf("deploy hello-go: %d\n%s", code, out)
	}
	v1dir := watApp(t, "site", "hello.wasm", "")
	if code, out := vergeCmd(t, "deploy", "--net", dir, "--gate", "0", v1dir); code != 0 {
		t.Fatalf("deploy site: %d\n%s", code, out)
	}
	v1 := versionOf(t, v1dir)
	for _, p := range nf.PoPs {
		if code, body, _ := n.hostGet(p.ID, "hello-go", "/hello?name=Ada"); code != 200 || !strings.Contains(body, "Ada") {
			t.Fatalf("hello-go at %s: %d %q", p.ID, code, body)
		}
		if code, body, v := n.hostGet(p.ID, "site", "/"); code != 200 || body != "hi" || v != v1 {
			t.Fatalf("site at %s: %d %q version %q, want %s", p.ID, code, body, v, v1)
		}
	}
	code, out := vergeCmd(t, "apps", "--net", dir)
	if code != 0 || !strings.Contains(out, "hello-go") || strings.Count(out, "="+v1[:12]) != 5 {
		t.Fatalf("verge apps: %d\n%s", code, out)
	}

	// A good version passes its canary gate under traffic.
	v2dir := watApp(t, "site", "bye.wasm", "")
	stop := n.traffic("site")
	// Latency is not judged here: on a shared test machine it is noise.
	code, out = vergeCmd(t, "deploy", "--net", dir, "--gate", "2s", "--canary", "sfo", "--p99-slack", "1m", v2dir)
	sent, failed := stop()
	if code != 0 || !strings.Contains(out, "stage 1 sfo: passed") || !strings.Contains(out, "judged by requests") {
		t.Fatalf("a canary rollout: %d\n%s", code, out)
	}
	if failed != 0 {
		t.Fatalf("%d of %d requests failed during the rollout", failed, sent)
	}
	v2 := versionOf(t, v2dir)
	for _, p := range nf.PoPs {
		if _, body, v := n.hostGet(p.ID, "site", "/"); body != "bye" || v != v2 {
			t.Fatalf("site at %s after the rollout: %q (%s)", p.ID, body, v)
		}
	}

	// A broken version fails its canary's gate and is rolled back; verge
	// deploy says where and by how much.
	stop = n.traffic("site")
	code, out = vergeCmd(t, "deploy", "--net", dir, "--gate", "2s", "--canary", "sfo", "--p99-slack", "1m", watApp(t, "site", "trap.wasm", ""))
	stop()
	if code != 1 || !strings.Contains(out, "was rolled back: stage 1 gate failed at sfo: 5xx share") {
		t.Fatalf("a broken version: %d\n%s", code, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, p := range nf.PoPs {
		for {
			if _, _, v := n.hostGet(p.ID, "site", "/"); v == v2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s does not serve %s again after the rollback", p.ID, v2)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// The operator's rollback, to the previous version by default.
	if code, out := vergeCmd(t, "rollback", "--net", dir, "site"); code != 0 || !strings.Contains(out, v1) {
		t.Fatalf("verge rollback: %d %s", code, out)
	}
	code, out = vergeCmd(t, "versions", "--net", dir, "site")
	if code != 0 || !strings.Contains(out, "* "+v1) || !strings.Contains(out, "rolled back: stage 1 gate failed") {
		t.Fatalf("verge versions: %d\n%s", code, out)
	}

	// Refusals: the module that does not load (as verge dev says it), a
	// rollout while another runs, a version that does not exist, and no
	// token.
	broken := watApp(t, "site", "hello.wasm", "")
	os.WriteFile(filepath.Join(broken, "fn.wasm"), []byte("not wasm"), 0o644)
	if code, out := vergeCmd(t, "deploy", "--net", dir, broken); code != 1 || !strings.Contains(out, filepath.Join(broken, "fn.wasm")+": not a WebAssembly module") {
		t.Fatalf("deploying a broken module: %d %s", code, out)
	}
	missing := watApp(t, "site", "hello.wasm", "")
	os.Remove(filepath.Join(missing, "fn.wasm"))
	if code, out := vergeCmd(t, "deploy", "--net", dir, missing); code != 1 || !strings.Contains(out, "cannot read module") {
		t.Fatalf("deploying a missing module: %d %s", code, out)
	}
	slow := exec.Command(vergeBin, "deploy", "--net", dir, "--gate", "4s", "--p99-slack", "1m", v2dir)
	var slowOut bytes.Buffer
	slow.Stdout, slow.Stderr = &slowOut, &slowOut
	if err := slow.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(slowOut.String(), "gate"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the first deploy did not reach its gate:\n%s", slowOut.String())
		}
	}
	if code, out := vergeCmd(t, "deploy", "--net", dir, "--gate", "0", v1dir); code != 1 || !strings.Contains(out, "a rollout is in progress") {
		t.Fatalf("a second deploy while one runs: %d %s", code, out)
	}
	if err := slow.Wait(); err != nil {
		t.Fatalf("the first deploy: %v\n%s", err, slowOut.String())
	}
	if code, out := vergeCmd(t, "rollback", "--net", dir, "site", "ffffffff"); code != 1 || !strings.Contains(out, "no version") {
		t.Fatalf("rollback to a version that does not exist: %d %s", code, out)
	}
	central := ""
	for _, p := range nf.PoPs {
		if p.Central {
			central = "http://" + p.Admin
		}
	}
	if code, out := vergeCmd(t, "apps", "--to", central); code != 1 || !strings.Contains(out, "missing or wrong admin token") {
		t.Fatalf("verge apps without the token: %d %s", code, out)
	}
	if code, out := vergeCmd(t, "apps", "--to", central, "--token", nf.Token); code != 0 || !strings.Contains(out, "site") {
		t.Fatalf("verge apps with the token: %d %s", code, out)
	}
	if code, out := vergeCmd(t, "undeploy", "--net", dir, "site"); code != 0 {
		t.Fatalf("verge undeploy: %d %s", code, out)
	}
	for _, p := range nf.PoPs {
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if code, body, _ := n.hostGet(p.ID, "site", "/"); code == 404 && strings.Contains(body, `"host":"site.localhost"`) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still serves site after undeploy", p.ID)
			}
		}
	}
}

// TestNetDeployFaults: a PoP killed mid-rollout is skipped and catches up
// when it returns; the centre killed -9 mid-upload keeps no half version.
func TestNetDeployFaults(t *testing.T) {
	e2e(t)
	t.Parallel()
	n := startNetApp(t, watApp(t, "site", "hello.wasm", ""), 3) // ord (central), sfo, iad
	v2dir := watApp(t, "site", "bye.wasm", "")
	v2 := versionOf(t, v2dir)
	deploy := exec.Command(vergeBin, "deploy", "--net", n.dir, "--gate", "3s", "--canary", "sfo", "--p99-slack", "1m", v2dir)
	var out bytes.Buffer
	deploy.Stdout, deploy.Stderr = &out, &out
	if err := deploy.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(out.String(), "gate watching sfo"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the rollout did not reach its canary gate:\n%s", out.String())
		}
	}
	netCmd(t, "kill", "--dir", n.dir, "iad")
	if err := deploy.Wait(); err != nil || !strings.Contains(out.String(), "iad: skipped") {
		t.Fatalf("a rollout with iad killed: %v\n%s", err, out.String())
	}
	netCmd(t, "restart", "--dir", n.dir, "iad")
	if _, body, v := n.hostGet("iad", "site", "/"); body != "bye" || v != v2 {
		t.Fatalf("iad back: %q (%s), want %s", body, v, v2)
	}

	// Kill the centre in the middle of an upload: nothing of it is kept.
	b, id, err := bundle.Pack(func() *verge.Manifest {
		m, _ := verge.LoadManifest(watApp(t, "site", "trap.wasm", ""))
		return m
	}(), bundle.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("PUT", "http://"+n.pop("ord").Admin+"/v1/apps/site/versions/"+id, pr)
	req.Header.Set("Authorization", "Bearer "+n.nf.Token)
	req.ContentLength = int64(len(b))
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			err = fmt.Errorf("the upload was answered: %s", resp.Status)
		}
		done <- err
	}()
	pw.Write(b[:len(b)/2])
	time.Sleep(100 * time.Millisecond) // the half is in the centre's hands
	syscall.Kill(n.pop("ord").PID, syscall.SIGKILL)
	pw.Close()
	if err := <-done; err == nil || strings.Contains(err.Error(), "answered") {
		t.Fatalf("an upload whose centre died: %v", err)
	}
	netCmd(t, "restart", "--dir", n.dir, "ord")
	code, vout := vergeCmd(t, "versions", "--net", n.dir, "site")
	if code != 0 || strings.Contains(vout, id) || strings.Count(vout, "\n") != 2 {
		t.Fatalf("versions after the centre died mid-upload: %d\n%s", code, vout)
	}
	for _, p := range n.nf.PoPs {
		if _, body, v := n.hostGet(p.ID, "site", "/"); body != "bye" || v != v2 {
			t.Fatalf("%s after the centre's restart: %q (%s)", p.ID, body, v)
		}
	}
}
