package pop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/bundle"
	"github.com/verge-edge/verge/internal/deploy"
	"github.com/verge-edge/verge/internal/wasm/wasmtest"
)

// deployNet is a network of PoPs in this process with HTTP and admin APIs,
// serving only what is deployed.
type deployNet struct {
	t    *testing.T
	net  verge.Network
	dirs map[string]string
	pops map[string]*PoP
}

func newDeployNet(t *testing.T, ids ...string) *deployNet {
	t.Helper()
	n := &deployNet{t: t, dirs: map[string]string{}, pops: map[string]*PoP{}}
	base := t.TempDir()
	for i, id := range ids {
		n.net.PoPs = append(n.net.PoPs, verge.PoP{ID: id, Region: "r", Lat: float64(i), Central: i == 0, Number: uint16(i + 1),
			Mesh: freeAddr(t), HTTP: freeAddr(t), Admin: freeAddr(t)})
		n.dirs[id] = filepath.Join(base, id)
	}
	for _, id := range ids {
		n.start(id)
	}
	return n
}

func (n *deployNet) start(id string) *PoP {
	n.t.Helper()
	p, err := Start(context.Background(), Options{Self: id, Network: n.net, Data: n.dirs[id], CacheDir: "-", NoSync: true,
		AdminToken: "tok", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(p.Close)
	n.pops[id] = p
	return p
}

func (n *deployNet) stop(id string) {
	n.pops[id].Close()
	delete(n.pops, id)
}

// waitLinks waits until every running PoP is linked to every other.
func (n *deployNet) waitLinks() {
	waitLinked(n.t, n.pops)
}

func (n *deployNet) admin(method, path string, body io.Reader) (int, []byte) {
	n.t.Helper()
	req, _ := http.NewRequest(method, "http://"+n.pops["c"].AdminAddr()+path, body)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := (&http.Client{Timeout: 2 * time.Minute}).Do(req)
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// get asks PoP id for path of app, by its Host, and returns the status, the
// body and the version that answered.
func (n *deployNet) get(id, app, path string) (int, string, string) {
	n.t.Helper()
	req, _ := http.NewRequest("GET", "http://"+n.pops[id].HTTPAddr()+path, nil)
	req.Host = app + ".localhost:8080"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get(VersionHeader)
}

// appDir writes an app serving module (from internal/wasm/testdata) at /*.
func appDir(t *testing.T, name, module, extra string) *verge.Manifest {
	t.Helper()
	dir := t.TempDir()
	b, err := os.ReadFile(wasmtest.Fixture(t, module))
	if err != nil {
		b = []byte(module) // not a fixture: the module's bytes
	}
	os.WriteFile(filepath.Join(dir, "fn.wasm"), b, 0o644)
	os.WriteFile(filepath.Join(dir, "verge.toml"), []byte(fmt.Sprintf("name = %q\n%s\n[[function]]\nname = \"fn\"\nmodule = \"fn.wasm\"\nexecutor = \"verge\"\nroutes = [\"/*\"]\n", name, extra)), 0o644)
	m, err := verge.LoadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// upload packs m and uploads it; it returns the version and the answer.
func (n *deployNet) upload(m *verge.Manifest) (string, int, string) {
	n.t.Helper()
	b, id, err := bundle.Pack(m, bundle.Meta{})
	if err != nil {
		n.t.Fatal(err)
	}
	code, out := n.admin("PUT", "/v1/apps/"+m.Name+"/versions/"+id, bytes.NewReader(b))
	return id, code, string(out)
}

// rollout rolls version out and returns the HTTP status and its events.
func (n *deployNet) rollout(app, version string, gate time.Duration, canary string) (int, []deploy.Event) {
	n.t.Helper()
	// Latency is not judged here: on a shared test machine it is noise.
	body, _ := json.Marshal(map[string]any{"version": version, "gate": gate.String(), "canary": canary,
		"thresholds": map[string]any{"p99_slack": time.Minute}})
	code, out := n.admin("POST", "/v1/apps/"+app+"/rollouts", bytes.NewReader(body))
	var evs []deploy.Event
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var e deploy.Event
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			evs = append(evs, e)
		}
	}
	return code, evs
}

func lastEvent(evs []deploy.Event) deploy.Event {
	if len(evs) == 0 {
		return deploy.Event{}
	}
	return evs[len(evs)-1]
}

// deployed uploads m and rolls it out without gates, failing the test if
// that does not end with every PoP serving it.
func (n *deployNet) deployed(m *verge.Manifest) string {
	n.t.Helper()
	v, code, out := n.upload(m)
	if code != 201 {
		n.t.Fatalf("upload of %s: %d %s", m.Name, code, out)
	}
	code, evs := n.rollout(m.Name, v, 0, "")
	if last := lastEvent(evs); code != 200 || last.State != "done" {
		n.t.Fatalf("rollout of %s: %d, last event %+v", m.Name, code, last)
	}
	return v
}

// traffic sends requests for app to PoP id until stop, counting them.
func (n *deployNet) traffic(id, app string) (stop func() int) {
	var count atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	addr := n.pops[id].HTTPAddr()
	wg.Go(func() {
		c := &http.Client{Timeout: 5 * time.Second}
		for {
			select {
			case <-done:
				return
			default:
			}
			req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
			req.Host = app + ".localhost"
			if resp, err := c.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				count.Add(1)
			}
			time.Sleep(2 * time.Millisecond)
		}
	})
	return func() int {
		close(done)
		wg.Wait()
		return int(count.Load())
	}
}

// TestDeployRolloutAndRollback: many apps per PoP by Host, versions rolled
// out through a canary, a broken version rolled back by its gate, an
// operator's rollback, undeploy, and a PoP that returns catching up.
func TestDeployRolloutAndRollback(t *testing.T) {
	t.Parallel()
	n := newDeployNet(t, "c", "a", "b")
	n.waitLinks()

	// Two apps side by side, each by its Host; an unknown host is a 404
	// naming it.
	v1 := n.deployed(appDir(t, "shop", "hello.wasm", ""))
	other := n.deployed(appDir(t, "blog", "bye.wasm", ""))
	for _, id := range []string{"c", "a", "b"} {
		if code, body, v := n.get(id, "shop", "/"); code != 200 || body != "hi" || v != v1 {
			t.Fatalf("shop at %s: %d %q version %q, want hi from %s", id, code, body, v, v1)
		}
		if code, body, v := n.get(id, "blog", "/x"); code != 200 || body != "bye" || v != other {
			t.Fatalf("blog at %s: %d %q version %q", id, code, body, v)
		}
		if code, body, _ := n.get(id, "nope", "/"); code != 404 || !strings.Contains(body, `"host":"nope.localhost"`) {
			t.Fatalf("unknown host at %s: %d %s", id, code, body)
		}
	}

	// A good new version passes its canary gate with traffic at the canary.
	v2, code, out := n.upload(appDir(t, "shop", "bye.wasm", ""))
	if code != 201 {
		t.Fatalf("upload: %d %s", code, out)
	}
	stop := n.traffic("a", "shop")
	code, evs := n.rollout("shop", v2, time.Second, "a")
	sent := stop()
	if last := lastEvent(evs); code != 200 || last.State != "done" {
		t.Fatalf("rollout of a good version: %d %+v (%d requests sent)", code, evs, sent)
	}
	passed := false
	for _, e := range evs {
		if e.State == "passed" && e.PoP == "a" && e.Stage == 1 && e.Figure != nil && e.Figure.Judged == "requests" && e.Figure.Requests > 0 {
			passed = true
		}
	}
	if !passed {
		t.Fatalf("the canary a was not judged by its requests: %+v", evs)
	}
	for _, id := range []string{"c", "a", "b"} {
		if _, body, v := n.get(id, "shop", "/"); body != "bye" || v != v2 {
			t.Fatalf("after the rollout %s serves %q (%s)", id, body, v)
		}
	}

	// A broken version (every request traps: 500) fails its canary's gate
	// and is rolled back everywhere it reached.
	v3, _, _ := n.upload(appDir(t, "shop", "trap.wasm", ""))
	stop = n.traffic("a", "shop")
	code, evs = n.rollout("shop", v3, time.Second, "a")
	stop()
	last := lastEvent(evs)
	if code != 200 || last.State != "rolled_back" || last.Stage != 1 || last.PoP != "a" || !strings.Contains(last.Msg, "5xx share 100.0%") {
		t.Fatalf("rollout of a broken version: %d, last event %+v", code, last)
	}
	n.eventually("shop", v2, "c", "a", "b")
	var rec deploy.AppRecord
	code, raw := n.admin("GET", "/v1/apps/shop/versions", nil)
	if json.Unmarshal(raw, &rec) != nil || code != 200 || rec.Current != v2 || !strings.Contains(rec.Versions[len(rec.Versions)-1].Failed, "gate failed at a") {
		t.Fatalf("versions after the failed rollout: %d %s", code, raw)
	}

	// The operator's rollback: to the previous version, everywhere at once.
	code, raw = n.admin("POST", "/v1/apps/shop/rollback", strings.NewReader(`{}`))
	if code != 200 || !strings.Contains(string(raw), v1) {
		t.Fatalf("rollback: %d %s", code, raw)
	}
	n.eventually("shop", v1, "c", "a", "b")

	// A PoP that was away comes back serving what it was assigned, before
	// it serves anything; so does one that lost its disk.
	n.stop("b")
	n.admin("POST", "/v1/apps/shop/rollback", strings.NewReader(`{"version":"`+v2[:8]+`"}`))
	n.start("b")
	if _, body, v := n.get("b", "shop", "/"); body != "bye" || v != v2 {
		t.Fatalf("b after its restart: %q (%s), want %s", body, v, v2)
	}
	n.stop("b")
	if err := os.RemoveAll(n.dirs["b"]); err != nil {
		t.Fatal(err)
	}
	n.start("b")
	if _, body, v := n.get("b", "shop", "/"); body != "bye" || v != v2 {
		t.Fatalf("b after losing its disk: %q (%s), want %s", body, v, v2)
	}

	// Undeploy: the host names no app anywhere; the other app stays.
	if code, raw := n.admin("DELETE", "/v1/apps/shop", nil); code != 204 {
		t.Fatalf("undeploy: %d %s", code, raw)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, id := range []string{"c", "a", "b"} {
		for {
			code, _, _ := n.get(id, "shop", "/")
			if code == 404 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still serves shop after undeploy", id)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if _, body, _ := n.get(id, "blog", "/"); body != "bye" {
			t.Fatalf("blog at %s after undeploying shop: %q", id, body)
		}
	}
}

// eventually waits until every listed PoP serves app's version.
func (n *deployNet) eventually(app, version string, ids ...string) {
	n.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, id := range ids {
		for {
			if _, _, v := n.get(id, app, "/"); v == version {
				break
			}
			if time.Now().After(deadline) {
				_, _, v := n.get(id, app, "/")
				n.t.Fatalf("%s serves %s %s, want %s", id, app, v, version)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// Bundles that are not, or do not load, are refused with what is wrong,
// before any PoP sees them; so are rollouts of nothing, and a second
// rollout of an app while one runs.
func TestDeployBadInput(t *testing.T) {
	t.Parallel()
	n := newDeployNet(t, "c", "a")
	n.waitLinks()
	good := appDir(t, "shop", "hello.wasm", "")
	b, id, _ := bundle.Pack(good, bundle.Meta{})
	for _, c := range []struct {
		name, id string
		body     []byte
		code     int
		want     string
	}{
		{"not a bundle", id, []byte("hello"), 400, "not a valid bundle"},
		{"truncated", id, b[:len(b)/2], 400, "truncated or altered"},
		{"bad id", "xyz", b, 400, `is not a version id`},
	} {
		code, out := n.admin("PUT", "/v1/apps/shop/versions/"+c.id, bytes.NewReader(c.body))
		if code != c.code || !strings.Contains(string(out), c.want) {
			t.Errorf("%s: %d %s, want %d mentioning %q", c.name, code, out, c.code, c.want)
		}
	}
	for name, c := range map[string]struct {
		m    *verge.Manifest
		want string
	}{
		"garbage module": {appDir(t, "shop", "not wasm at all", ""), "fn.wasm: not a WebAssembly module"},
		"unknown import": {appDir(t, "shop", "unknown_import.wasm", ""), "fn.wasm: imports unknown host function env.launch_missiles"},
		"init traps":     {appDir(t, "shop", "init_trap.wasm", ""), "fn.wasm: initialisation failed: the guest trapped"},
	} {
		_, code, out := n.upload(c.m)
		if code != 400 || !strings.Contains(out, `"kind":"invalid_bundle"`) || !strings.Contains(out, c.want) {
			t.Errorf("%s: %d %s, want 400 invalid_bundle mentioning %q", name, code, out, c.want)
		}
	}
	// A manifest naming a module the bundle lacks.
	var missing bytes.Buffer
	files, _ := bundle.Read(b, id)
	delete(files, "fn.wasm")
	{
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "verge.toml"), files["verge.toml"], 0o644)
		m, _ := verge.LoadManifest(dir)
		m.Functions = nil // pack the manifest alone
		mb, mid, err := bundle.Pack(m, bundle.Meta{})
		if err != nil {
			t.Fatal(err)
		}
		missing.Write(mb)
		code, out := n.admin("PUT", "/v1/apps/shop/versions/"+mid, &missing)
		if code != 400 || !strings.Contains(string(out), "function[0].module: fn.wasm is not in the bundle") {
			t.Errorf("missing module: %d %s", code, out)
		}
	}
	// Nothing refused reached a PoP, nor the registry.
	if code, out := n.admin("GET", "/v1/apps/shop/versions", nil); code != 404 {
		t.Fatalf("versions after refused uploads: %d %s", code, out)
	}
	if s := n.pops["a"].Serving(); len(s) != 0 {
		t.Fatalf("a serves %v after refused uploads", s)
	}
	// Rollouts of what does not exist.
	v := n.deployed(good)
	if code, evs := n.rollout("shop", strings.Repeat("0", 32), 0, ""); code != 404 {
		t.Fatalf("rollout of an unknown version: %d %+v", code, evs)
	}
	if code, out := n.admin("POST", "/v1/apps/shop/rollback", strings.NewReader(`{"version":"ffff"}`)); code != 404 {
		t.Fatalf("rollback to an unknown version: %d %s", code, out)
	}
	if code, out := n.admin("POST", "/v1/apps/none/rollback", strings.NewReader(`{}`)); code != 404 {
		t.Fatalf("rollback of an unknown app: %d %s", code, out)
	}
	// One rollout of an app at a time: the second is refused, naming the first.
	v2, _, _ := n.upload(appDir(t, "shop", "bye.wasm", ""))
	first := make(chan int, 1)
	go func() {
		code, _ := n.rollout("shop", v2, 2*time.Second, "")
		first <- code
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, out := n.admin("GET", "/v1/apps", nil)
		if code == 200 && strings.Contains(string(out), `"rollout":"`+v2) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first rollout did not start: %s", out)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, evs := n.rollout("shop", v, 0, ""); code != 409 {
		t.Fatalf("a second rollout while one runs: %d %+v", code, evs)
	}
	if code := <-first; code != 200 {
		t.Fatalf("the first rollout: %d", code)
	}
	// Edges send deploys to the centre.
	req, _ := http.NewRequest("POST", "http://"+n.pops["a"].AdminAddr()+"/v1/apps/shop/rollback", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Fatalf("a deploy call at an edge: %d", resp.StatusCode)
	}
}

// With too few requests to judge it, a version is judged by its health
// route, which the PoP calls itself; a PoP that dies mid-rollout is skipped
// and catches up when it returns.
func TestDeployHealthGateAndDeadPoP(t *testing.T) {
	t.Parallel()
	n := newDeployNet(t, "c", "a", "b")
	n.waitLinks()
	v1 := n.deployed(appDir(t, "shop", "hello.wasm", `health = "/healthz"`))
	bad, _, _ := n.upload(appDir(t, "shop", "trap.wasm", `health = "/healthz"`))
	code, evs := n.rollout("shop", bad, 500*time.Millisecond, "a")
	last := lastEvent(evs)
	if code != 200 || last.State != "rolled_back" || last.Figure == nil || last.Figure.Judged != "health" || !strings.Contains(last.Msg, "5 of 5 calls of the health route failed") {
		t.Fatalf("a version whose health route fails: %d %+v", code, last)
	}
	n.eventually("shop", v1, "a")

	good, _, _ := n.upload(appDir(t, "shop", "bye.wasm", `health = "/healthz"`))
	n.stop("b")
	code, evs = n.rollout("shop", good, 200*time.Millisecond, "a")
	skipped := false
	for _, e := range evs {
		skipped = skipped || (e.PoP == "b" && e.State == "skipped")
	}
	if last := lastEvent(evs); code != 200 || last.State != "done" || !skipped {
		t.Fatalf("a rollout with b down: %d %+v", code, evs)
	}
	n.start("b")
	if _, body, v := n.get("b", "shop", "/"); body != "bye" || v != good {
		t.Fatalf("b back after the rollout: %q (%s), want %s", body, v, good)
	}
}

// waitLinked waits until every PoP of pops is linked to every other.
func waitLinked(t *testing.T, pops map[string]*PoP) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, p := range pops {
		for _, q := range pops {
			for p != q && !p.Mesh.Up(q.opts.Self) {
				if time.Now().After(deadline) {
					t.Fatalf("%s is not linked to %s", p.opts.Self, q.opts.Self)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
}
