package pop

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/spot"
)

// Two edge PoPs racing for the same usernames: exactly one winner each, and
// both agree on who.
func TestClaimRaceAcrossPoPs(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.start("c", "a", "b", "e")
	ctx := context.Background()
	const names = 30
	type result struct {
		claimed bool
		owner   string
	}
	res := map[string][names]result{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, id := range []string{"a", "b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine [names]result
			for i := range names {
				f := c.pops[id].Spot
				cl, err := f.Claim(ctx, "shop", "users", fmt.Sprintf("joe%d", i), "user-at-"+id)
				if err != nil {
					t.Errorf("claim at %s: %v", id, err)
					return
				}
				mine[i] = result{cl.Claimed, cl.Owner}
			}
			mu.Lock()
			res[id] = mine
			mu.Unlock()
		}()
	}
	wg.Wait()
	for i := range names {
		a, b := res["a"][i], res["b"][i]
		if a.claimed == b.claimed {
			t.Fatalf("joe%d: claimed at a %v, at b %v; want exactly one winner", i, a.claimed, b.claimed)
		}
		if a.owner != b.owner {
			t.Fatalf("joe%d: a sees owner %q, b sees %q", i, a.owner, b.owner)
		}
	}
}

// With the centre down, SPOT operations fail fast with ErrUnavailable while
// local reads and writes keep working.
func TestSpotFailsFastWithoutCentre(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.opts = func(o *Options) { o.SpotTimeout = 500 * time.Millisecond }
	c.start("c", "a", "b", "e")
	ctx := context.Background()
	a := c.pops["a"].Spot
	if _, err := a.Restock(ctx, "shop", "brush", 5); err != nil {
		t.Fatal(err)
	}
	c.stop("c")
	deadline := time.Now().Add(10 * time.Second)
	for c.pops["a"].Mesh.Up("c") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	_, err := a.Claim(ctx, "shop", "users", "ann", "x")
	if !errors.Is(err, spot.ErrUnavailable) {
		t.Fatalf("claim without the centre: %v, want ErrUnavailable", err)
	}
	if _, err := a.Take(ctx, "shop", "brush", 1); !errors.Is(err, spot.ErrUnavailable) {
		t.Fatalf("take without the centre: %v, want ErrUnavailable", err)
	}
	t.Logf("failing took %v", time.Since(start))
	c.update("a", "stats", "s", incr("n", 1))
	if got := c.get("a", "stats", "s"); got != `{"n":1}` {
		t.Fatalf("a local write without the centre: %s", got)
	}
}
