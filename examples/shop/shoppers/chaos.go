package shoppers

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"sort"
	"sync"
	"time"
)

// Faults breaks and mends a network: `verge net kill`, `restart`,
// `partition ID all` and `heal`.
type Faults interface {
	Kill(id string) error
	Restart(id string) error
	Partition(id string) error
	Heal() error
}

// ChaosPlan is what goes wrong while the shoppers shop, in this order:
// Victim (an edge PoP) is killed -9; Partitioned (another) is cut off from
// every other PoP for PartitionFor; the centre is killed -9 and restarted
// CentreDown later. Victim comes back once the shoppers have stopped.
type ChaosPlan struct {
	Victim, Partitioned string
	Warmup              time.Duration // shopping before the first fault
	Gap                 time.Duration // between one fault and the next
	PartitionFor        time.Duration
	CentreDown          time.Duration
	After               time.Duration // shopping after the centre is back
}

// ChaosResult is what the shoppers saw and what the network kept.
type ChaosResult struct {
	Plan     ChaosPlan    `json:"-"`
	Timeline []Event      `json:"timeline"`
	Phases   []PhaseStats `json:"phases"`
	Journeys int          `json:"journeys"`
	// Stopped counts journeys that stopped at an action that did not end
	// as expected, by the action and its final status.
	Stopped map[string]int `json:"stopped"`
	Races   int            `json:"raced_names"`
	// Session is what a shopper saw who logged in at the victim just
	// before it was killed -9 and went on shopping elsewhere.
	Session    *SessionProbe `json:"session_probe,omitempty"`
	Invariants *Invariants   `json:"invariants"`
}

// SessionProbe: a shopper at home at the victim logs in there moments
// before it is killed, then asks who it is and for its cart; the answers
// come from the PoPs it fails over to.
type SessionProbe struct {
	City     string `json:"city"`
	LoginPoP string `json:"login_pop"`
	// LoginToKillMs is the time from the login's answer to the kill.
	LoginToKillMs float64 `json:"login_to_kill_ms"`
	Me            Sample  `json:"me"`
	Cart          Sample  `json:"cart"`
}

// Event is one fault or repair, at seconds since the shoppers started.
type Event struct {
	AtS  float64 `json:"at_s"`
	What string  `json:"what"`
}

// PhaseStats is what the shoppers saw between two events.
type PhaseStats struct {
	Phase   string  `json:"phase"`
	Actions int     `json:"actions"`
	P50Ms   float64 `json:"p50_ms"`
	P99Ms   float64 `json:"p99_ms"`
	// Statuses counts final answers by status ("0": none came).
	Statuses map[string]int `json:"statuses"`
	// Retried counts actions that took more than one attempt;
	// FailedOver those answered by another PoP than the first tried.
	Retried    int `json:"retried"`
	FailedOver int `json:"failed_over"`
}

// RunChaos runs shoppers in every client's city (one journey after another
// each) while plan's faults happen, then heals the network, restarts the
// victim and checks the ledger against the network. Patience is how long
// a shopper keeps retrying one action.
func RunChaos(ctx context.Context, n *Net, clients []*Client, shop *Shop, faults Faults, plan ChaosPlan, jo JourneyOptions,
	patience time.Duration, l *Ledger, logf func(string, ...any)) (*ChaosResult, error) {
	res := &ChaosResult{Plan: plan, Stopped: map[string]int{}}
	start := time.Now()
	var mu sync.Mutex
	var samples []Sample
	event := func(what string) {
		mu.Lock()
		res.Timeline = append(res.Timeline, Event{AtS: time.Since(start).Seconds(), What: what})
		mu.Unlock()
		logf("chaos %5.1fs: %s", time.Since(start).Seconds(), what)
	}
	event("shoppers start")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() {
			rng := mrand.New(mrand.NewPCG(uint64(i), uint64(start.UnixNano())))
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				s := c.NewShopper()
				s.Patience = patience
				o := jo
				o.User, o.Password = fmt.Sprintf("chaos-%d-%d-%d", i, k, start.UnixMilli()%100000), "pw-"+newID()
				j := s.Run(ctx, shop, o, rng)
				l.AddJourney(j)
				mu.Lock()
				res.Journeys++
				samples = append(samples, j.Samples...)
				if j.Err != nil {
					last := j.Samples[len(j.Samples)-1]
					res.Stopped[fmt.Sprintf("%s %d", last.Action, last.Status)]++
				}
				mu.Unlock()
			}
		})
	}
	// Raced registrations: now and then two cities register one name at
	// once, with different passwords.
	wg.Go(func() {
		rng := mrand.New(mrand.NewPCG(7, uint64(start.UnixNano())))
		for k := 0; ; k++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
			}
			name := fmt.Sprintf("race-%d-%d", k, start.UnixMilli()%100000)
			var rw sync.WaitGroup
			for _, c := range []*Client{clients[rng.IntN(len(clients))], clients[rng.IntN(len(clients))]} {
				rw.Go(func() {
					s := c.NewShopper()
					s.Patience = patience
					pw := "pw-" + newID()
					smp, _ := s.Do(ctx, "register", "POST", "/api/register", map[string]string{"username": name, "password": pw})
					l.AddRace(name, pw, smp.Status)
				})
			}
			rw.Wait()
			mu.Lock()
			res.Races++
			mu.Unlock()
		}
	})
	pause := func(d time.Duration) {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
	var firstErr error
	must := func(what string, err error) {
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("%s: %w", what, err)
		}
	}
	centre := n.Central().ID
	// The session probe's shopper registers during the warm-up.
	var probe *Shopper
	var probeClient *Client
	creds := map[string]string{"username": fmt.Sprintf("probe-%d", start.UnixMilli()%1000000), "password": "pw-" + newID()}
	for _, c := range clients {
		if c.Home().ID == plan.Victim {
			probeClient, probe = c, c.NewShopper()
			probe.Patience = patience
			if smp, _ := probe.Do(ctx, "register", "POST", "/api/register", creds); smp.Status != 201 {
				probe = nil
			}
			break
		}
	}
	pause(plan.Warmup)
	var loggedIn time.Time
	if probe != nil {
		if smp, _ := probe.Do(ctx, "login", "POST", "/api/login", creds); smp.Status == 200 && smp.PoP == plan.Victim {
			loggedIn = time.Now()
		} else {
			logf("session probe: login answered %d by %q; no probe", smp.Status, smp.PoP)
			probe = nil
		}
	}
	must("kill "+plan.Victim, faults.Kill(plan.Victim))
	event("kill -9 " + plan.Victim)
	if probe != nil {
		sp := &SessionProbe{City: probeClient.City.Name, LoginPoP: plan.Victim, LoginToKillMs: Ms(time.Since(loggedIn))}
		sp.Me, _ = probe.Do(ctx, "me", "GET", "/api/me", nil)
		sp.Cart, _ = probe.Do(ctx, "cart", "GET", "/api/cart", nil)
		res.Session = sp
		logf("session probe: logged in at %s %.0f ms before its kill; then /api/me %d from %s, /api/cart %d from %s",
			sp.LoginPoP, sp.LoginToKillMs, sp.Me.Status, sp.Me.PoP, sp.Cart.Status, sp.Cart.PoP)
	}
	pause(plan.Gap)
	must("partition "+plan.Partitioned, faults.Partition(plan.Partitioned))
	event("partition " + plan.Partitioned + " from every other PoP")
	pause(plan.PartitionFor)
	must("heal", faults.Heal())
	event("heal " + plan.Partitioned)
	pause(plan.Gap)
	must("kill "+centre, faults.Kill(centre))
	event("kill -9 " + centre + " (the centre)")
	pause(plan.CentreDown)
	must("restart "+centre, faults.Restart(centre))
	event("restart " + centre + " (ready)")
	pause(plan.After)
	close(stop)
	wg.Wait()
	event("shoppers stopped")
	must("heal", faults.Heal())
	must("restart "+plan.Victim, faults.Restart(plan.Victim))
	event("restart " + plan.Victim + " (ready)")
	res.Phases = phases(samples, res.Timeline, start)
	if firstErr != nil {
		return res, firstErr
	}
	inv, err := Check(ctx, n, l, 90*time.Second)
	event("checked")
	res.Invariants = inv
	return res, err
}

// phases groups samples by the last event before each one started.
func phases(samples []Sample, timeline []Event, start time.Time) []PhaseStats {
	by := map[int][]Sample{}
	for _, s := range samples {
		at := s.Start.Sub(start).Seconds()
		i := sort.Search(len(timeline), func(i int) bool { return timeline[i].AtS > at }) - 1
		by[max(i, 0)] = append(by[max(i, 0)], s)
	}
	var out []PhaseStats
	for i, ev := range timeline {
		ss := by[i]
		if len(ss) == 0 {
			continue
		}
		ps := PhaseStats{Phase: fmt.Sprintf("after %q (%.0fs)", ev.What, ev.AtS), Actions: len(ss), Statuses: map[string]int{}}
		durs := make([]time.Duration, 0, len(ss))
		for _, s := range ss {
			durs = append(durs, s.Dur)
			ps.Statuses[fmt.Sprint(s.Status)]++
			if len(s.Attempts) > 1 {
				ps.Retried++
			}
			if s.PoP != "" && s.PoP != s.First {
				ps.FailedOver++
			}
		}
		slices.Sort(durs)
		ps.P50Ms, ps.P99Ms = Ms(Percentile(durs, 0.5)), Ms(Percentile(durs, 0.99))
		out = append(out, ps)
	}
	return out
}

// Percentile is the nearest-rank q-quantile of sorted v.
func Percentile(v []time.Duration, q float64) time.Duration {
	if len(v) == 0 {
		return 0
	}
	i := int(float64(len(v))*q+0.999999) - 1
	return v[max(0, min(i, len(v)-1))]
}

// Ms is d in milliseconds, to the tenth of a microsecond.
func Ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
