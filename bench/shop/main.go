// Command shop measures the case for the edge with the shopping demo
// (examples/shop): the same app, the same shoppers, served from every PoP
// (placement "edge", the default) and from the central PoP only (placement
// "central": every PoP forwards every request there across the WAN, as a
// single-region deployment would serve the same clients).
//
//	go run ./bench/shop [-quick] [-scenario all|compare|chaos] [-chaos] [-pops 10] [-journeys 6]
//	    [-warmup 1] [-prefill 60] [-think 500ms] [-last-mile 2ms] [-scale 1] [-keep] [-v]
//
// Scenarios:
//
//   - compare (the default): two `verge net` networks side by side, started
//     through the verge binary (built first), with the PoPs at their real
//     coordinates and real-world WAN latency: one serves examples/shop as
//     it is, the other a copy whose verge.toml adds placement = "central".
//     Shoppers in 13 cities on 6 continents run the demo's journey
//     (browse, register, log in, add to the cart several times, view it,
//     check out, buy a product near the end of its stock, list the
//     orders), one journey on each network in turn, so both see the same
//     machine at the same time. Each city reaches its nearest PoP over an
//     emulated last mile: its own netsim.Layer at the city's coordinates,
//     as the PoPs' links are emulated. Per action and per city: median and
//     p99 client-observed latency on each network and their ratio; the
//     summary's edge_vs_central_median is the ratio of the central to the
//     edge median over all actions. Afterwards, both networks are checked:
//     every acknowledged order there, no stock oversold or lost, no name
//     owned twice.
//   - chaos (-chaos adds it to compare): one edge network; while the
//     shoppers shop, an edge PoP is killed -9, another is cut off from all
//     the others for 10 s, the centre is killed -9 and restarted. Shoppers
//     fail over to their next-nearest PoP, keeping session and cart. What
//     they saw (statuses, latency) per phase, then the same checks after
//     the heal.
//
// -quick runs a smaller compare in under a minute on a quiet machine: six
// PoPs, one measured journey per city and network.
//
// The JSON objects go to stdout, one per scenario; one summary line each
// goes to stderr at the end.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/verge-edge/verge/bench/internal/harness"
	"github.com/verge-edge/verge/examples/shop/catalogue"
	"github.com/verge-edge/verge/examples/shop/shoppers"
	"github.com/verge-edge/verge/internal/pop"
)

type config struct {
	pops     int
	journeys int // measured journeys per city and network
	warmup   int // journeys per city and network before measuring
	think    time.Duration
	lastMile time.Duration
	scale    float64
	stock    int64 // units of each regular product
	scarce   int64 // units of each clearance product
	prefill  int   // most popular products each edge PoP sells once before measuring
	keep     bool
	verbose  bool
	quick    bool
}

func defaultConfig() config {
	return config{pops: 10, journeys: 6, warmup: 1, think: 500 * time.Millisecond, lastMile: 2 * time.Millisecond,
		scale: 1, stock: 100000, scarce: 35, prefill: 60}
}

var bench = &harness.Command{Name: "bench/shop", Scenarios: []string{"compare", "chaos"}}

var began = time.Now()

// progress reports on stderr, with the seconds since the command started.
func progress(format string, args ...any) {
	bench.Progress("%5.1fs "+format, append([]any{time.Since(began).Seconds()}, args...)...)
}

func main() {
	cfg := defaultConfig()
	scenario := flag.String("scenario", "compare", "compare, chaos or all")
	chaos := flag.Bool("chaos", false, "also run the chaos scenario")
	flag.BoolVar(&cfg.quick, "quick", false, "a smaller compare that runs in about a minute: 6 PoPs, one warm-up and one measured journey per city and network, no thinking")
	flag.IntVar(&cfg.pops, "pops", cfg.pops, "PoPs per network (6..10, the first of pop.Sites; ord is central)")
	flag.IntVar(&cfg.journeys, "journeys", cfg.journeys, "compare: measured journeys per city and network")
	flag.IntVar(&cfg.warmup, "warmup", cfg.warmup, "compare: unmeasured journeys per city and network first")
	flag.DurationVar(&cfg.think, "think", cfg.think, "pause between a shopper's actions (±50%)")
	flag.DurationVar(&cfg.lastMile, "last-mile", cfg.lastMile, "fixed one-way cost of a city's link to a PoP, before distance")
	flag.Float64Var(&cfg.scale, "scale", cfg.scale, "latency scale of the WAN and of the last mile (1: real-world)")
	flag.IntVar(&cfg.prefill, "prefill", cfg.prefill, "most popular products each edge PoP sells once before the shoppers come (escrows in place)")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the networks' directories (logs, data) instead of removing them")
	flag.BoolVar(&cfg.verbose, "v", false, "report every journey that stopped early")
	bench.Parse()
	if cfg.quick {
		cfg.pops, cfg.journeys, cfg.warmup, cfg.think, cfg.prefill = 6, 1, 1, 0, 10
	}
	if cfg.pops < 6 || cfg.pops > len(pop.Sites) {
		bench.Fatalf("-pops %d: want 6..%d", cfg.pops, len(pop.Sites))
	}
	if cfg.prefill < 0 || cfg.prefill > len(catalogue.Products(0)) {
		bench.Fatalf("-prefill %d: want 0..%d", cfg.prefill, len(catalogue.Products(0)))
	}
	if cfg.journeys < 1 || cfg.warmup < 0 || cfg.think < 0 || cfg.lastMile < 0 || cfg.scale < 0 {
		bench.Fatalf("-journeys must be positive; -warmup, -think, -last-mile and -scale not negative")
	}
	scenarios := bench.Select(*scenario)
	if *scenario == "compare" && *chaos {
		scenarios = bench.Scenarios
	}
	bench.Run(scenarios, func(ctx context.Context, s string) (harness.Result, error) {
		dir, err := os.MkdirTemp("", "verge-bench-shop-")
		if err != nil {
			return nil, err
		}
		if cfg.keep {
			progress("networks in %s (kept)", dir)
		} else {
			defer os.RemoveAll(dir)
		}
		// The verge binary and the shop's module build side by side.
		var b *bin
		var berr, serr error
		var wg sync.WaitGroup
		wg.Go(func() { b, berr = buildVerge(ctx, dir) })
		wg.Go(func() { serr = buildShop(ctx) })
		wg.Wait()
		if err := errors.Join(berr, serr); err != nil {
			return nil, err
		}
		if s == "chaos" {
			return runChaos(ctx, cfg, b, dir)
		}
		return runCompare(ctx, cfg, b, dir)
	})
	if broken {
		bench.Fatalf("the chaos run broke an invariant (see its summary)")
	}
}

// env is what every result records about the machine and the setup.
type env struct {
	Go           string       `json:"go"`
	CPUs         int          `json:"cpus"`
	LoadAvgStart float64      `json:"load_avg_start"`
	LoadAvgEnd   float64      `json:"load_avg_end"`
	GoMaxProcs   int          `json:"pop_gomaxprocs"`
	SpotTimeout  string       `json:"spot_timeout"`
	PoPs         []popInfo    `json:"pops"`
	LatencyScale float64      `json:"latency_scale"`
	WANBaseMs    float64      `json:"wan_base_ms"`
	LastMileMs   float64      `json:"last_mile_base_ms"`
	ClientLeg    string       `json:"client_leg"`
	Cities       []cityInfo   `json:"cities"`
	Products     int          `json:"products"`
	ThinkMs      float64      `json:"think_ms"`
	StartupS     float64      `json:"startup_s"`
	Catalogue    string       `json:"catalogue"`
	Journeys     journeysInfo `json:"journeys"`
}

type popInfo struct {
	shoppers.PoP
	RTTToCentreMs float64 `json:"rtt_to_centre_ms"`
}

type cityInfo struct {
	shoppers.City
	PoP        string  `json:"pop"` // nearest
	Region     string  `json:"region"`
	RTTToPoPMs float64 `json:"rtt_to_pop_ms"`
	// Outside: the nearest PoP is outside the centre's region.
	Outside bool `json:"outside_centre_region"`
}

type journeysInfo struct {
	Warmup   int `json:"warmup_per_city_and_network"`
	Measured int `json:"measured_per_city_and_network"`
}

const clientLeg = "each city dials the PoPs through its own netsim.Layer at the city's coordinates " +
	"(the emulation of the PoPs' own links): one-way latency = scale × (last_mile_base + great-circle distance / 200 km/ms × 1.5), " +
	"in both directions, plus a round trip per new connection; a city keeps its connections across journeys, as a browser does"

func newEnv(cfg config, n *shoppers.Net, clients []*shoppers.Client) env {
	e := env{Go: runtime.Version(), CPUs: runtime.NumCPU(), GoMaxProcs: gomaxprocs, SpotTimeout: spotTimeout, LatencyScale: cfg.scale, WANBaseMs: 2 * cfg.scale,
		LastMileMs: harness.Ms(cfg.lastMile), ClientLeg: clientLeg, ThinkMs: harness.Ms(cfg.think),
		Catalogue: fmt.Sprintf("%d products in %d categories from %d brands (%d units each) and 10 clearance products (%d units each)",
			len(catalogue.Products(0)), len(catalogue.Categories), len(catalogue.Brands), cfg.stock, cfg.scarce),
		Products: len(catalogue.Products(0)) + 10}
	c := n.Central()
	for _, p := range n.PoPs {
		e.PoPs = append(e.PoPs, popInfo{p, harness.Ms(2 * wanOneWay(cfg, p, c))})
	}
	for _, cl := range clients {
		h := cl.Home()
		e.Cities = append(e.Cities, cityInfo{City: cl.City, PoP: h.ID, Region: h.Region, RTTToPoPMs: harness.Ms(cl.RTT(h)), Outside: h.Region != c.Region})
	}
	return e
}

func absApp() (string, error) {
	app, err := filepath.Abs(filepath.Join("examples", "shop"))
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(app, "verge.toml")); err != nil {
		return "", fmt.Errorf("%w: run bench/shop from the repository root", err)
	}
	return app, nil
}
