package pop

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/netsim"
	"github.com/verge-edge/verge/internal/wasm"
)

// Data that follows its user.
//
// A client carries its home PoP, the PoP that last served it, in the
// verge_home cookie (set on every response) or the Verge-Home header. When a
// request reaches another PoP, each `local` document the function touches is
// first fetched from the home PoP (or from the centre if the home does not
// answer) and merged here; from then on this PoP is the document's home: its
// writes go from here to the centre, and the response moves the cookie.
//
// A PoP outside a collection's regions never holds that collection's data,
// so it does not run the app at all: it forwards the request to the home PoP
// if that one is allowed, else to the nearest allowed PoP.
const (
	homeCookie      = "verge_home"
	homeHeader      = "Verge-Home"
	forwardedHeader = "Verge-Forwarded-By"
	homeTimeout     = time.Second
	fetchTimeout    = 3 * time.Second
)

type homeKey struct{}

// requestHome is the per-request follow state.
type requestHome struct {
	home    string
	mu      sync.Mutex
	fetched map[[2]string]bool
}

// followDocs adds Follow to the data service's runtime adapter.
type followDocs struct {
	wasm.Documents
	p *PoP
}

func (d followDocs) Follow(ctx context.Context, app, coll, key string) func(context.Context) error {
	h, _ := ctx.Value(homeKey{}).(*requestHome)
	if h == nil || h.home == d.p.opts.Self {
		return nil
	}
	c, err := d.p.Data.Collection(app, coll)
	if err != nil || c.Scope.Kind != "local" {
		return nil
	}
	h.mu.Lock()
	done := h.fetched[[2]string{coll, key}]
	h.fetched[[2]string{coll, key}] = true
	h.mu.Unlock()
	if done {
		return nil
	}
	return func(ctx context.Context) error {
		central, _ := d.p.opts.Network.Central()
		// The home gets part of the budget: a PoP that just died can hold a
		// request until its link is declared down, and the centre must
		// still get its chance.
		hctx, cancel := context.WithTimeout(ctx, homeTimeout)
		_, err := d.p.Repl.Fetch(hctx, h.home, app, coll, key)
		cancel()
		if err == nil {
			return nil
		}
		ctx, cancel = context.WithTimeout(ctx, fetchTimeout)
		defer cancel()
		if h.home == central.ID || central.ID == d.p.opts.Self {
			return fmt.Errorf("document %q of %s follows its user from PoP %s, which does not answer: %w", key, coll, h.home, err)
		}
		d.p.log.Info("home PoP unreachable; fetching from the centre", "home", h.home, "coll", coll, "err", err)
		if _, err2 := d.p.Repl.Fetch(ctx, central.ID, app, coll, key); err2 != nil {
			return fmt.Errorf("document %q of %s follows its user, but neither its home PoP %s (%v) nor the centre %s (%v) answers",
				key, coll, h.home, err, central.ID, err2)
		}
		return nil
	}
}

// appHandler wraps the app's gateway with residency forwarding and the
// home cookie.
func (p *PoP) appHandler(next http.Handler) http.Handler {
	m := p.opts.App
	hasLocal := false
	var restricted []verge.Collection
	for _, c := range m.Collections {
		hasLocal = hasLocal || c.Scope.Kind == "local"
		if !p.opts.Network.Allowed(p.opts.Self, c) {
			restricted = append(restricted, c)
		}
	}
	atCentre := p.central()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		home := r.Header.Get(homeHeader)
		if home == "" {
			if ck, err := r.Cookie(homeCookie); err == nil {
				home = ck.Value
			}
		}
		if _, ok := p.opts.Network.PoP(home); !ok {
			home = "" // unknown or forged: serve as a new client
		}
		if len(restricted) > 0 && r.Header.Get(forwardedHeader) == "" {
			p.forward(w, r, home, restricted)
			return
		}
		if !atCentre {
			if _, ok := centralRoute(m, r.URL.Path); ok {
				p.forwardCentral(w, r)
				return
			}
		}
		if hasLocal {
			http.SetCookie(w, &http.Cookie{Name: homeCookie, Value: p.opts.Self, Path: "/", MaxAge: 30 * 24 * 3600, SameSite: http.SameSiteLaxMode, HttpOnly: true})
			if home != "" && home != p.opts.Self {
				r = r.WithContext(context.WithValue(r.Context(), homeKey{}, &requestHome{home: home, fetched: map[[2]string]bool{}}))
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (p *PoP) central() bool {
	self, _ := p.opts.Network.PoP(p.opts.Self)
	return self.Central
}

// forward proxies a request this PoP may not serve (its region is outside a
// collection's regions) to the home PoP if allowed and up, else to the
// nearest allowed PoP that is up.
func (p *PoP) forward(w http.ResponseWriter, r *http.Request, home string, restricted []verge.Collection) {
	allowed := func(id string) bool {
		for _, c := range restricted {
			if !p.opts.Network.Allowed(id, c) {
				return false
			}
		}
		return id != p.opts.Self && p.opts.HTTPAddrs[id] != "" && p.Mesh.Up(id)
	}
	target := ""
	if home != "" && allowed(home) {
		target = home
	} else {
		self, _ := p.opts.Network.PoP(p.opts.Self)
		var cands []verge.PoP
		for _, q := range p.opts.Network.PoPs {
			if allowed(q.ID) {
				cands = append(cands, q)
			}
		}
		at := netsim.Point{Lat: self.Lat, Lon: self.Lon}
		sort.SliceStable(cands, func(i, j int) bool {
			return netsim.Distance(at, netsim.Point{Lat: cands[i].Lat, Lon: cands[i].Lon}) <
				netsim.Distance(at, netsim.Point{Lat: cands[j].Lat, Lon: cands[j].Lon})
		})
		if len(cands) > 0 {
			target = cands[0].ID
		}
	}
	if target == "" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, `{"error":"this app keeps data only in regions this PoP (%s) is not in, and no PoP of those regions is reachable; retry later","kind":"unavailable"}`+"\n", p.opts.Self)
		return
	}
	u := &url.URL{Scheme: "http", Host: p.opts.HTTPAddrs[target]}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = p.forwarding
	rp.Rewrite = nil
	director := rp.Director
	rp.Director = func(req *http.Request) {
		director(req)
		req.Header.Set(forwardedHeader, p.opts.Self)
	}
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		p.log.Warn("forwarding failed", "to", target, "err", err)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadGateway)
		fmt.Fprintf(w, `{"error":"forwarding to PoP %s failed; retry","kind":"unavailable"}`+"\n", target)
	}
	rp.ServeHTTP(w, r)
}
