package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
		t.Fatalf("examples/cart is not built (%v): run make examples", err)
	}
	dir := t.TempDir()
	args := append([]string{"up", "--dir", dir, "--pops", fmt.Sprint(pops), "--app", app, "--no-build",
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

// doc reads a document through a PoP's admin API ("" if absent).
func (n *testNet) doc(id, coll, key string) string {
	resp, err := http.Get("http://" + n.pop(id).Admin + "/v1/apps/cart/collections/" + coll + "/docs/" + key)
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
	t.Parallel()
	n := startNet(t, 3) // ord (central), sfo, iad
	if !n.pop("ord").Central || n.pop("sfo").Central {
		t.Fatalf("net.json: %+v", n.nf.PoPs)
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
