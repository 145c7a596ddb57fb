package shoppers

import (
	"testing"
	"time"
)

func TestNearestAndCities(t *testing.T) {
	t.Parallel()
	n := &Net{PoPs: []PoP{
		{ID: "ord", Lat: 41.98, Lon: -87.90, Central: true},
		{ID: "lhr", Lat: 51.47, Lon: -0.45},
		{ID: "sin", Lat: 1.36, Lon: 103.99},
	}}
	continents := map[string]bool{}
	for _, c := range Cities {
		continents[c.Continent] = true
	}
	if len(Cities) < 10 || len(continents) < 4 {
		t.Fatalf("%d cities on %d continents; the issue asks for 10 on 4", len(Cities), len(continents))
	}
	for city, want := range map[string]string{"Chicago": "ord", "Paris": "lhr", "Tokyo": "sin"} {
		for _, c := range Cities {
			if c.Name == city {
				if got := n.Nearest(c.At())[0].ID; got != want {
					t.Errorf("nearest to %s: %s, want %s", city, got, want)
				}
			}
		}
	}
	if n.Central().ID != "ord" {
		t.Errorf("central: %s", n.Central().ID)
	}
}

func TestLedger(t *testing.T) {
	t.Parallel()
	l := NewLedger()
	l.AddJourney(&Journey{User: "a", Password: "pa", Registered: true, Orders: []string{"o1"}, Unsure: []string{"o2"}})
	l.AddJourney(&Journey{User: "b", Password: "pb"}) // not registered, no order
	l.AddRace("joe", "p1", 201)
	l.AddRace("joe", "p2", 409)
	l.AddRace("joe", "p3", 503)
	l.AddStock("p001", 10)
	l.AddStock("p001", -3)
	if len(l.Users) != 1 || l.Users["a"] != "pa" || !l.Orders["a"]["o1"] || l.Orders["a"]["o2"] || len(l.Orders) != 1 {
		t.Fatalf("journeys: users %v, orders %v", l.Users, l.Orders)
	}
	if r := l.Races["joe"]; len(r.Won) != 1 || r.Lost != 1 || len(r.Unsure) != 1 || l.Added["p001"] != 7 {
		t.Fatalf("race %+v, added %v", r, l.Added)
	}
}

func TestPhases(t *testing.T) {
	t.Parallel()
	start := time.Now()
	at := func(s float64) time.Time { return start.Add(time.Duration(s * float64(time.Second))) }
	timeline := []Event{{0, "start"}, {10, "kill"}, {20, "heal"}}
	samples := []Sample{
		{Start: at(1), Dur: 10 * time.Millisecond, Status: 200, First: "fra", PoP: "fra"},
		{Start: at(11), Dur: 30 * time.Millisecond, Status: 200, First: "fra", PoP: "lhr", Attempts: []int{0, 200}},
		{Start: at(12), Dur: 50 * time.Millisecond, Status: 503, First: "lhr", Attempts: []int{503, 503}},
	}
	ps := phases(samples, timeline, start)
	if len(ps) != 2 || ps[0].Actions != 1 || ps[1].Actions != 2 || ps[1].Retried != 2 || ps[1].FailedOver != 1 ||
		ps[1].Statuses["503"] != 1 || ps[1].P50Ms != 30 || ps[1].P99Ms != 50 {
		t.Fatalf("phases: %+v", ps)
	}
	if Percentile(nil, 0.5) != 0 {
		t.Fatal("percentile of nothing")
	}
}

func TestParseEscrows(t *testing.T) {
	text := `# HELP verge_stock_escrow_units Units of a bounded stock this PoP holds in escrow.
# TYPE verge_stock_escrow_units gauge
verge_stock_escrow_units{app="shop",counter="stock-p001",pop="fra"} 10
verge_stock_escrow_units{app="other",counter="stock-p001",pop="fra"} 7
verge_stock_escrow_units{app="shop",counter="stock-c002",pop="fra"} 0
verge_stock_escrow_units_total{app="shop",counter="x"} 3
verge_other{app="shop",counter="stock-p009"} 5
`
	got, err := parseEscrows([]byte(text), "shop")
	if err != nil || len(got) != 2 || got["stock-p001"] != 10 || got["stock-c002"] != 0 {
		t.Fatalf("parseEscrows: %v, %v", got, err)
	}
	for _, bad := range []string{
		`verge_stock_escrow_units{app="shop",counter="stock-p001"} 1.5`,
		`verge_stock_escrow_units{app="shop",counter="stock-p001"} -1`,
		`verge_stock_escrow_units{app="shop",counter=stock-p001} 1`,
		`verge_stock_escrow_units{app="shop",counter="stock-p001"}`,
	} {
		if _, err := parseEscrows([]byte(bad), "shop"); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}
