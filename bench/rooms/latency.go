package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/bench/internal/cluster"
	"github.com/verge-edge/verge/bench/internal/harness"
	"github.com/verge-edge/verge/internal/netsim"
)

type placementLatency struct {
	Owner    string  `json:"owner"`
	Samples  int     `json:"samples"`
	P50Ms    float64 `json:"p50_ms"`
	P99Ms    float64 `json:"p99_ms"`
	Excess50 float64 `json:"excess_p50_ms"`
	Excess99 float64 `json:"excess_p99_ms"`
	// CentreRTTMs is the emulated round trip owner <-> centre (0 for the
	// centre), which an edge owner's output gate waits for; Beyond50/99
	// are the excess minus it.
	CentreRTTMs float64 `json:"centre_rtt_ms"`
	Beyond50    float64 `json:"excess_beyond_centre_rtt_p50_ms"`
	Beyond99    float64 `json:"excess_beyond_centre_rtt_p99_ms"`
}

type latencyResult struct {
	Scenario      string             `json:"scenario"`
	PoPs          []string           `json:"pops"`
	ClientsPerPoP int                `json:"clients_per_pop"`
	RatePerS      int                `json:"messages_per_s"`
	DurationS     float64            `json:"duration_s"`
	OneWayMs      map[string]float64 `json:"one_way_ms"`
	Rooms         []placementLatency `json:"rooms"`
	LoadAvg       string             `json:"load_avg"`
	Note          string             `json:"note"`
}

func (r latencyResult) SummaryLine() string {
	var parts []string
	for _, p := range r.Rooms {
		parts = append(parts, fmt.Sprintf("owner %s: p50 %.1f ms p99 %.1f ms, excess over the WAN's one way in and out p50 %.1f ms p99 %.1f ms (goal <= 2 ms: %s); round trip to the centre %.1f ms, excess beyond it p50 %.1f ms p99 %.1f ms",
			p.Owner, p.P50Ms, p.P99Ms, p.Excess50, p.Excess99, harness.MetWord(p.Excess50 <= 2), p.CentreRTTMs, p.Beyond50, p.Beyond99))
	}
	return "latency: clients at " + strings.Join(r.PoPs, ", ") + ": " + strings.Join(parts, "; ") + "; load " + r.LoadAvg
}

func latency(ctx context.Context, cfg config) (harness.Result, error) {
	m, err := verge.LoadManifest(chatDir())
	if err != nil {
		return nil, err
	}
	if _, err := osStat(m.Functions[0].Module); err != nil {
		return nil, fmt.Errorf("examples/chat is not built (make examples): %v", err)
	}
	c, err := cluster.Start(ctx, cluster.Options{PoPs: 3, Model: netsim.Model{Scale: 1, Base: 2 * time.Millisecond}, Manifest: m, HTTP: true})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := cluster.Wait(ctx, 30*time.Second, 50*time.Millisecond, func() error {
		for _, a := range c.IDs {
			for _, b := range c.IDs {
				if a != b && !c.PoPs[a].Mesh.Up(b) {
					return fmt.Errorf("%s is not linked to %s", a, b)
				}
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	res := latencyResult{Scenario: "latency", PoPs: c.IDs, ClientsPerPoP: 2, RatePerS: 20, DurationS: 10, OneWayMs: map[string]float64{},
		Note: "latency: from a client's send to each client's receipt (all clients in this process, each at its PoP over loopback); excess: latency minus the emulated one-way latency sender PoP -> owner plus owner -> receiver PoP. A room owned by an edge PoP also waits, before it broadcasts a stored message, for the centre's copy (one round trip owner <-> centre): the price of no loss when its owner is killed"}
	for _, a := range c.IDs {
		for _, b := range c.IDs {
			if a < b {
				res.OneWayMs[a+"-"+b] = harness.Ms(c.OneWay(a, b))
			}
		}
	}
	for _, owner := range []string{c.Central, c.IDs[1]} {
		pl, err := latencyRun(ctx, c, owner, res.ClientsPerPoP, res.RatePerS, time.Duration(res.DurationS*float64(time.Second)))
		if err != nil {
			return nil, err
		}
		pl.CentreRTTMs = harness.Ms(c.OneWay(owner, c.Central) + c.OneWay(c.Central, owner))
		pl.Beyond50, pl.Beyond99 = harness.Round(pl.Excess50-pl.CentreRTTMs, 2), harness.Round(pl.Excess99-pl.CentreRTTMs, 2)
		bench.Progress("owner %s: %+v", owner, pl)
		res.Rooms = append(res.Rooms, pl)
	}
	res.LoadAvg = harness.LoadAvg()
	return res, nil
}

type sample struct{ lat, excess time.Duration }

func latencyRun(ctx context.Context, c *cluster.Cluster, owner string, perPoP, rate int, d time.Duration) (placementLatency, error) {
	room := fmt.Sprintf("lat-%s-%d", owner, time.Now().UnixNano())
	dial := func(id string) (*websocket.Conn, error) {
		p, _ := c.Net.PoP(id)
		ws, _, err := websocket.DefaultDialer.DialContext(ctx, "ws://"+p.HTTP+"/chat/"+room, nil)
		return ws, err
	}
	// The owner's client first, so that the room starts there.
	first, err := dial(owner)
	if err != nil {
		return placementLatency{}, err
	}
	first.WriteMessage(websocket.TextMessage, []byte("start"))
	first.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := first.ReadMessage(); err != nil {
		return placementLatency{}, err
	}
	type client struct {
		ws  *websocket.Conn
		pop string
	}
	clients := []client{{first, owner}}
	for _, id := range c.IDs {
		for i := 0; i < perPoP; i++ {
			if id == owner && i == 0 {
				continue
			}
			ws, err := dial(id)
			if err != nil {
				return placementLatency{}, err
			}
			clients = append(clients, client{ws, id})
		}
	}
	for _, cl := range clients {
		defer cl.ws.Close()
	}
	time.Sleep(500 * time.Millisecond) // every connect event ran
	var mu sync.Mutex
	var samples []sample
	done := make(chan struct{})
	var wg sync.WaitGroup
	epoch := time.Now()
	for _, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				cl.ws.SetReadDeadline(time.Now().Add(15 * time.Second))
				_, b, err := cl.ws.ReadMessage()
				now := time.Since(epoch)
				if err != nil {
					return
				}
				f := strings.SplitN(string(b), " ", 3)
				if len(f) != 3 || f[0] != "t" {
					continue
				}
				sent, _ := strconv.ParseInt(f[2], 10, 64)
				lat := now - time.Duration(sent)
				expect := c.OneWay(f[1], owner) + c.OneWay(owner, cl.pop)
				mu.Lock()
				samples = append(samples, sample{lat, lat - expect})
				mu.Unlock()
			}
		}()
	}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	end := time.After(d)
	for i := 0; ; i++ {
		select {
		case <-end:
			close(done)
			time.Sleep(time.Second) // the last messages arrive
			for _, cl := range clients {
				cl.ws.Close()
			}
			wg.Wait()
			tick.Stop()
			mu.Lock()
			defer mu.Unlock()
			return summarise(owner, samples), nil
		case <-ctx.Done():
			return placementLatency{}, ctx.Err()
		case <-tick.C:
			cl := clients[i%len(clients)]
			cl.ws.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf("t %s %d", cl.pop, time.Since(epoch))))
		}
	}
}

func summarise(owner string, s []sample) placementLatency {
	lat := make([]time.Duration, len(s))
	ex := make([]time.Duration, len(s))
	for i, x := range s {
		lat[i], ex[i] = x.lat, x.excess
	}
	slices.Sort(lat)
	slices.Sort(ex)
	return placementLatency{Owner: owner, Samples: len(s),
		P50Ms: harness.Ms(harness.Percentile(lat, 0.5)), P99Ms: harness.Ms(harness.Percentile(lat, 0.99)),
		Excess50: harness.Ms(harness.Percentile(ex, 0.5)), Excess99: harness.Ms(harness.Percentile(ex, 0.99))}
}

var _ = filepath.Join
