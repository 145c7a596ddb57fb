package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/admin/admintest"
)

// testNet is a network started with `verge net up` as separate processes.
type testNet struct {
	t   *testing.T
	dir string
	nf  *netFile
}

func netCmd(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(vergeBin, append([]string{"net"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("verge net %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func startNet(t *testing.T, pops int, extra ...string) *testNet {
	t.Helper()
	app := filepath.Join("..", "..", "examples", "cart")
	if _, err := os.Stat(filepath.Join(app, "cart.wasm")); err != nil {
		t.Fatalf("%s is not built (%v): run make examples", app, err)
	}
	return startNetApp(t, app, pops, extra...)
}

func startNetApp(t *testing.T, app string, pops int, extra ...string) *testNet {
	t.Helper()
	dir := t.TempDir()
	args := append([]string{"up", "--dir", dir, "--pops", fmt.Sprint(max(pops, 1)), "--app", app, "--no-build",
		"--latency-scale", "0", "--anti-entropy", "1s"}, extra...)
	cmd := exec.Command(vergeBin, append([]string{"net"}, args...)...)
	out, err := cmd.CombinedOutput()
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(dir, "net.json")); err == nil {
			exec.Command(vergeBin, "net", "down", "--dir", dir).Run()
		}
	})
	if err != nil {
		t.Fatalf("verge net up: %v\n%s", err, out)
	}
	nf, err := readNet(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &testNet{t: t, dir: dir, nf: nf}
}

func (n *testNet) pop(id string) netPoP {
	p, err := n.nf.pop(id)
	if err != nil {
		n.t.Fatal(err)
	}
	return *p
}

// adminGet reads from a PoP's admin API with the network's token.
func (n *testNet) adminGet(id, path string) (*http.Response, error) {
	return adminCall(10*time.Second, "GET", "http://"+n.pop(id).Admin+path, n.nf.Token)
}

// doc reads a document through a PoP's admin API ("" if absent).
func (n *testNet) doc(id, coll, key string) string {
	resp, err := n.adminGet(id, "/v1/apps/cart/collections/"+coll+"/docs/"+key)
	if err != nil {
		return "unreachable"
	}
	defer resp.Body.Close()
	if resp.StatusCode == 404 {
		return ""
	}
	var v any
	json.NewDecoder(resp.Body).Decode(&v)
	b, _ := json.Marshal(v)
	return string(b)
}

func (n *testNet) add(id, user, sku string) {
	n.t.Helper()
	resp, err := http.Post("http://"+n.pop(id).HTTP+"/cart/"+user+"/add?sku="+sku, "", nil)
	if err != nil {
		n.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		n.t.Fatalf("add at %s: %s", id, resp.Status)
	}
}

func (n *testNet) view(id string) {
	n.t.Helper()
	if code, body := get(n.t, "http://"+n.pop(id).HTTP+"/cart/nobody"); code != 200 {
		n.t.Fatalf("view at %s: %d %s", id, code, body)
	}
}

func (n *testNet) waitDoc(coll, key, want string, ids ...string) {
	n.t.Helper()
	for _, id := range ids {
		eventually(n.t, fmt.Sprintf("%s/%s = %s at %s (now %s)", coll, key, want, id, n.doc(id, coll, key)), func() bool {
			return n.doc(id, coll, key) == want
		})
	}
}

// TestNetFaults drives a 3-PoP network through the CLI: scopes, a
// partition, kill -9 and restart, with every acknowledged write kept.
func TestNetFaults(t *testing.T) {
	e2e(t)
	t.Parallel()
	n := startNet(t, 3) // ord (central), sfo, iad
	if !n.pop("ord").Central || n.pop("sfo").Central {
		t.Fatalf("net.json: %+v", n.nf.PoPs)
	}
	// The network has an operator token, in net.json, and every admin
	// endpoint of every PoP requires it.
	if len(n.nf.Token) < 32 {
		t.Fatalf("net.json holds token %q, want a generated one", n.nf.Token)
	}
	for _, p := range n.nf.PoPs {
		admintest.RequireToken(t, "http://"+p.Admin, "wrong")
	}

	// Scopes: a cart (local) goes to the centre only; page views (global) everywhere.
	n.add("sfo", "ann", "tea")
	n.view("sfo")
	n.waitDoc("carts", "ann", `{"tea":1}`, "ord")
	n.waitDoc("stats", "pages", `{"cart":1}`, "iad", "ord")
	if got := n.doc("iad", "carts", "ann"); got != "" {
		t.Fatalf("a local cart reached iad: %s", got)
	}

	// A partition: iad is cut off; writes on both sides converge after heal.
	netCmd(t, "partition", "--dir", n.dir, "iad", "all")
	n.view("sfo")
	n.view("iad")
	n.waitDoc("stats", "pages", `{"cart":2}`, "ord")
	if got := n.doc("iad", "stats", "pages"); got != `{"cart":2}` {
		t.Fatalf("during the partition iad reads %s, want its own write only", got)
	}
	netCmd(t, "heal", "--dir", n.dir)
	n.waitDoc("stats", "pages", `{"cart":3}`, "sfo", "iad", "ord")

	// kill -9 right after acknowledged writes: they are in sfo's log on
	// disk and reach the others once it is back.
	netCmd(t, "partition", "--dir", n.dir, "sfo", "all")
	for range 5 {
		n.add("sfo", "bo", "jam")
	}
	netCmd(t, "kill", "--dir", n.dir, "sfo")
	netCmd(t, "heal", "--dir", n.dir)
	if got := n.doc("ord", "carts", "bo"); got != "" {
		t.Fatalf("the centre has bo's cart before sfo is back: %s", got)
	}
	netCmd(t, "restart", "--dir", n.dir, "sfo")
	n.waitDoc("carts", "bo", `{"jam":5}`, "sfo", "ord")

	// Kill the centre; edge PoPs keep serving; the centre catches up.
	netCmd(t, "kill", "--dir", n.dir, "ord")
	n.add("iad", "cy", "fig")
	n.view("iad")
	netCmd(t, "restart", "--dir", n.dir, "ord")
	n.waitDoc("carts", "cy", `{"fig":1}`, "ord")
	n.waitDoc("stats", "pages", `{"cart":4}`, "sfo", "iad", "ord")

	out := netCmd(t, "route", "--dir", n.dir, "--at", "37.7,-122.4")
	if !strings.HasPrefix(out, "sfo ") {
		t.Fatalf("route from San Francisco: %s", out)
	}
	netCmd(t, "kill", "--dir", n.dir, "sfo")
	if out := netCmd(t, "route", "--dir", n.dir, "--at", "37.7,-122.4"); strings.HasPrefix(out, "sfo ") {
		t.Fatalf("route with sfo down: %s", out)
	}
}

// request sends method path to PoP id with the given home cookie and
// returns the body and the home cookie of the response.
func (n *testNet) request(method, id, path, home string) (body, newHome string) {
	n.t.Helper()
	req, _ := http.NewRequest(method, "http://"+n.pop(id).HTTP+path, nil)
	if home != "" {
		req.AddCookie(&http.Cookie{Name: "verge_home", Value: home})
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		n.t.Fatalf("%s %s at %s: %s %s", method, path, id, resp.Status, b)
	}
	for _, c := range resp.Cookies() {
		if c.Name == "verge_home" {
			newHome = c.Value
		}
	}
	return strings.TrimSpace(string(b)), newHome
}

// TestNetFollowsUser: a local cart follows its user from PoP to PoP, comes
// from the centre when its home is down, and never lands in a region the
// collection excludes.
func TestNetFollowsUser(t *testing.T) {
	e2e(t)
	t.Parallel()
	// The cart app, with carts kept in region "us" only.
	app := t.TempDir()
	copyFile(t, filepath.Join("..", "..", "examples", "cart", "cart.wasm"), filepath.Join(app, "cart.wasm"))
	manifest, err := os.ReadFile(filepath.Join("..", "..", "examples", "cart", "verge.toml"))
	if err != nil {
		t.Fatal(err)
	}
	restricted := strings.Replace(string(manifest), `scope = "local"`, `scope = "local"`+"\nregions = [\"us\"]", 1)
	if restricted == string(manifest) {
		t.Fatal("examples/cart/verge.toml no longer declares a local collection")
	}
	if err := os.WriteFile(filepath.Join(app, "verge.toml"), []byte(restricted), 0o644); err != nil {
		t.Fatal(err)
	}
	n := startNetApp(t, app, 4) // ord (central), sfo, iad (us), fra (eu)

	body, home := n.request("POST", "sfo", "/cart/joe/add?sku=tea", "")
	if home != "sfo" || !strings.Contains(body, `"tea":1`) {
		t.Fatalf("first add at sfo: %s, home %q", body, home)
	}
	// The user moves to iad: the cart comes along, and iad becomes its home.
	body, home = n.request("GET", "iad", "/cart/joe", home)
	if home != "iad" || !strings.Contains(body, `"tea":1`) {
		t.Fatalf("GET at iad with home sfo: %s, home %q", body, home)
	}
	body, home = n.request("POST", "iad", "/cart/joe/add?sku=tea", home)
	if !strings.Contains(body, `"tea":2`) {
		t.Fatalf("add at iad: %s", body)
	}
	n.waitDoc("carts", "joe", `{"tea":2}`, "ord")

	// Its home is down: the cart comes from the centre.
	netCmd(t, "kill", "--dir", n.dir, "iad")
	body, home = n.request("GET", "sfo", "/cart/joe", home)
	if home != "sfo" || !strings.Contains(body, `"tea":2`) {
		t.Fatalf("GET at sfo with home iad down: %s, home %q", body, home)
	}

	// fra (eu) may not hold carts: it forwards to the home PoP.
	body, _ = n.request("GET", "fra", "/cart/joe", home)
	if !strings.Contains(body, `"tea":2`) {
		t.Fatalf("GET at fra: %s", body)
	}
	if got := n.doc("fra", "carts", "joe"); got != "" {
		t.Fatalf("fra holds the cart: %s", got)
	}
	resp, err := n.adminGet("fra", "/v1/apps/cart/collections/carts/docs")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if code, list := resp.StatusCode, string(b); code != 200 || !strings.Contains(list, `"keys":[]`) {
		t.Fatalf("fra's carts: %d %s", code, list)
	}
}

// TestNetTopology: named PoPs from a topology file.
func TestNetTopology(t *testing.T) {
	e2e(t)
	t.Parallel()
	topo := filepath.Join(t.TempDir(), "topology.toml")
	if err := os.WriteFile(topo, []byte(`
[[pop]]
id = "cen"
region = "us"
lat = 39.1
lon = -94.6
central = true

[[pop]]
id = "par"
region = "eu"
lat = 48.85
lon = 2.35

[groups]
eu = ["par"]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	n := startNet(t, 0, "--topology", topo)
	if len(n.nf.PoPs) != 2 || !n.pop("cen").Central || n.pop("par").Region != "eu" || n.nf.Groups["eu"][0] != "par" {
		t.Fatalf("net.json: %+v", n.nf)
	}
	n.view("par")
	n.waitDoc("stats", "pages", `{"cart":1}`, "cen")
	if out := netCmd(t, "route", "--dir", n.dir, "--at", "51.5,-0.1"); !strings.HasPrefix(out, "par ") {
		t.Fatalf("route from London: %s", out)
	}
}
