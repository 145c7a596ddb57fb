package main

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/verge-edge/verge/bench/internal/harness"
	"github.com/verge-edge/verge/examples/shop/catalogue"
	"github.com/verge-edge/verge/examples/shop/shoppers"
	"github.com/verge-edge/verge/internal/netsim"
)

var placements = []string{"edge", "central"}

type compareResult struct {
	Scenario string `json:"scenario"`
	Env      env    `json:"env"`
	// Actions: every city's samples together, per action.
	Actions []actionRow `json:"actions"`
	Cities  []cityRow   `json:"cities"`
	// Stopped counts journeys that stopped at an action that did not end
	// as expected: "placement action status".
	Stopped map[string]int `json:"stopped"`
	// Retried counts actions that took more than one attempt (a 503 or
	// 504 retried, a PoP failed over), by placement: none in a healthy run.
	Retried map[string]int `json:"retried"`
	// StockTaken counts acknowledged checkouts by where their stock was
	// taken: "placement action at".
	StockTaken map[string]int                  `json:"stock_taken"`
	Invariants map[string]*shoppers.Invariants `json:"invariants"`
	Summary    summary                         `json:"summary"`
}

type stat struct {
	N     int     `json:"n"`
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
}

// pair is one set of samples on both networks; Ratio is the central
// median over the edge median.
type pair struct {
	Edge    stat    `json:"edge"`
	Central stat    `json:"central"`
	Ratio   float64 `json:"ratio"`
}

type actionRow struct {
	Action string `json:"action"`
	pair
	// The time spent at the PoP (Server-Timing), median: the app's own
	// share of the client's latency.
	ServerEdgeP50Ms    float64 `json:"server_edge_p50_ms"`
	ServerCentralP50Ms float64 `json:"server_central_p50_ms"`
}

type cityRow struct {
	cityInfo
	PoPRTTToCentreMs float64     `json:"pop_rtt_to_centre_ms"`
	All              pair        `json:"all_actions"`
	Actions          []actionRow `json:"actions"`
	// At the edge, registering and checking out near the end of a stock
	// each wait for the centre: the round trips the app counted
	// (Server-Timing centre;desc, the most of any sample), the median time
	// they took, and that time in round trips between this city's PoP and
	// the centre (absent for the centre's own city). Besides, what each
	// costs the client over its local counterpart: registering over
	// logging in (both hash a password), a checkout near the end over one
	// from the PoP's escrow.
	RegisterTrips    int     `json:"register_centre_trips"`
	RegisterCentreMs float64 `json:"register_centre_ms"`
	RegisterRTTs     float64 `json:"register_round_trips,omitempty"`
	NearEndTrips     int     `json:"checkout_near_end_centre_trips"`
	NearEndCentreMs  float64 `json:"checkout_near_end_centre_ms"`
	NearEndRTTs      float64 `json:"checkout_near_end_round_trips,omitempty"`
	RegisterExtraMs  float64 `json:"register_over_login_ms"`
	NearEndExtraMs   float64 `json:"checkout_near_end_over_checkout_ms"`
}

type summary struct {
	Line string `json:"line"`
	// EdgeVsCentralMedian is the central median over the edge median of
	// every action of every city.
	EdgeVsCentralMedian float64 `json:"edge_vs_central_median"`
	EdgeP50Ms           float64 `json:"edge_p50_ms"`
	CentralP50Ms        float64 `json:"central_p50_ms"`
	// The same for the cities whose nearest PoP is outside the centre's
	// region, and inside it.
	OutsideRatio float64 `json:"outside_centre_region_ratio"`
	InsideRatio  float64 `json:"centre_region_ratio"`
	GoalOutside  bool    `json:"goal_outside_10x_met"`
	GoalOverall  bool    `json:"goal_overall_5x_met"`
	// Registering and checking out near the end of a stock at the edge:
	// the most round trips to the centre the app counted in any of them,
	// and the time they took in round trips of the city's PoP (each city's
	// median; the median and the largest over the cities). Goal: one
	// round trip, not more: every one counted exactly one, and the median
	// city's took at most 1.5 round trips of time (the centre's own work,
	// an fsync or two, is in it; on a busy machine, scheduling too).
	CentreTripsMax           int     `json:"centre_trips_max"`
	RegisterRoundTripsMedian float64 `json:"register_round_trips_median"`
	RegisterRoundTripsMax    float64 `json:"register_round_trips_max"`
	NearEndRoundTripsMedian  float64 `json:"checkout_near_end_round_trips_median"`
	NearEndRoundTripsMax     float64 `json:"checkout_near_end_round_trips_max"`
	GoalOneRoundTrip         bool    `json:"goal_one_round_trip_met"`
	Stopped                  int     `json:"journeys_stopped"`
	InvariantsOK             bool    `json:"invariants_ok"`
}

func (r *compareResult) SummaryLine() string { return r.Summary.Line }

func runCompare(ctx context.Context, cfg config, b *bin, dir string) (*compareResult, error) {
	app, err := absApp()
	if err != nil {
		return nil, err
	}
	loadStart := loadAvg()
	cache := filepath.Join(dir, "cache")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, err
	}
	started := time.Now()
	scale := []string{"--latency-scale", fmt.Sprint(cfg.scale), "--spot-timeout", spotTimeout}
	central := filepath.Join(dir, "central-app")
	if err := placedApp(app, central); err != nil {
		return nil, err
	}
	// The two networks are independent: they start side by side (the
	// first to compile the module puts it in the shared cache, the other
	// may compile it too), as they are loaded and checked side by side.
	progress("starting both networks side by side (%d PoPs each): the shop as it is, and the same bundle with placement = \"central\"", cfg.pops)
	var edge, cen *shoppers.Net
	var eerr, cerr error
	var wg sync.WaitGroup
	wg.Go(func() { edge, eerr = b.netUp(ctx, "edge", filepath.Join(dir, "edge"), app, cache, cfg.pops, scale...) })
	wg.Go(func() {
		cen, cerr = b.netUp(ctx, "central", filepath.Join(dir, "central"), central, cache, cfg.pops, scale...)
	})
	wg.Wait()
	defer b.netDown(edge, cen) // side by side too
	if err := errors.Join(eerr, cerr); err != nil {
		return nil, err
	}
	nets := map[string]*shoppers.Net{"edge": edge, "central": cen}
	ledgers := map[string]*shoppers.Ledger{"edge": shoppers.NewLedger(), "central": shoppers.NewLedger()}
	products := append(catalogue.Products(cfg.stock), scarce(cfg.scarce)...)
	shop := newShop()
	progress("loading %d products into both; then each edge PoP sells the %d most popular products once: their escrows are in place, as in a shop that has been selling", len(products), cfg.prefill)
	errs := make([]error, 2)
	for i, pl := range placements {
		wg.Go(func() {
			errs[i] = load(ctx, nets[pl], products, ledgers[pl])
			if errs[i] == nil && pl == "edge" { // while the central network still loads
				errs[i] = prefill(ctx, edge, shop.Products[:cfg.prefill], ledgers["edge"])
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	leg := shoppers.Leg{Base: cfg.lastMile, Scale: cfg.scale}
	clients := map[string][]*shoppers.Client{}
	for _, pl := range placements {
		for _, c := range shoppers.Cities {
			cl, err := shoppers.NewClient(c, nets[pl], leg)
			if err != nil {
				return nil, err
			}
			defer cl.Close()
			clients[pl] = append(clients[pl], cl)
		}
	}
	startup := time.Since(started)

	// Each city's shopper alternates networks journey by journey (edge
	// first on even journeys, central first on odd ones), so that both
	// see the same load on the machine.
	type key struct{ pl, city string }
	var mu sync.Mutex
	samples := map[key][]shoppers.Sample{}
	res := &compareResult{Scenario: "compare", Stopped: map[string]int{}, Retried: map[string]int{}, StockTaken: map[string]int{}, Invariants: map[string]*shoppers.Invariants{}}
	nonce := time.Now().UnixMilli() % 1000000
	journey := func(pl string, ci, k int, rng *mrand.Rand, measured bool) {
		cl := clients[pl][ci]
		o := shoppers.JourneyOptions{User: fmt.Sprintf("%s-%s-%d-%d", slug(cl.City.Name), pl, k, nonce), Password: "pw-" + slug(cl.City.Name),
			Think: cfg.think, NearEnd: true}
		j := cl.NewShopper().Run(ctx, shop, o, rng)
		ledgers[pl].AddJourney(j)
		mu.Lock()
		defer mu.Unlock()
		if j.Err != nil {
			last := j.Samples[len(j.Samples)-1]
			res.Stopped[fmt.Sprintf("%s %s %d", pl, last.Action, last.Status)]++
			if cfg.verbose {
				progress("%s %s journey %d stopped: %v", pl, cl.City.Name, k, j.Err)
			}
		}
		if measured {
			for a, at := range j.Stock {
				res.StockTaken[pl+" "+a+" "+at]++
			}
			samples[key{pl, cl.City.Name}] = append(samples[key{pl, cl.City.Name}], j.Samples...)
			for _, s := range j.Samples {
				if len(s.Attempts) > 1 {
					res.Retried[pl]++
				}
			}
		}
	}
	// Every city browses each network once first, unmeasured: its
	// connections open, and the PoPs it reaches start the shop's instances.
	for _, pl := range placements {
		for _, cl := range clients[pl] {
			wg.Go(func() {
				s := cl.NewShopper()
				for _, path := range []string{"/", "/api/categories", "/api/products/" + shop.Products[0]} {
					s.Do(ctx, "warm", "GET", path, nil)
				}
			})
		}
	}
	wg.Wait()
	progress("shoppers in %d cities: %d warm-up journeys each on both networks at once, then %d measured journeys each on each network in turn", len(shoppers.Cities), cfg.warmup, cfg.journeys)
	for ci := range shoppers.Cities {
		wg.Go(func() {
			rng := mrand.New(mrand.NewPCG(uint64(ci), uint64(nonce)))
			for k := range cfg.warmup + cfg.journeys {
				if k < cfg.warmup {
					// Unmeasured: the city's warm-up journeys on the two
					// networks run at once (each with its own random
					// source, so that the measured journeys' draws do not
					// depend on the warm-up's timing).
					var ww sync.WaitGroup
					for i, pl := range placements {
						wrng := mrand.New(mrand.NewPCG(uint64(ci)<<8|uint64(k)<<1|uint64(i), uint64(nonce)+1))
						ww.Go(func() {
							if ctx.Err() == nil {
								journey(pl, ci, k, wrng, false)
							}
						})
					}
					ww.Wait()
					continue
				}
				order := placements
				if k%2 == 1 {
					order = []string{"central", "edge"}
				}
				for _, pl := range order {
					if ctx.Err() == nil {
						journey(pl, ci, k, rng, true)
					}
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	progress("checking both networks: orders, stock, usernames")
	// The networks are independent: checked side by side, each waits for
	// its own replication to settle at the same time.
	invs := make([]*shoppers.Invariants, len(placements))
	checkStart := time.Now()
	for i, pl := range placements {
		wg.Go(func() {
			invs[i], errs[i] = shoppers.Check(ctx, nets[pl], ledgers[pl], 60*time.Second)
		})
	}
	wg.Wait()
	if invs[0] != nil && invs[1] != nil {
		progress("checked in %.1f s (%d and %d comparisons)", time.Since(checkStart).Seconds(), invs[0].Comparisons, invs[1].Comparisons)
	}
	for i, pl := range placements {
		if errs[i] != nil {
			return nil, fmt.Errorf("checking the %s network: %w", pl, errs[i])
		}
		res.Invariants[pl] = invs[i]
	}
	res.Env = newEnv(cfg, edge, clients["edge"])
	res.Env.StartupS = harness.Round(startup.Seconds(), 1)
	res.Env.LoadAvgStart, res.Env.LoadAvgEnd = loadStart, loadAvg()
	res.Env.Journeys = journeysInfo{cfg.warmup, cfg.journeys}

	// Per action over every city, and per city.
	byAction := func(pl, city string) map[string][]shoppers.Sample {
		out := map[string][]shoppers.Sample{}
		for k, ss := range samples {
			if k.pl == pl && (city == "" || k.city == city) {
				for _, s := range ss {
					out[s.Action] = append(out[s.Action], s)
				}
			}
		}
		return out
	}
	rows := func(city string) []actionRow {
		e, c := byAction("edge", city), byAction("central", city)
		var out []actionRow
		for _, a := range shoppers.Actions {
			if len(e[a]) == 0 && len(c[a]) == 0 {
				continue
			}
			out = append(out, actionRow{Action: a, pair: pairOf(e[a], c[a]),
				ServerEdgeP50Ms: serverP50(e[a]), ServerCentralP50Ms: serverP50(c[a])})
		}
		return out
	}
	all := func(pl string, keep func(cityInfo) bool) []shoppers.Sample {
		var out []shoppers.Sample
		for _, ci := range res.Env.Cities {
			if keep(ci) {
				out = append(out, samples[key{pl, ci.Name}]...)
			}
		}
		return out
	}
	res.Actions = rows("")
	centre := edge.Central()
	sm := &res.Summary
	var regRTTs, nearRTTs []float64
	for i, ci := range res.Env.Cities {
		cl := clients["edge"][i]
		row := cityRow{cityInfo: ci, Actions: rows(ci.Name)}
		row.All = pairOf(samples[key{"edge", ci.Name}], samples[key{"central", ci.Name}])
		rtt := 2 * wanOneWay(cfg, cl.Home(), centre)
		row.PoPRTTToCentreMs = harness.Ms(rtt)
		e := byAction("edge", ci.Name)
		row.RegisterTrips, row.RegisterCentreMs = trips(e["register"])
		row.NearEndTrips, row.NearEndCentreMs = trips(e["checkout_near_end"])
		sm.CentreTripsMax = max(sm.CentreTripsMax, row.RegisterTrips, row.NearEndTrips)
		row.RegisterExtraMs = harness.Round(p50(e["register"])-p50(e["login"]), 3)
		row.NearEndExtraMs = harness.Round(p50(e["checkout_near_end"])-p50(e["checkout"]), 3)
		if rtt > 0 {
			row.RegisterRTTs = harness.Round(row.RegisterCentreMs/harness.Ms(rtt), 2)
			row.NearEndRTTs = harness.Round(row.NearEndCentreMs/harness.Ms(rtt), 2)
			sm.RegisterRoundTripsMax = max(sm.RegisterRoundTripsMax, row.RegisterRTTs)
			sm.NearEndRoundTripsMax = max(sm.NearEndRoundTripsMax, row.NearEndRTTs)
			regRTTs, nearRTTs = append(regRTTs, row.RegisterRTTs), append(nearRTTs, row.NearEndRTTs)
		}
		res.Cities = append(res.Cities, row)
	}
	everyCity := func(cityInfo) bool { return true }
	overall := pairOf(all("edge", everyCity), all("central", everyCity))
	outside := pairOf(all("edge", func(c cityInfo) bool { return c.Outside }), all("central", func(c cityInfo) bool { return c.Outside }))
	inside := pairOf(all("edge", func(c cityInfo) bool { return !c.Outside }), all("central", func(c cityInfo) bool { return !c.Outside }))
	sm.EdgeVsCentralMedian, sm.EdgeP50Ms, sm.CentralP50Ms = overall.Ratio, overall.Edge.P50Ms, overall.Central.P50Ms
	sm.OutsideRatio, sm.InsideRatio = outside.Ratio, inside.Ratio
	sm.GoalOutside, sm.GoalOverall = outside.Ratio >= 10, overall.Ratio >= 5
	sm.RegisterRoundTripsMedian, sm.NearEndRoundTripsMedian = median(regRTTs), median(nearRTTs)
	sm.GoalOneRoundTrip = sm.CentreTripsMax == 1 && sm.RegisterRoundTripsMedian <= 1.5 && sm.NearEndRoundTripsMedian <= 1.5
	for _, n := range res.Stopped {
		sm.Stopped += n
	}
	sm.InvariantsOK = res.Invariants["edge"].Conserved && res.Invariants["central"].Conserved
	sm.Line = fmt.Sprintf("bench/shop compare: edge vs central median over all actions %.1fx (edge %.1f ms, central %.1f ms; goal ≥ 5x: %s); "+
		"outside the centre's region %.1fx (goal ≥ 10x: %s), inside %.1fx; register and checkout near the end wait for the centre %d round trip at most, "+
		"taking %.2f and %.2f round trips of time in the median city (goal one: %s); %d journeys stopped; invariants %s; %d PoPs, %d cities; load average %.1f → %.1f",
		sm.EdgeVsCentralMedian, sm.EdgeP50Ms, sm.CentralP50Ms, harness.MetWord(sm.GoalOverall),
		sm.OutsideRatio, harness.MetWord(sm.GoalOutside), sm.InsideRatio, sm.CentreTripsMax, sm.RegisterRoundTripsMedian, sm.NearEndRoundTripsMedian,
		harness.MetWord(sm.GoalOneRoundTrip), sm.Stopped, map[bool]string{true: "kept", false: "BROKEN"}[sm.InvariantsOK],
		cfg.pops, len(shoppers.Cities), res.Env.LoadAvgStart, res.Env.LoadAvgEnd)
	return res, nil
}

// newShop is what the shoppers buy: the catalogue's products (the first
// ones are the most popular, Zipf-distributed) and the clearance lots.
func newShop() *shoppers.Shop {
	s := &shoppers.Shop{Categories: catalogue.Categories}
	ps := catalogue.Products(0)
	// Popularity spread over the categories: p001, p025, p049, ... first.
	slices.SortStableFunc(ps, func(a, b catalogue.Product) int {
		return (index(a.ID) % catalogue.PerCategory) - (index(b.ID) % catalogue.PerCategory)
	})
	for _, p := range ps {
		s.Products = append(s.Products, p.ID)
	}
	for _, p := range scarce(0) {
		s.Scarce = append(s.Scarce, p.ID)
	}
	return s
}

func index(id string) int {
	var n int
	fmt.Sscanf(id, "p%d", &n)
	return n - 1
}

func pairOf(edge, central []shoppers.Sample) pair {
	p := pair{Edge: statOf(edge), Central: statOf(central)}
	if p.Edge.P50Ms > 0 {
		p.Ratio = harness.Round(p.Central.P50Ms/p.Edge.P50Ms, 2)
	}
	return p
}

func durations(ss []shoppers.Sample) []time.Duration {
	d := make([]time.Duration, 0, len(ss))
	for _, s := range ss {
		d = append(d, s.Dur)
	}
	slices.Sort(d)
	return d
}

func statOf(ss []shoppers.Sample) stat {
	d := durations(ss)
	return stat{N: len(d), P50Ms: harness.Ms(harness.Percentile(d, 0.5)), P99Ms: harness.Ms(harness.Percentile(d, 0.99))}
}

func p50(ss []shoppers.Sample) float64 { return harness.Ms(harness.Percentile(durations(ss), 0.5)) }

// trips is the most round trips to the centre any sample counted, and the
// median time they took.
func trips(ss []shoppers.Sample) (most int, p50Ms float64) {
	d := make([]time.Duration, 0, len(ss))
	for _, s := range ss {
		most = max(most, s.Trips)
		d = append(d, s.Centre)
	}
	slices.Sort(d)
	return most, harness.Ms(harness.Percentile(d, 0.5))
}

func serverP50(ss []shoppers.Sample) float64 {
	d := make([]time.Duration, 0, len(ss))
	for _, s := range ss {
		d = append(d, s.Server)
	}
	slices.Sort(d)
	return harness.Ms(harness.Percentile(d, 0.5))
}

// wanOneWay is the emulated one-way latency between two PoPs (verge net
// up's default base of 2 ms, at the run's scale).
func wanOneWay(cfg config, a, b shoppers.PoP) time.Duration {
	if a.ID == b.ID {
		return 0 // no link: the centre serves its own city
	}
	return netsim.Model{Base: 2 * time.Millisecond, Scale: cfg.scale}.OneWay(a.At(), b.At())
}

func slug(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z':
			b.WriteRune(r)
		case r == 'ã':
			b.WriteByte('a')
		}
	}
	return b.String()
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	return v[(len(v)-1)/2]
}
