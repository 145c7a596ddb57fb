package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/examples/shop/shoppers"
)

// The central copy of the shop is the same bundle with one line added to
// its manifest: it parses, and says placement = "central".
func TestPlacedApp(t *testing.T) {
	t.Parallel()
	src := filepath.Join("..", "..", "examples", "shop")
	if _, err := os.Stat(filepath.Join(src, "shop.wasm")); err != nil {
		t.Skipf("examples/shop is not built (%v): run make examples", err)
	}
	dir := t.TempDir()
	if err := placedApp(src, dir); err != nil {
		t.Fatal(err)
	}
	m, err := verge.LoadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	orig, err := verge.LoadManifest(src)
	if err != nil {
		t.Fatal(err)
	}
	if m.Placement != verge.PlacementCentral || orig.Placement != verge.PlacementEdge || len(m.Functions) != len(orig.Functions) || len(m.Counters) != 1 {
		t.Fatalf("placed copy: placement %q (original %q), %d functions, counters %+v", m.Placement, orig.Placement, len(m.Functions), m.Counters)
	}
}

// The ratio is the central median over the edge median.
func TestPairOf(t *testing.T) {
	t.Parallel()
	samples := func(ms ...int) []shoppers.Sample {
		var out []shoppers.Sample
		for _, m := range ms {
			out = append(out, shoppers.Sample{Dur: time.Duration(m) * time.Millisecond})
		}
		return out
	}
	p := pairOf(samples(10, 20, 30), samples(100, 300, 200, 400, 500))
	if p.Edge.P50Ms != 20 || p.Central.P50Ms != 300 || p.Ratio != 15 || p.Edge.N != 3 || p.Central.P99Ms != 500 {
		t.Fatalf("pairOf: %+v", p)
	}
	if p := pairOf(nil, samples(1)); p.Ratio != 0 {
		t.Fatalf("no edge samples: ratio %v", p.Ratio)
	}
}

// The shoppers' popularity order spreads over the categories, and the
// clearance lots are apart.
func TestNewShop(t *testing.T) {
	t.Parallel()
	s := newShop()
	if len(s.Products) != 240 || len(s.Scarce) != 10 || s.Products[0] != "p001" || s.Products[1] != "p025" {
		t.Fatalf("shop: %d products starting %v, %d scarce", len(s.Products), s.Products[:3], len(s.Scarce))
	}
	if strings.HasPrefix(s.Products[239], "c") || slug("São Paulo") != "saopaulo" {
		t.Fatalf("last product %s, slug %q", s.Products[239], slug("São Paulo"))
	}
}
