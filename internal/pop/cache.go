package pop

import (
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/cache"
	"github.com/verge-edge/verge/internal/fetch"
	"github.com/verge-edge/verge/internal/gateway"
)

// Fetch and the HTTP cache at a PoP (docs/cache.md). The PoP has one cache,
// shared by its apps (keys are per app). Each app version gets a fetch
// service built from its manifest's backends, through that cache; the
// cache's Handler stands in front of the version's gateway, so a function's
// cacheable responses are served without running it. Until this PoP has
// synced purges with the centre (purge.go), neither reads the cache.

// HTTPCacheOptions configure a PoP's HTTP cache.
type HTTPCacheOptions struct {
	// MemoryBytes is the memory budget (0: cache's default, 256 MiB).
	MemoryBytes int64
	// Disk adds the disk tier, in the data directory's "httpcache".
	Disk bool
	// DiskBytes bounds the disk tier (0: cache's default, 1 GiB).
	DiskBytes int64
	// Off: no cache (fetches go to their backends, functions always run).
	Off bool
}

// BypassLabel is the X-Cache of a response a PoP gave without its cache
// because it has not synced purges with the centre yet.
const BypassLabel = "BYPASS"

// openCache opens the PoP's HTTP cache.
func (p *PoP) openCache() error {
	o := p.opts.HTTPCache
	if o.Off {
		return nil
	}
	co := cache.Options{MemoryBytes: o.MemoryBytes, DiskBytes: o.DiskBytes, Logger: p.log,
		// What the disk holds may have been purged while this PoP was
		// down: revalidate it before use.
		StaleOnOpen: true,
		// A hit is a request of its own: it must not carry the id of the
		// run that filled the cache.
		PerRequest: []string{gateway.RequestIDHeader}}
	if o.Disk {
		co.Dir = filepath.Join(p.opts.Data, "httpcache")
	}
	c, err := cache.Open(co)
	if err != nil {
		return fmt.Errorf("the HTTP cache: %w", err)
	}
	p.Cache = c
	return nil
}

// fetchers gives the fetch capability the fetch service of the version of
// an app served here.
func (p *PoP) fetchers(app string) *fetch.Service {
	if h := p.apps.byName(app); h != nil && h.edge != nil {
		return h.edge.fetch
	}
	return nil
}

// edgeApp is what a version of an app has of fetch and the cache.
type edgeApp struct {
	fetch   *fetch.Service // nil: the app declares no backend
	cached  http.Handler   // the cache in front of the gateway; nil: no cache
	gateway http.Handler
}

// attachEdge builds h's fetch service and puts the cache in front of its
// gateway (h.app is loaded).
func (p *PoP) attachEdge(h *hosted, m *verge.Manifest) error {
	e := &edgeApp{gateway: h.app.Gateway}
	if len(m.Backends) > 0 {
		svc, err := fetch.New(m.Name, m.Backends, fetch.Options{Cache: p.Cache, Bypass: p.purges.unsynced})
		if err != nil {
			return err
		}
		e.fetch = svc
	}
	if p.Cache != nil {
		e.cached = p.Cache.Handler(m.Name, h.app.Gateway)
	}
	h.edge = e
	return nil
}

// reloaded empties the cache of an app served from its directory whose
// module changed (verge dev): its cached responses came from the old code.
func (p *PoP) reloaded(app string) {
	if p.Cache != nil {
		p.Cache.Purge(app, cache.Purge{All: true})
	}
}

// serveGateway runs a request through the version's gateway, through the
// cache when there is one and this PoP has synced its purges.
func (p *PoP) serveGateway(h *hosted, w http.ResponseWriter, r *http.Request) {
	e := h.edge
	switch {
	case e == nil:
		h.app.Gateway.ServeHTTP(w, r)
	case e.cached == nil:
		e.gateway.ServeHTTP(w, r)
	case p.purges.unsynced():
		w.Header().Set(cache.HeaderXCache, BypassLabel)
		e.gateway.ServeHTTP(&stripKeys{ResponseWriter: w}, r)
	default:
		// The request's id, for an answer from the cache and for a run
		// straight through it (hit-for-pass); a miss this request leads
		// runs the function behind a pipe and answers with the run's own.
		w.Header()[gateway.RequestIDHeader] = []string{h.app.Gateway.NewRequestID()}
		e.cached.ServeHTTP(w, r)
	}
}

// hitServer answers a version's fresh cache hits ahead of its handler
// chain (appHandler), for the versions for which nothing that chain does
// before the cache applies (hitsFirstFits): then a hit costs the lookup and
// the write, not the routing, quota and status-recording work a function's
// run needs. Any request the cache cannot answer at once from memory,
// fresh, goes down the chain unchanged.
type hitServer struct {
	p    *PoP
	h    *hosted
	head func(http.Header)
}

// hitsFirst is h's hitServer, or nil when its hits take the whole chain.
func (p *PoP) hitsFirst(h *hosted) *hitServer {
	if h.edge == nil || h.edge.cached == nil || !p.hitsFirstFits(h) {
		return nil
	}
	self := p.opts.Self
	gw := h.app.Gateway
	return &hitServer{p: p, h: h, head: func(hdr http.Header) {
		// What appHandler, serveLocal and serveGateway set, in one
		// allocation for the three values.
		vals := &[3]string{self, h.Version(), gw.NewRequestID()}
		hdr[popHeader] = vals[0:1:1]
		hdr[VersionHeader] = vals[1:2:2]
		hdr[gateway.RequestIDHeader] = vals[2:3:3]
	}}
}

// serve answers r if it is such a hit, counting it for the deploy gate as
// serveLocal counts a request, and returns its status and how long it took
// since start; ok is false, and nothing is written, otherwise.
func (s *hitServer) serve(w http.ResponseWriter, r *http.Request, start time.Time) (code int, took time.Duration, ok bool) {
	if s == nil || s.p.purges.unsynced() {
		return 0, 0, false
	}
	if code, ok = s.p.Cache.ServeHit(s.h.name, w, r, s.head); !ok {
		return 0, 0, false
	}
	took = time.Since(start)
	s.p.stats.Record(s.h.name, s.h.Version(), code, took)
	return code, took, true
}

// serveHTTP serves r with h: its hits first, then its handler chain.
func (h *hosted) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := h.hits.serve(w, r, time.Now()); !ok {
		h.handler.ServeHTTP(w, r)
	}
}

// hitsFirstFits reports whether appHandler and serveLocal do nothing for
// h's requests but set headers before the cache: no forwarding (placement,
// regions), no central route at this PoP, no room, no home cookie (local
// collections), no quota. Keep it in step with them.
func (p *PoP) hitsFirstFits(h *hosted) bool {
	m := h.full
	if h.app == nil || m.Placement == verge.PlacementCentral && !p.self.Central {
		return false
	}
	for _, c := range m.Collections {
		if c.Scope.Kind == verge.ScopeLocal || !p.opts.Network.Allowed(p.opts.Self, c) {
			return false
		}
	}
	for _, fn := range m.Functions {
		if fn.Kind == verge.KindRoom || fn.Kind == verge.KindCentral && !p.self.Central {
			return false
		}
	}
	if q := p.quotas; q != nil && !q.none {
		if pol := policyOf(q.defaults, q.apps, h.name); pol.RequestsPerSecond > 0 || pol.MaxConcurrent > 0 {
			return false
		}
	}
	return true
}

// stripKeys removes the purge tags of a response that did not go through
// the cache, as the cache does.
type stripKeys struct {
	http.ResponseWriter
	wrote bool
}

func (w *stripKeys) WriteHeader(code int) {
	if !w.wrote {
		w.wrote = true
		w.Header().Del(cache.HeaderSurrogateKey)
		w.Header().Del("Surrogate-Control")
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *stripKeys) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func (w *stripKeys) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (w *stripKeys) Unwrap() http.ResponseWriter { return w.ResponseWriter }
