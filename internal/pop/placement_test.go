package pop

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/wasm/wasmtest"
)

// An app placed centrally runs, and keeps its data, at the centre: an edge
// PoP forwards its requests there.
func TestPlacementCentral(t *testing.T) {
	t.Parallel()
	mod := wasmtest.BuildGo(t, "internal/host/testdata/godocs", true)
	m, err := verge.ParseManifest(filepath.Join(t.TempDir(), "verge.toml"), []byte(`
name = "shop"
placement = "central"
[[function]]
name = "docs"
module = "`+mod+`"
executor = "verge"
routes = ["/*"]
[[collection]]
name = "carts"
scope = "local"
`))
	if err != nil {
		t.Fatal(err)
	}
	n := verge.Network{PoPs: []verge.PoP{
		{ID: "c", Region: "us", Central: true, Number: 1, Mesh: freeAddr(t), HTTP: freeAddr(t)},
		{ID: "a", Region: "eu", Number: 2, Mesh: freeAddr(t), HTTP: freeAddr(t)},
	}}
	pops := map[string]*PoP{}
	for _, q := range n.PoPs {
		p, err := Start(context.Background(), Options{Self: q.ID, Network: n, Data: filepath.Join(t.TempDir(), q.ID), App: m,
			CacheDir: "-", NoSync: true, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		pops[q.ID] = p
	}
	resp, err := http.Post("http://"+pops["a"].HTTPAddr()+"/bad?user=u1", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "<nil>" {
		t.Fatalf("write through the edge: %d %s", resp.StatusCode, b)
	}
	// The response says where the request ran, and through which PoP.
	if got, via := resp.Header.Values("Verge-PoP"), resp.Header.Get("Verge-Via"); len(got) != 1 || got[0] != "c" || via != "a" {
		t.Fatalf("Verge-PoP %q, Verge-Via %q; want the centre, via the edge", got, via)
	}
	direct, err := http.Get("http://" + pops["c"].HTTPAddr() + "/get?user=u1")
	if err != nil {
		t.Fatal(err)
	}
	direct.Body.Close()
	if got := direct.Header.Get("Verge-PoP"); got != "c" || direct.Header.Get("Verge-Via") != "" {
		t.Fatalf("served at the centre: Verge-PoP %q, Verge-Via %q", got, direct.Header.Get("Verge-Via"))
	}
	if doc, found, _ := pops["c"].Docs.Get("shop", "carts", "u1"); !found || string(doc) != `{"items":1}` {
		t.Fatalf("the centre holds %s (found %v), want the cart written through the edge", doc, found)
	}
	if _, found, _ := pops["a"].Docs.Get("shop", "carts", "u1"); found {
		t.Fatal("the edge holds the cart of a centrally placed app")
	}
}
