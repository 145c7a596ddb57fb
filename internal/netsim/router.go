package netsim

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// PoP is a point of presence as a client sees it.
type PoP struct {
	ID   string
	At   Point
	HTTP string // host:port of its HTTP listener
}

// HealthFunc reports whether a PoP is serving: nil means healthy.
type HealthFunc func(ctx context.Context, p PoP) error

// RouterOptions configures a Router; the zero value is usable.
type RouterOptions struct {
	// Health checks one PoP. Default: HTTPHealth(nil).
	Health HealthFunc
	// Timeout bounds one check. Default 500 ms.
	Timeout time.Duration
	// TTL is how long a check's result, healthy or not, is reused.
	// Default 1 s; negative disables the cache.
	TTL time.Duration
}

// Router sends a client to its nearest healthy PoP, the client-side half of
// failover. Safe for concurrent use.
type Router struct {
	pops    []PoP
	health  HealthFunc
	timeout time.Duration
	ttl     time.Duration

	mu    sync.Mutex
	cache map[string]checked
}

type checked struct {
	err error
	at  time.Time
}

// NewRouter returns a router over pops.
func NewRouter(pops []PoP, o RouterOptions) *Router {
	r := &Router{
		pops:    slices.Clone(pops),
		health:  o.Health,
		timeout: o.Timeout,
		ttl:     o.TTL,
		cache:   make(map[string]checked),
	}
	if r.health == nil {
		r.health = HTTPHealth(nil)
	}
	if r.timeout <= 0 {
		r.timeout = 500 * time.Millisecond
	}
	if r.ttl == 0 {
		r.ttl = time.Second
	}
	return r
}

// Order returns every PoP, nearest to client first (ties by ID).
func (r *Router) Order(client Point) []PoP {
	type ranked struct {
		p PoP
		d float64
	}
	rs := make([]ranked, len(r.pops))
	for i, p := range r.pops {
		rs[i] = ranked{p, Distance(client, p.At)}
	}
	slices.SortFunc(rs, func(a, b ranked) int {
		if c := cmp.Compare(a.d, b.d); c != 0 {
			return c
		}
		return strings.Compare(a.p.ID, b.p.ID)
	})
	out := make([]PoP, len(rs))
	for i, x := range rs {
		out[i] = x.p
	}
	return out
}

// Route returns the nearest healthy PoP, trying them in distance order. The
// error lists every PoP tried and why it was passed over.
func (r *Router) Route(ctx context.Context, client Point) (PoP, error) {
	if len(r.pops) == 0 {
		return PoP{}, errors.New("netsim: router has no PoPs to route to")
	}
	var tried []string
	for _, p := range r.Order(client) {
		if err := ctx.Err(); err != nil {
			tried = append(tried, "stopped: "+err.Error())
			break
		}
		err := r.check(ctx, p)
		if err == nil {
			return p, nil
		}
		tried = append(tried, fmt.Sprintf("%s (%.0f km): %v", p.ID, Distance(client, p.At), err))
	}
	return PoP{}, fmt.Errorf("netsim: no healthy PoP for client at %.4f,%.4f; tried %s",
		client.Lat, client.Lon, strings.Join(tried, "; "))
}

func (r *Router) check(ctx context.Context, p PoP) error {
	if r.ttl > 0 {
		r.mu.Lock()
		c, ok := r.cache[p.ID]
		r.mu.Unlock()
		if ok && time.Since(c.at) < r.ttl {
			return c.err
		}
	}
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	err := r.health(cctx, p)
	cancel()
	if ctx.Err() != nil {
		return err // the caller gave up: say nothing about the PoP
	}
	if r.ttl > 0 {
		r.mu.Lock()
		r.cache[p.ID] = checked{err: err, at: time.Now()}
		r.mu.Unlock()
	}
	return err
}

// HTTPHealth returns a HealthFunc that GETs http://HTTP/healthz and accepts
// any 2xx status. A nil client means http.DefaultClient; the Router bounds
// each check with its Timeout through the context.
func HTTPHealth(client *http.Client) HealthFunc {
	if client == nil {
		client = http.DefaultClient
	}
	return func(ctx context.Context, p PoP) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.HTTP+"/healthz", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		// Drain a little so the connection can be reused, never the world.
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("GET /healthz: %s", resp.Status)
		}
		return nil
	}
}
