package spot

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/verge-edge/verge/internal/freeport"
	"github.com/verge-edge/verge/internal/lincheck"
)

func freePort(t *testing.T) int {
	t.Helper()
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	return p
}

// Three clustered central servers replicate the buckets (R3): the SPOT
// keeps working, and keeps every acknowledged write, when one of them dies.
func TestReplicatedOverThreeServers(t *testing.T) {
	if testing.Short() {
		t.Skip("three JetStream servers and their elections take half a minute; run without -short (make test)")
	}
	t.Parallel()
	var ports [3]int
	for i := range ports {
		ports[i] = freePort(t)
	}
	var servers [3]*server.Server
	var serverOpts [3]*server.Options
	for i := range servers {
		o := ServerOptions(t.TempDir())
		serverOpts[i] = o
		o.Port = freePort(t)
		o.ServerName = fmt.Sprintf("verge-central-%d", i)
		var routes []string
		for j, p := range ports {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
			}
		}
		o.Cluster = server.ClusterOpts{Name: "verge-spot", Host: "127.0.0.1", Port: ports[i]}
		o.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		s, err := StartServer(o)
		if err != nil {
			t.Fatal(err)
		}
		servers[i] = s
		t.Cleanup(s.Shutdown)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nc, err := nats.Connect(servers[0].ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var e *JetStream
	for {
		actx, acancel := context.WithTimeout(ctx, 3*time.Second)
		e, err = NewJetStream(actx, nc, Config{Replicas: 3, Shards: 2})
		acancel()
		if err == nil {
			break
		}
		t.Logf("waiting for the cluster: %v", err)
		if ctx.Err() != nil {
			t.Fatalf("R3 buckets: %v", err)
		}
		time.Sleep(200 * time.Millisecond) // the cluster elects its meta leader first
	}
	// A linearizability check across the failure of one of the three
	// servers: four edge clients and the engine itself, the third server
	// shut down a third of the way in.
	serve(t, servers[0], e, "spot")
	es := []Engine{e}
	for range 4 {
		es = append(es, NewClient(connect(t, servers[0].ClientURL()), "spot", 5*time.Second))
	}
	w := &lincheck.Workload{ClaimKeys: []string{"joe", "ann"}, Counters: []string{"sku"}, Docs: []string{"d"}, Releases: true, Owners: 3}
	h := lincheck.NewHistory()
	go func() {
		time.Sleep(2 * time.Second)
		servers[1].Shutdown()
	}()
	w.Run(t, testCtx(t), h, targets("lin", es), 8, 200, 6*time.Second)
	if len(h.Ops) < 100 {
		t.Fatalf("only %d operations recorded", len(h.Ops))
	}
	h.Check(t)
	servers[1].WaitForShutdown()

	// claim retries while streams elect a new leader (unavailable: nothing
	// applied, or an outcome the retry reads back, claims being idempotent).
	claim := func(owner string) (Claim, error) {
		for {
			c, err := e.Claim(ctx, "shop", "users", "joe", owner)
			if err == nil || ctx.Err() != nil || !errors.Is(err, ErrUnavailable) {
				return c, err
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	if c, err := claim("a"); err != nil || !c.Claimed {
		t.Fatalf("claim: %+v, %v", c, err)
	}
	if _, err := e.Restock(ctx, "shop", "brush", 10); err != nil {
		t.Fatal(err)
	}
	// Back to three, then lose another one. The streams whose leader died
	// elect another: until then operations fail as unavailable, then they
	// succeed again.
	restarted := ServerOptions(serverOpts[1].StoreDir)
	restarted.ServerName, restarted.Cluster, restarted.Routes = "verge-central-1", serverOpts[1].Cluster, serverOpts[1].Routes
	restarted.Port = serverOpts[1].Port
	s1, err := StartServer(restarted)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s1.Shutdown)
	servers[2].Shutdown()
	servers[2].WaitForShutdown()
	if c, err := claim("b"); err != nil || c.Claimed || c.Owner != "a" {
		t.Fatalf("claim by another owner with one server down: %+v, %v", c, err)
	}
	// The counter's stream may still be electing: wait with reads (safe to
	// retry) before the take (not safe to retry blindly).
	for {
		if _, err := e.Counter(ctx, "shop", "brush"); err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if tk, err := e.Take(ctx, "shop", "brush", 3); err != nil || !tk.OK || tk.Remaining != 7 {
		t.Fatalf("take with one server down: %+v, %v", tk, err)
	}

	// A change by id, whose answer is lost; its resend reaches a new
	// engine (the centre restarted) on another server of the cluster:
	// the window is replicated with the value, so the resend is answered,
	// not applied again.
	_, base, err := e.CounterSeq(ctx, "shop", "brush")
	if err != nil {
		t.Fatal(err)
	}
	id := OpID{Client: 5, Seq: 1, Base: base}
	if tk, err := e.TakeOnce(ctx, "shop", "brush", 2, id); err != nil || !tk.OK || tk.Remaining != 5 {
		t.Fatalf("take by id: %+v, %v", tk, err)
	}
	e2 := newEngineOn(t, ctx, s1.ClientURL(), Config{Replicas: 3, Shards: 2})
	id.Resend = true
	if tk, err := e2.TakeOnce(ctx, "shop", "brush", 2, id); err != nil || !tk.OK || tk.Remaining != 5 {
		t.Fatalf("the resend at another server's engine: %+v, %v; want the first answer (OK, 5 remaining)", tk, err)
	}
	if n, err := e2.Counter(ctx, "shop", "brush"); err != nil || n != 5 {
		t.Fatalf("the stock after the resend: %d, %v; want 5 (taken once)", n, err)
	}
}

// newEngineOn opens the R3 buckets through the server at url, waiting for
// them to be reachable.
func newEngineOn(t *testing.T, ctx context.Context, url string, cfg Config) *JetStream {
	t.Helper()
	nc := connect(t, url)
	for {
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		e, err := NewJetStream(actx, nc, cfg)
		cancel()
		if err == nil {
			return e
		}
		if ctx.Err() != nil {
			t.Fatalf("R3 buckets through %s: %v", url, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
