package pop

import (
	"testing"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/app"
)

// hitsFirstFits lets an app's hits skip appHandler and serveLocal only when
// they would do nothing for it but set headers.
func TestHitsFirstFits(t *testing.T) {
	t.Parallel()
	net := verge.Network{PoPs: []verge.PoP{
		{ID: "c", Region: "us", Central: true},
		{ID: "e", Region: "eu"},
	}}
	pop := func(self string, apps map[string]AppPolicy) *PoP {
		p := &PoP{opts: Options{Self: self, Network: net}, quotas: newQuotas(AppPolicy{}, apps)}
		p.self, _ = net.PoP(self)
		return p
	}
	fn := func(kind verge.FunctionKind) verge.Function { return verge.Function{Name: "f", Kind: kind} }
	for _, tc := range []struct {
		name string
		at   string
		m    verge.Manifest
		apps map[string]AppPolicy
		want bool
	}{
		{"plain edge app", "e", verge.Manifest{Functions: []verge.Function{fn("")}}, nil, true},
		{"global collection", "e", verge.Manifest{Collections: []verge.Collection{{Name: "g", Scope: verge.Scope{Kind: verge.ScopeGlobal}}}}, nil, true},
		{"local collection: the home cookie", "e", verge.Manifest{Collections: []verge.Collection{{Name: "l", Scope: verge.Scope{Kind: verge.ScopeLocal}}}}, nil, false},
		{"collection kept elsewhere: forwarded", "e", verge.Manifest{Collections: []verge.Collection{{Name: "g", Scope: verge.Scope{Kind: verge.ScopeGlobal}, Regions: []string{"us"}}}}, nil, false},
		{"central placement at an edge", "e", verge.Manifest{Placement: verge.PlacementCentral}, nil, false},
		{"central placement at the centre", "c", verge.Manifest{Placement: verge.PlacementCentral}, nil, true},
		{"central function at an edge", "e", verge.Manifest{Functions: []verge.Function{fn(verge.KindCentral)}}, nil, false},
		{"central function at the centre", "c", verge.Manifest{Functions: []verge.Function{fn(verge.KindCentral)}}, nil, true},
		{"room", "c", verge.Manifest{Functions: []verge.Function{fn(verge.KindRoom)}}, nil, false},
		{"its own quota", "e", verge.Manifest{}, map[string]AppPolicy{"shop": {MaxConcurrent: 4}}, false},
		{"another app's quota", "e", verge.Manifest{}, map[string]AppPolicy{"blog": {RequestsPerSecond: 10}}, true},
		{"a weight only", "e", verge.Manifest{}, map[string]AppPolicy{"shop": {Weight: 2}}, true},
	} {
		tc.m.Name = "shop"
		h := &hosted{name: "shop", full: &tc.m, app: &app.App{}}
		if got := pop(tc.at, tc.apps).hitsFirstFits(h); got != tc.want {
			t.Errorf("%s at %s: %v, want %v", tc.name, tc.at, got, tc.want)
		}
	}
	if pop("e", nil).hitsFirstFits(&hosted{name: "shop", full: &verge.Manifest{Name: "shop"}}) {
		t.Error("an app with no function here: hits first")
	}
}

// route names an app by its host, with or without a port, in any case.
func TestRouteByHost(t *testing.T) {
	t.Parallel()
	shop := &hosted{name: "shop"}
	a := &apps{}
	a.table.Store(&routing{byHost: map[string]*hosted{"shop.localhost": shop, "shop.example": shop, "::1": shop}})
	for _, tc := range []struct {
		host, want string
		named      bool
	}{
		{"shop.localhost", "shop.localhost", true},
		{"Shop.Example:8080", "shop.example", true},
		{"[::1]:80", "::1", true},
		{"blog.localhost:80", "blog.localhost", true},
		{"example.org", "example.org", false},
		{"[::1]", "[::1]", false},
	} {
		h, host, named := a.route(tc.host)
		if host != tc.want || named != tc.named || (h == shop) != (tc.want != "blog.localhost" && tc.named) {
			t.Errorf("route(%q) = %v, %q, %v", tc.host, h, host, named)
		}
	}
}
