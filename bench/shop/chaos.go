package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/verge-edge/verge/examples/shop/catalogue"
	"github.com/verge-edge/verge/examples/shop/shoppers"
)

type chaosResult struct {
	Scenario string `json:"scenario"`
	Env      env    `json:"env"`
	*shoppers.ChaosResult
	Summary struct {
		Line string `json:"line"`
		// InvariantsOK: no order lost, nothing oversold, no name owned
		// twice; Conserved: and no unit stranded, sold + remaining =
		// initial + restocked exactly (see shoppers.Invariants).
		InvariantsOK bool `json:"invariants_ok"`
		Conserved    bool `json:"units_conserved"`
		// SessionKept: the shopper who logged in at the victim just
		// before its kill was still logged in at the next PoP.
		SessionKept bool `json:"session_kept"`
	} `json:"summary"`
}

func (r *chaosResult) SummaryLine() string { return r.Summary.Line }

// broken is set when a chaos run broke an invariant: main exits 1 after
// writing the results.
var broken bool

// runChaos: one edge network; shoppers in every city while an edge PoP is
// killed, another partitioned, and the centre killed and restarted.
func runChaos(ctx context.Context, cfg config, b *bin, dir string) (*chaosResult, error) {
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
	progress("starting the edge network (%d PoPs)", cfg.pops)
	// Repair every second, so that the checks after the heal wait less.
	n, err := b.netUp(ctx, "edge", filepath.Join(dir, "chaos"), app, cache, cfg.pops,
		"--latency-scale", fmt.Sprint(cfg.scale), "--anti-entropy", "1s", "--spot-timeout", spotTimeout)
	if err != nil {
		return nil, err
	}
	defer b.netDown(n)
	l := shoppers.NewLedger()
	if err := load(ctx, n, append(catalogue.Products(cfg.stock), scarce(cfg.scarce*4)...), l); err != nil {
		return nil, err
	}
	if err := prefill(ctx, n, newShop().Products[:cfg.prefill], l); err != nil {
		return nil, err
	}
	var clients []*shoppers.Client
	for _, c := range shoppers.Cities {
		cl, err := shoppers.NewClient(c, n, shoppers.Leg{Base: cfg.lastMile, Scale: cfg.scale})
		if err != nil {
			return nil, err
		}
		defer cl.Close()
		clients = append(clients, cl)
	}
	plan := shoppers.ChaosPlan{Victim: "fra", Partitioned: "sin", Warmup: 5 * time.Second, Gap: 5 * time.Second,
		PartitionFor: 10 * time.Second, CentreDown: 3 * time.Second, After: 10 * time.Second}
	if cfg.quick {
		plan.Warmup, plan.Gap, plan.After = 3*time.Second, 3*time.Second, 5*time.Second
	}
	res := &chaosResult{Scenario: "chaos", Env: newEnv(cfg, n, clients)}
	res.Env.StartupS = time.Since(started).Seconds()
	progress("shoppers in %d cities; kill -9 %s, partition %s for %v, kill -9 and restart %s", len(clients), plan.Victim, plan.Partitioned, plan.PartitionFor, n.Central().ID)
	cr, err := shoppers.RunChaos(ctx, n, clients, newShop(), faults{b, n.Dir}, plan,
		shoppers.JourneyOptions{Think: cfg.think, NearEnd: true}, 30*time.Second, l, progress)
	res.ChaosResult = cr
	res.Env.LoadAvgStart, res.Env.LoadAvgEnd = loadStart, loadAvg()
	if err != nil {
		return nil, err
	}
	inv := cr.Invariants
	res.Summary.InvariantsOK, res.Summary.Conserved = inv.OK, inv.Conserved
	errs, unauth := 0, 0
	for _, ph := range cr.Phases {
		for st, c := range ph.Statuses {
			if st != "200" && st != "201" && st != "409" {
				errs += c
			}
		}
	}
	// A session lost shows as a journey stopped at a 401 of an action
	// that needs one; a login's 401 is an account not replicated yet.
	for stop, c := range cr.Stopped {
		if strings.HasSuffix(stop, " 401") && stop != "login 401" {
			unauth += c
		}
	}
	probe := "no session probe"
	if sp := cr.Session; sp != nil {
		probe = fmt.Sprintf("a session opened at %s %.0f ms before its kill answered %d at %s", sp.LoginPoP, sp.LoginToKillMs, sp.Me.Status, sp.Me.PoP)
		res.Summary.SessionKept = sp.Me.Status == 200 && sp.Cart.Status == 200
	}
	res.Summary.Line = fmt.Sprintf("bench/shop chaos: %d journeys, %d raced names; kill -9 %s, partition %s %v, kill -9 + restart %s; "+
		"%d answers were errors, %d sessions lost (401; by phase in the JSON); %s; after the heal: %d orders (%d acknowledged, none lost: %v), units %d added = %d sold + %d held + %d at the centre + %d escrowed + %d stranded, "+
		"oversold %d, names owned twice %d: invariants %s, units %s",
		cr.Journeys, cr.Races, plan.Victim, plan.Partitioned, plan.PartitionFor, n.Central().ID, errs, unauth, probe,
		inv.Orders, inv.Acked, len(inv.Lost) == 0, inv.Units.Added, inv.Units.Sold, inv.Units.Held, inv.Units.AtCentre, inv.Units.Escrowed, inv.Units.Stranded,
		len(inv.Oversold), len(inv.OwnedTwice), map[bool]string{true: "kept", false: "BROKEN"}[inv.OK],
		map[bool]string{true: "conserved", false: fmt.Sprintf("NOT conserved (%d stranded)", inv.Units.Stranded)}[inv.Conserved])
	if !inv.OK || !inv.Conserved || unauth > 0 || !res.Summary.SessionKept {
		broken = true // the JSON is written, and the command exits 1
	}
	return res, nil
}
