package netsim

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

var testPoPs = []PoP{
	{ID: "syd", At: sydney},
	{ID: "nyc", At: newYork},
	{ID: "fra", At: frankfurt},
	{ID: "tyo", At: tokyo},
}

func ids(ps []PoP) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.ID)
	}
	return strings.Join(s, ",")
}

func TestRouterOrder(t *testing.T) {
	t.Parallel()
	r := NewRouter(testPoPs, RouterOptions{})
	for _, tc := range []struct {
		client Point
		want   string
	}{
		{paris, "fra,nyc,tyo,syd"},
		{tokyo, "tyo,syd,fra,nyc"},
		{Point{-37.8136, 144.9631}, "syd,tyo,fra,nyc"}, // Melbourne: NY is farther than Frankfurt
		{Point{40.7128, -74.0060}, "nyc,fra,tyo,syd"},
	} {
		if got := ids(r.Order(tc.client)); got != tc.want {
			t.Errorf("Order(%v) = %s, want %s", tc.client, got, tc.want)
		}
	}
}

// fakeHealth is an injected checker whose PoPs can be taken down.
type fakeHealth struct {
	mu    sync.Mutex
	down  map[string]bool
	calls map[string]int
}

func newFakeHealth() *fakeHealth {
	return &fakeHealth{down: map[string]bool{}, calls: map[string]int{}}
}

func (f *fakeHealth) set(id string, down bool) {
	f.mu.Lock()
	f.down[id] = down
	f.mu.Unlock()
}

func (f *fakeHealth) check(_ context.Context, p PoP) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[p.ID]++
	if f.down[p.ID] {
		return errors.New("injected outage")
	}
	return nil
}

func TestRouterFailover(t *testing.T) {
	t.Parallel()
	h := newFakeHealth()
	r := NewRouter(testPoPs, RouterOptions{Health: h.check, TTL: -1})
	ctx := context.Background()
	route := func() string {
		p, err := r.Route(ctx, paris)
		if err != nil {
			return "error: " + err.Error()
		}
		return p.ID
	}
	if got := route(); got != "fra" {
		t.Fatalf("Route(paris) = %s, want fra", got)
	}
	h.set("fra", true)
	if got := route(); got != "nyc" {
		t.Errorf("with fra down Route(paris) = %s, want nyc", got)
	}
	h.set("nyc", true)
	if got := route(); got != "tyo" {
		t.Errorf("with fra, nyc down Route(paris) = %s, want tyo", got)
	}
	h.set("fra", false)
	if got := route(); got != "fra" {
		t.Errorf("with fra back Route(paris) = %s, want fra", got)
	}
	for _, p := range testPoPs {
		h.set(p.ID, true)
	}
	_, err := r.Route(ctx, paris)
	if err == nil {
		t.Fatal("Route with every PoP down succeeded")
	}
	for _, want := range []string{"fra (", "nyc (", "tyo (", "syd (", "injected outage"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := r.Route(cancelled, paris); err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Errorf("Route with a cancelled context: %v, want an error saying so", err)
	}
	if _, err := NewRouter(nil, RouterOptions{}).Route(ctx, paris); err == nil {
		t.Error("Route with no PoPs succeeded")
	}
}

func TestRouterCachesResults(t *testing.T) {
	t.Parallel()
	h := newFakeHealth()
	r := NewRouter(testPoPs, RouterOptions{Health: h.check, TTL: time.Hour})
	h.set("fra", true)
	for range 5 {
		if p, err := r.Route(context.Background(), paris); err != nil || p.ID != "nyc" {
			t.Fatalf("Route = %v, %v, want nyc", p.ID, err)
		}
	}
	h.set("fra", false) // not seen until the TTL passes: the failure is cached too
	if p, _ := r.Route(context.Background(), paris); p.ID != "nyc" {
		t.Errorf("Route = %s within the TTL of fra's failure, want nyc", p.ID)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.calls["fra"] != 1 || h.calls["nyc"] != 1 {
		t.Errorf("health checks %v, want one each for fra and nyc", h.calls)
	}
}

func TestRouterTimeout(t *testing.T) {
	t.Parallel()
	hang := func(ctx context.Context, p PoP) error {
		if p.ID == "fra" {
			<-ctx.Done() // a PoP that accepts and never answers
			return ctx.Err()
		}
		return nil
	}
	r := NewRouter(testPoPs, RouterOptions{Health: hang, Timeout: 50 * ms, TTL: -1})
	p, err := r.Route(context.Background(), paris)
	if err != nil || p.ID != "nyc" {
		t.Errorf("Route past a hanging PoP = %v, %v, want nyc", p.ID, err)
	}
}

func TestRouterHTTP(t *testing.T) {
	t.Parallel()
	healthy := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("ok"))
	})
	fra, nyc := httptest.NewServer(healthy), httptest.NewServer(healthy)
	t.Cleanup(fra.Close)
	t.Cleanup(nyc.Close)
	tyo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "draining", http.StatusServiceUnavailable)
	}))
	t.Cleanup(tyo.Close)
	host := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }
	pops := []PoP{
		{ID: "fra", At: frankfurt, HTTP: host(fra)},
		{ID: "nyc", At: newYork, HTTP: host(nyc)},
		{ID: "tyo", At: tokyo, HTTP: host(tyo)},
	}
	r := NewRouter(pops, RouterOptions{TTL: -1, Timeout: 2 * time.Second})
	ctx := context.Background()

	if p, err := r.Route(ctx, paris); err != nil || p.ID != "fra" {
		t.Fatalf("Route(paris) = %v, %v, want fra", p.ID, err)
	}
	if p, err := r.Route(ctx, tokyo); err != nil || p.ID != "fra" {
		t.Errorf("Route(tokyo) with tyo answering 503 = %v, %v, want fra (nearer than nyc)", p.ID, err)
	}
	fra.CloseClientConnections()
	fra.Close()
	if p, err := r.Route(ctx, paris); err != nil || p.ID != "nyc" {
		t.Errorf("Route(paris) with fra closed = %v, %v, want nyc", p.ID, err)
	}
	nyc.Close()
	_, err := r.Route(ctx, paris)
	if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "fra (") {
		t.Errorf("Route with nothing healthy: %v, want an error listing fra and tyo's 503", err)
	}
}
