package pop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/verge-edge/verge/internal/cache"
	"github.com/verge-edge/verge/internal/jsonapi"
)

// Purge across PoPs (docs/cache.md, "Purge").
//
// A purge reaches the centre (from the PoP whose admin API received it, one
// mesh request), which numbers it in the app's purge log, purges its own
// cache and sends it to every other PoP in parallel; it answers once every
// reachable PoP has purged, naming those it could not reach.
//
// An edge PoP knows, per app, the last purge it applied in order (and the
// centre's epoch: a restarted centre has a new log). It reads its cache
// only while it is synced: from its first sync after start until its link
// to the centre goes down, and again once it has synced after the link is
// back, applying the purges it missed (or purging the app whole when the
// centre's log no longer reaches back that far, or everything when the
// centre restarted). It also syncs every purgeSyncEvery, which repairs a
// purge lost on a link that never went down as far as NATS could tell.

const (
	purgeLogMax     = 256             // purges kept per app at the centre
	purgeSyncEvery  = 2 * time.Second // an edge PoP's periodic sync
	purgeFanTimeout = 5 * time.Second // how long the centre waits for a PoP's answer
)

// purgeEntry is one numbered purge of an app.
type purgeEntry struct {
	Seq   uint64      `json:"seq"`
	Purge cache.Purge `json:"purge"`
}

// purgeMsg is a purge on the mesh: to the centre (no Seq), or from it.
type purgeMsg struct {
	App   string      `json:"app"`
	Epoch int64       `json:"epoch,omitempty"`
	Seq   uint64      `json:"seq,omitempty"`
	Purge cache.Purge `json:"purge"`
}

// PurgeResult is the answer of a purge: how many entries each PoP purged
// and when (Unix nanoseconds, each PoP's clock), and the PoPs not reached.
type PurgeResult struct {
	App         string           `json:"app"`
	Seq         uint64           `json:"seq"`
	Centre      string           `json:"centre"`
	Purged      map[string]int   `json:"purged"`
	At          map[string]int64 `json:"at"`
	Unreachable []string         `json:"unreachable"`
}

type purgeApplied struct {
	Purged int   `json:"purged"`
	At     int64 `json:"at"`
}

type syncReq struct {
	Epoch int64             `json:"epoch"`
	Seqs  map[string]uint64 `json:"seqs"`
}

type syncResp struct {
	Epoch    int64                   `json:"epoch"`
	Seqs     map[string]uint64       `json:"seqs"`
	Purges   map[string][]purgeEntry `json:"purges,omitempty"`
	Reset    []string                `json:"reset,omitempty"`     // apps to purge whole: the log does not reach back
	ResetAll bool                    `json:"reset_all,omitempty"` // a new centre: purge everything
}

// purger is a PoP's side of purging.
type purger struct {
	p        *PoP
	central  string
	isCentre bool

	synced atomic.Bool
	gen    atomic.Uint64 // bumped when the link to the centre goes down

	mu         sync.Mutex
	epoch      int64                   // centre: this life's epoch
	logs       map[string][]purgeEntry // centre: per app, the last purgeLogMax
	seqs       map[string]uint64       // centre: last seq; edge: last applied in order
	knownEpoch int64                   // edge: 0 before the first sync

	started atomic.Bool
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

func newPurger(p *PoP) *purger {
	central, _ := p.opts.Network.Central()
	g := &purger{p: p, central: central.ID, isCentre: p.self.Central, logs: map[string][]purgeEntry{}, seqs: map[string]uint64{},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	if g.isCentre {
		g.epoch = time.Now().UnixNano()
	}
	return g
}

// unsynced reports whether this PoP must not read its cache.
func (g *purger) unsynced() bool {
	return g != nil && !g.isCentre && !g.synced.Load()
}

// peerEvent follows the link to the centre.
func (g *purger) peerEvent(id string, up bool) {
	if g == nil || g.isCentre || id != g.central {
		return
	}
	if !up {
		g.gen.Add(1)
		g.synced.Store(false)
		return
	}
	g.poke()
}

func (g *purger) poke() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// start registers the mesh handlers and, at an edge, the sync loop.
func (g *purger) start() error {
	m := g.p.Mesh
	if err := m.HandleRequestsCtx("cache.apply", g.handleApply); err != nil {
		return err
	}
	if g.isCentre {
		if err := m.HandleRequestsCtx("cache.purge", g.handlePurge); err != nil {
			return err
		}
		return m.HandleRequests("cache.sync", g.handleSync)
	}
	g.started.Store(true)
	go g.loop()
	return nil
}

func (g *purger) close() {
	if g == nil || !g.started.Load() {
		return
	}
	select {
	case <-g.stop:
	default:
		close(g.stop)
	}
	select {
	case <-g.done:
	case <-time.After(5 * time.Second):
	}
}

// loop syncs with the centre when the link comes up and every
// purgeSyncEvery.
func (g *purger) loop() {
	defer close(g.done)
	t := time.NewTicker(purgeSyncEvery)
	defer t.Stop()
	g.poke()
	for {
		select {
		case <-g.stop:
			return
		case <-g.kick:
		case <-t.C:
		}
		if !g.p.Mesh.Up(g.central) {
			g.synced.Store(false)
			continue
		}
		if err := g.sync(); err != nil {
			g.synced.Store(false)
			g.p.log.Debug("purge sync", "err", err)
			select { // retry soon, not at the next tick
			case <-g.stop:
				return
			case <-time.After(200 * time.Millisecond):
				g.poke()
			}
		}
	}
}

// sync asks the centre for the purges this PoP missed and applies them.
func (g *purger) sync() error {
	gen := g.gen.Load()
	g.mu.Lock()
	req := syncReq{Epoch: g.knownEpoch, Seqs: make(map[string]uint64, len(g.seqs))}
	for a, s := range g.seqs {
		req.Seqs[a] = s
	}
	g.mu.Unlock()
	b, _ := json.Marshal(req)
	ctx, cancel := context.WithTimeout(context.Background(), purgeFanTimeout)
	out, err := g.p.Mesh.Request(ctx, g.central, "cache.sync", b)
	cancel()
	if err != nil {
		return err
	}
	var r syncResp
	if err := json.Unmarshal(out, &r); err != nil {
		return err
	}
	c := g.p.Cache
	g.mu.Lock()
	first := g.knownEpoch == 0
	switch {
	case first:
		// Just started: memory is empty and the disk tier was opened stale.
	case r.ResetAll || r.Epoch != g.knownEpoch:
		if c != nil {
			for _, app := range g.appsLocked(r) {
				c.Purge(app, cache.Purge{All: true})
			}
		}
	default:
		for _, app := range r.Reset {
			if c != nil {
				c.Purge(app, cache.Purge{All: true})
			}
		}
		for app, es := range r.Purges {
			for _, e := range es {
				if c != nil {
					c.Purge(app, e.Purge)
				}
			}
		}
	}
	g.knownEpoch = r.Epoch
	for app, s := range r.Seqs {
		g.seqs[app] = max(g.seqs[app], s)
	}
	g.mu.Unlock()
	if g.gen.Load() == gen {
		if !g.synced.Swap(true) {
			g.p.log.Info("cache purges synced with the centre", "centre", g.central)
		}
	}
	return nil
}

// appsLocked is every app this PoP may hold entries of.
func (g *purger) appsLocked(r syncResp) []string {
	set := map[string]bool{}
	for a := range g.seqs {
		set[a] = true
	}
	for a := range r.Seqs {
		set[a] = true
	}
	for a := range g.p.apps.serving() {
		set[a] = true
	}
	var out []string
	for a := range set {
		out = append(out, a)
	}
	return out
}

// handleSync (centre) answers an edge's sync.
func (g *purger) handleSync(_ string, data []byte) ([]byte, error) {
	var req syncReq
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, err
	}
	g.mu.Lock()
	r := syncResp{Epoch: g.epoch, Seqs: make(map[string]uint64, len(g.seqs))}
	for a, s := range g.seqs {
		r.Seqs[a] = s
	}
	switch {
	case req.Epoch == 0:
	case req.Epoch != g.epoch:
		r.ResetAll = true
	default:
		for app, last := range g.seqs {
			known := req.Seqs[app]
			if known >= last {
				continue
			}
			log := g.logs[app]
			if len(log) == 0 || log[0].Seq > known+1 {
				r.Reset = append(r.Reset, app)
				continue
			}
			if r.Purges == nil {
				r.Purges = map[string][]purgeEntry{}
			}
			for _, e := range log {
				if e.Seq > known {
					r.Purges[app] = append(r.Purges[app], e)
				}
			}
		}
	}
	g.mu.Unlock()
	return json.Marshal(r)
}

// handleApply (every PoP but the centre) applies a purge the centre sent.
func (g *purger) handleApply(_ context.Context, _ string, data []byte) ([]byte, error) {
	var m purgeMsg
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	n := 0
	if c := g.p.Cache; c != nil {
		n = c.Purge(m.App, m.Purge)
	}
	at := time.Now().UnixNano()
	g.mu.Lock()
	inOrder := g.knownEpoch == m.Epoch && g.seqs[m.App]+1 == m.Seq
	if inOrder {
		g.seqs[m.App] = m.Seq
	}
	g.mu.Unlock()
	if !inOrder && !g.isCentre {
		g.poke() // a gap: fetch what came before
	}
	return json.Marshal(purgeApplied{Purged: n, At: at})
}

// handlePurge (centre) runs a purge another PoP received.
func (g *purger) handlePurge(ctx context.Context, _ string, data []byte) ([]byte, error) {
	var m purgeMsg
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	return json.Marshal(g.everywhere(ctx, m.App, m.Purge))
}

// everywhere (centre) numbers a purge, applies it here and at every other
// PoP in parallel, and says who purged.
func (g *purger) everywhere(ctx context.Context, app string, pu cache.Purge) PurgeResult {
	g.mu.Lock()
	g.seqs[app]++
	seq := g.seqs[app]
	log := append(g.logs[app], purgeEntry{Seq: seq, Purge: pu})
	if len(log) > purgeLogMax {
		log = slices.Clone(log[len(log)-purgeLogMax:])
	}
	g.logs[app] = log
	epoch := g.epoch
	g.mu.Unlock()

	msg, _ := json.Marshal(purgeMsg{App: app, Epoch: epoch, Seq: seq, Purge: pu})
	res := PurgeResult{App: app, Seq: seq, Centre: g.p.opts.Self, Purged: map[string]int{}, At: map[string]int64{}, Unreachable: []string{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, peer := range g.p.Mesh.Peers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var a purgeApplied
			err := errors.New("the link is down")
			if g.p.Mesh.Up(peer) {
				rctx, cancel := context.WithTimeout(ctx, purgeFanTimeout)
				var out []byte
				if out, err = g.p.Mesh.Request(rctx, peer, "cache.apply", msg); err == nil {
					err = json.Unmarshal(out, &a)
				}
				cancel()
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				g.p.log.Warn("purge not delivered; the PoP syncs when its link is back", "peer", peer, "app", app, "err", err)
				res.Unreachable = append(res.Unreachable, peer)
				return
			}
			res.Purged[peer], res.At[peer] = a.Purged, a.At
		}()
	}
	n := 0
	if c := g.p.Cache; c != nil {
		n = c.Purge(app, pu)
	}
	res.Purged[g.p.opts.Self], res.At[g.p.opts.Self] = n, time.Now().UnixNano()
	wg.Wait()
	slices.Sort(res.Unreachable)
	return res
}

// cacheAPI serves POST /v1/apps/{app}/cache/purge on the admin API.
func (p *PoP) cacheAPI(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/apps/{app}/cache/purge", p.purgeHandler)
	mux.HandleFunc("/v1/apps/{app}/cache/purge", jsonapi.MethodNotAllowed("POST"))
}

func (p *PoP) purgeHandler(w http.ResponseWriter, r *http.Request) {
	app := r.PathValue("app")
	var pu cache.Purge
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pu); err != nil {
		jsonapi.Error(w, http.StatusBadRequest, "invalid", `expected a JSON body {"keys": [...]}, {"urls": [...]} or {"all": true}, with an optional "soft": true: `+err.Error())
		return
	}
	if !pu.All && len(pu.Keys) == 0 && len(pu.URLs) == 0 {
		jsonapi.Error(w, http.StatusBadRequest, "invalid", `nothing to purge: give "keys", "urls" or "all": true`)
		return
	}
	g := p.purges
	if g.isCentre {
		jsonapi.WriteValue(w, http.StatusOK, g.everywhere(r.Context(), app, pu))
		return
	}
	b, _ := json.Marshal(purgeMsg{App: app, Purge: pu})
	ctx, cancel := context.WithTimeout(r.Context(), 2*purgeFanTimeout)
	out, err := p.Mesh.Request(ctx, g.central, "cache.purge", b)
	cancel()
	var res PurgeResult
	if err == nil {
		err = json.Unmarshal(out, &res)
	}
	if err != nil {
		// Purge here at least; the centre will not know of it.
		n := 0
		if p.Cache != nil {
			n = p.Cache.Purge(app, pu)
		}
		jsonapi.WriteValue(w, http.StatusServiceUnavailable, struct {
			jsonapi.ErrorBody
			PurgeResult
		}{jsonapi.ErrorBody{Error: fmt.Sprintf("the central PoP %s did not take the purge (%v); it was applied at %s only; retry", g.central, err, p.opts.Self), Kind: "unavailable"},
			PurgeResult{App: app, Centre: g.central, Purged: map[string]int{p.opts.Self: n}, At: map[string]int64{p.opts.Self: time.Now().UnixNano()}, Unreachable: []string{g.central}}})
		return
	}
	jsonapi.WriteValue(w, http.StatusOK, res)
}
