package pop

import (
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/host"
	"github.com/verge-edge/verge/internal/jsonapi"
	"github.com/verge-edge/verge/internal/netsim"
	"github.com/verge-edge/verge/internal/obs"
	"go.opentelemetry.io/otel/propagation"
)

// Data that follows its user.
//
// A client carries its home PoP, the PoP that last served it, in the
// verge_home cookie (set on every response) or the Verge-Home header. When a
// request reaches another PoP, each `local` document the function touches is
// first fetched from the home PoP (or from the centre if the home does not
// answer) and merged here (host.Follower); from then on this PoP is the
// document's home: its writes go from here to the centre, and the response
// moves the cookie.
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

// popHeader names, on every response of an app, the PoP that served it;
// viaHeader the PoP that forwarded it there (placement "central", regions),
// so a client can tell where its request ran.
const (
	popHeader = "Verge-PoP"
	viaHeader = "Verge-Via"
)

// appHandler serves a hosted app: residency and placement forwarding,
// central routes, the home cookie, then the app's gateway here.
func (p *PoP) appHandler(h *hosted) http.Handler {
	m := h.full
	hasLocal := false
	var restricted []verge.Collection
	for _, c := range m.Collections {
		hasLocal = hasLocal || c.Scope.Kind == verge.ScopeLocal
		if !p.opts.Network.Allowed(p.opts.Self, c) {
			restricted = append(restricted, c)
		}
	}
	atCentre := p.self.Central
	// The PoP header's canonical key and its value, shared by every
	// response (capacity 1: an append copies): Set would canonicalise
	// the key and allocate both again for each request.
	popKey, popVals := http.CanonicalHeaderKey(popHeader), []string{p.opts.Self}
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
		forwarded := r.Header.Get(forwardedHeader) != ""
		if m.Placement == verge.PlacementCentral && !atCentre && !forwarded {
			// A single-region app: it runs, and keeps its data, at the centre.
			central, _ := p.opts.Network.Central()
			p.proxy(w, r, central.ID)
			return
		}
		if len(restricted) > 0 && !forwarded {
			p.forward(w, r, home, restricted)
			return
		}
		w.Header()[popKey] = popVals[:1:1]
		if !atCentre {
			if _, ok := centralRoute(m, r.URL.Path); ok {
				p.forwardCentral(w, r, m.Name)
				return
			}
		}
		if p.serveRoom(h, w, r) {
			return
		}
		if hasLocal {
			http.SetCookie(w, &http.Cookie{Name: homeCookie, Value: p.opts.Self, Path: "/", MaxAge: 30 * 24 * 3600, SameSite: http.SameSiteLaxMode, HttpOnly: true})
			if home != "" && home != p.opts.Self {
				r = r.WithContext(host.WithHome(r.Context(), home))
			}
		}
		p.serveLocal(h, w, r)
	})
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
		q, _ := p.opts.Network.PoP(id)
		return id != p.opts.Self && q.HTTP != "" && p.Mesh.Up(id)
	}
	target := ""
	if home != "" && allowed(home) {
		target = home
	} else {
		var cands []verge.PoP
		for _, q := range p.opts.Network.PoPs {
			if allowed(q.ID) {
				cands = append(cands, q)
			}
		}
		at := netsim.Point{Lat: p.self.Lat, Lon: p.self.Lon}
		sort.SliceStable(cands, func(i, j int) bool {
			return netsim.Distance(at, netsim.Point{Lat: cands[i].Lat, Lon: cands[i].Lon}) <
				netsim.Distance(at, netsim.Point{Lat: cands[j].Lat, Lon: cands[j].Lon})
		})
		if len(cands) > 0 {
			target = cands[0].ID
		}
	}
	if target == "" {
		jsonapi.Error(w, http.StatusServiceUnavailable, "unavailable", fmt.Sprintf("this app keeps data only in regions this PoP (%s) is not in, and no PoP of those regions is reachable; retry later", p.opts.Self))
		return
	}
	p.proxy(w, r, target)
}

// proxy forwards a request to PoP target's gateway, across the emulated WAN
// when there is one, marked so that target serves it itself.
func (p *PoP) proxy(w http.ResponseWriter, r *http.Request, target string) {
	to, _ := p.opts.Network.PoP(target)
	u := &url.URL{Scheme: "http", Host: to.HTTP}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = p.forwarding
	rp.Rewrite = nil
	director := rp.Director
	rp.Director = func(req *http.Request) {
		director(req)
		req.Header.Set(forwardedHeader, p.opts.Self)
		obs.Propagator.Inject(req.Context(), propagation.HeaderCarrier(req.Header)) // one trace across the hop
	}
	rp.ModifyResponse = func(resp *http.Response) error {
		resp.Header.Set(viaHeader, p.opts.Self)
		return nil
	}
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		p.log.Warn("forwarding failed", "to", target, "err", err)
		jsonapi.Error(w, http.StatusBadGateway, "unavailable", fmt.Sprintf("forwarding to PoP %s failed; retry", target))
	}
	rp.ServeHTTP(w, r)
}
