package stock

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/spot"
	"github.com/verge-edge/verge/internal/store"
)

// centre starts a JetStream SPOT engine served over NATS, as the central
// PoP does, and returns a function making edge clients of it.
func centre(t *testing.T) (spot.Engine, func() spot.Engine) {
	t.Helper()
	js, _, url := serveCentre(t, "verge.spot")
	return js, func() spot.Engine {
		c, err := nats.Connect(url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return spot.NewClient(c, "verge.spot", 5*time.Second)
	}
}

// serveCentre starts a NATS server with a JetStream SPOT engine served on
// subject, and returns the engine, its connection and the server's URL.
func serveCentre(t *testing.T, subject string) (spot.Engine, *nats.Conn, string) {
	t.Helper()
	s, err := spot.StartServer(spot.ServerOptions(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := spot.NewJetStream(context.Background(), nc, spot.Config{Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	stop, err := spot.Serve(nc, subject, js)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return js, nc, s.ClientURL()
}

func manifest(threshold, grant int64) *verge.Manifest {
	return &verge.Manifest{Name: "shop", Counters: []verge.Counter{{Name: "brush", Threshold: threshold, Grant: grant}}}
}

func newStock(t *testing.T, central spot.Engine, m *verge.Manifest, dir string) *Stock {
	t.Helper()
	st, err := store.Open(dir, store.Options{Origin: "pop", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Central: central, Store: st, Apps: []*verge.Manifest{m}, Rebalance: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); st.Close() })
	return s
}

// A flash sale across five PoPs: every unit is sold at most once, most of
// them locally while the stock is plentiful, and once every PoP is told
// "insufficient", nothing is left anywhere.
func TestFlashSaleNeverOversells(t *testing.T) {
	t.Parallel()
	direct, client := centre(t)
	ctx := context.Background()
	const stockUnits = 600
	if _, err := direct.Restock(ctx, "shop", "brush", stockUnits); err != nil {
		t.Fatal(err)
	}
	m := manifest(50, 20)
	var pops []*Stock
	for range 5 {
		pops = append(pops, newStock(t, client(), m, t.TempDir()))
	}
	var sold, local atomic.Int64
	var wg sync.WaitGroup
	for i, p := range pops {
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 1000 { // bounded: more than the stock
					tk, err := p.Take(ctx, "shop", "brush", 1)
					if err != nil {
						t.Errorf("pop %d worker %d: %v", i, w, err)
						return
					}
					if !tk.OK {
						return
					}
					sold.Add(1)
					if tk.Local {
						local.Add(1)
					}
				}
			}()
		}
	}
	wg.Wait()
	for _, p := range pops {
		p.Close() // let a background return in flight finish
	}
	if sold.Load() > stockUnits {
		t.Fatalf("oversold: %d units sold of %d", sold.Load(), stockUnits)
	}
	// The last takes went to the centre, which gave back every escrow first.
	var escrowed int64
	for _, p := range pops {
		escrowed += p.Escrowed("shop", "brush")
	}
	rem, err := direct.Counter(ctx, "shop", "brush")
	if err != nil {
		t.Fatal(err)
	}
	if sold.Load()+rem+escrowed != stockUnits {
		t.Fatalf("units not conserved: sold %d + at the centre %d + in escrow %d != %d", sold.Load(), rem, escrowed, stockUnits)
	}
	if sold.Load() != stockUnits {
		t.Fatalf("sold %d of %d although every PoP was told insufficient", sold.Load(), stockUnits)
	}
	if local.Load() < stockUnits/2 {
		t.Fatalf("only %d of %d takes were local while the stock was plentiful", local.Load(), sold.Load())
	}
	t.Logf("sold %d, %d locally", sold.Load(), local.Load())
}

// Escrows survive a restart of the PoP (they are in its store), and at or
// below the threshold they go back to the centre.
func TestEscrowPersistsAndReturns(t *testing.T) {
	t.Parallel()
	direct, client := centre(t)
	ctx := context.Background()
	direct.Restock(ctx, "shop", "brush", 100)
	m := manifest(10, 30)
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{Origin: "pop", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Central: client(), Store: st, Apps: []*verge.Manifest{m}, Rebalance: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// The first take is at the centre, one round trip, and the escrow
	// fills behind it; the next is local.
	if tk, err := s.Take(ctx, "shop", "brush", 1); err != nil || !tk.OK || tk.Local || tk.Remaining != 99 {
		t.Fatalf("first take: %+v, %v; want OK at the centre, 99 left there", tk, err)
	}
	waitEscrow(t, s, "brush", 30)
	if tk, err := s.Take(ctx, "shop", "brush", 1); err != nil || !tk.OK || !tk.Local {
		t.Fatalf("second take: %+v, %v; want a local take", tk, err)
	}
	if got := s.Escrowed("shop", "brush"); got != 29 {
		t.Fatalf("escrow after a take from a 30-unit grant: %d", got)
	}
	s.Close()
	st.Close()

	s2 := newStock(t, client(), m, dir)
	if got := s2.Escrowed("shop", "brush"); got != 29 {
		t.Fatalf("escrow after a restart: %d, want 29", got)
	}
	// Sell the centre down to the threshold: the escrow goes back.
	sellToThreshold(t, direct, s2, "brush")
	// Undeclared stocks are always central.
	if tk, err := s2.Take(ctx, "shop", "other", 1); err != nil || tk.OK || tk.Local {
		t.Fatalf("take of an undeclared empty stock: %+v, %v", tk, err)
	}
}

// waitEscrow waits (bounded) until the PoP holds units of counter.
func waitEscrow(t *testing.T, s *Stock, counter string, units int64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); s.Escrowed("shop", counter) != units; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("escrow of %s: %d, want %d", counter, s.Escrowed("shop", counter), units)
		}
	}
}

// sellToThreshold sells counter down to the threshold at the centre (65 of
// its 69 units outside s's escrow of 29) and waits for s to give its escrow
// back: 0 in escrow, 33 at the centre.
func sellToThreshold(t *testing.T, direct spot.Engine, s *Stock, counter string) {
	t.Helper()
	ctx := context.Background()
	if tk, err := direct.Take(ctx, "shop", counter, 65); err != nil || !tk.OK || tk.Remaining != 4 {
		t.Fatalf("direct take: %+v, %v", tk, err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		rem, _ := direct.Counter(ctx, "shop", counter)
		if s.Escrowed("shop", counter) == 0 && rem == 33 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("below the threshold: escrow %d, centre %d; want 0 and 33", s.Escrowed("shop", counter), rem)
		}
	}
}

func patternManifest(threshold, grant int64) *verge.Manifest {
	return &verge.Manifest{Name: "shop", Counters: []verge.Counter{{Name: "stock-*", Threshold: threshold, Grant: grant}}}
}

// A stock declared by a pattern gets its escrow on its first take at a
// PoP, keeps it across a restart (found in the store at start, before any
// take), and gives it back once the centre is at the threshold.
func TestPatternEscrowIsLazyPersistsAndReturns(t *testing.T) {
	t.Parallel()
	direct, client := centre(t)
	ctx := context.Background()
	for _, name := range []string{"stock-a", "stock-b"} {
		if _, err := direct.Restock(ctx, "shop", name, 100); err != nil {
			t.Fatal(err)
		}
	}
	m := patternManifest(10, 30)
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{Origin: "pop", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Central: client(), Store: st, Apps: []*verge.Manifest{m}, Rebalance: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Escrowed("shop", "stock-a"); got != 0 {
		t.Fatalf("escrow of stock-a before any take: %d", got)
	}
	if tk, err := s.Take(ctx, "shop", "stock-a", 1); err != nil || !tk.OK || tk.Local {
		t.Fatalf("first take of stock-a: %+v, %v; want OK at the centre", tk, err)
	}
	waitEscrow(t, s, "stock-a", 30)
	if tk, err := s.Take(ctx, "shop", "stock-a", 1); err != nil || !tk.OK || !tk.Local {
		t.Fatalf("second take of stock-a: %+v, %v; want a local take", tk, err)
	}
	if got := s.Escrowed("shop", "stock-a"); got != 29 {
		t.Fatalf("escrow of stock-a after a take from a 30-unit grant: %d", got)
	}
	// Each stock of the pattern has its own escrow, and a name outside
	// the pattern is taken at the centre.
	if got := s.Escrowed("shop", "stock-b"); got != 0 {
		t.Fatalf("escrow of stock-b, never taken here: %d", got)
	}
	direct.Restock(ctx, "shop", "other", 1)
	if tk, err := s.Take(ctx, "shop", "other", 1); err != nil || !tk.OK || tk.Local || s.Escrowed("shop", "other") != 0 {
		t.Fatalf("take of an undeclared stock: %+v, %v, escrow %d", tk, err, s.Escrowed("shop", "other"))
	}
	s.Close()
	st.Close()

	// Restarted as a PoP starts: its apps are declared after New.
	st2, err := store.Open(dir, store.Options{Origin: "pop", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := New(Options{Central: client(), Store: st2, Rebalance: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Close(); st2.Close() })
	if err := s2.SetApp(m); err != nil {
		t.Fatal(err)
	}
	if got := s2.Escrowed("shop", "stock-a"); got != 29 {
		t.Fatalf("escrow of stock-a after a restart, before any take: %d, want 29", got)
	}
	// Sell the centre down to the threshold: the escrow goes back although
	// nobody takes stock-a at this PoP again.
	sellToThreshold(t, direct, s2, "stock-a")
}

// A flash sale of many stocks declared by one pattern, from three PoPs:
// none is oversold, every unit is accounted for, and each is sold out.
func TestPatternFlashSaleManyStocks(t *testing.T) {
	t.Parallel()
	direct, client := centre(t)
	ctx := context.Background()
	const stocks, units = 40, 60
	for i := range stocks {
		if _, err := direct.Restock(ctx, "shop", fmt.Sprintf("stock-%d", i), units); err != nil {
			t.Fatal(err)
		}
	}
	m := patternManifest(10, 5)
	var pops []*Stock
	for range 3 {
		pops = append(pops, newStock(t, client(), m, t.TempDir()))
	}
	var sold [stocks]atomic.Int64
	var local atomic.Int64
	var wg sync.WaitGroup
	for i, p := range pops {
		for w := range 4 {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(i), uint64(w)))
				out := map[int]bool{}
				for range 4000 { // bounded: more than every stock together
					if len(out) == stocks {
						return
					}
					j := rng.IntN(stocks)
					if out[j] {
						continue
					}
					tk, err := p.Take(ctx, "shop", fmt.Sprintf("stock-%d", j), 1)
					if err != nil {
						t.Errorf("pop %d: %v", i, err)
						return
					}
					if !tk.OK {
						out[j] = true
						continue
					}
					sold[j].Add(1)
					if tk.Local {
						local.Add(1)
					}
				}
			})
		}
	}
	wg.Wait()
	for _, p := range pops {
		p.Close()
	}
	for j := range stocks {
		name := fmt.Sprintf("stock-%d", j)
		rem, err := direct.Counter(ctx, "shop", name)
		if err != nil {
			t.Fatal(err)
		}
		var escrowed int64
		for _, p := range pops {
			escrowed += p.Escrowed("shop", name)
		}
		if n := sold[j].Load(); n+rem+escrowed != units || n != units {
			t.Errorf("%s: sold %d + at the centre %d + in escrow %d; want all %d sold", name, n, rem, escrowed, units)
		}
	}
	if local.Load() == 0 {
		t.Error("no take was local")
	}
	t.Logf("%d stocks of %d units sold out, %d takes local", stocks, units, local.Load())
}

// recording is an engine that records the stock calls made to it.
type recording struct {
	spot.Engine
	mu    sync.Mutex
	calls []string
}

func (r *recording) add(call string) {
	r.mu.Lock()
	r.calls = append(r.calls, call)
	r.mu.Unlock()
}

func (r *recording) Take(ctx context.Context, app, counter string, n int64) (spot.Take, error) {
	r.add(fmt.Sprintf("take %d", n))
	return r.Engine.Take(ctx, app, counter, n)
}

func (r *recording) Counter(ctx context.Context, app, counter string) (int64, error) {
	r.add("counter")
	return r.Engine.Counter(ctx, app, counter)
}

func (r *recording) TakeOnce(ctx context.Context, app, counter string, n int64, id spot.OpID) (spot.Take, error) {
	r.add(fmt.Sprintf("take %d", n))
	return r.Engine.(spot.Once).TakeOnce(ctx, app, counter, n, id)
}

func (r *recording) RestockOnce(ctx context.Context, app, counter string, n int64, id spot.OpID) (int64, uint64, error) {
	r.add(fmt.Sprintf("restock %d", n))
	return r.Engine.(spot.Once).RestockOnce(ctx, app, counter, n, id)
}

func (r *recording) CounterSeq(ctx context.Context, app, counter string) (int64, uint64, error) {
	r.add("counter")
	return r.Engine.(spot.Once).CounterSeq(ctx, app, counter)
}

// The first take of a stock at a PoP costs one round trip to the centre,
// not a read of its stock and a grant before the take.
func TestFirstTakeIsOneRoundTrip(t *testing.T) {
	t.Parallel()
	direct, client := centre(t)
	ctx := context.Background()
	direct.Restock(ctx, "shop", "brush", 100)
	rec := &recording{Engine: client()}
	s := newStock(t, rec, manifest(10, 30), t.TempDir())
	if tk, err := s.Take(ctx, "shop", "brush", 2); err != nil || !tk.OK || tk.Remaining != 98 {
		t.Fatalf("first take: %+v, %v", tk, err)
	}
	rec.mu.Lock()
	first := rec.calls[0]
	rec.mu.Unlock()
	if first != "take 2" {
		t.Fatalf("calls to the centre: %v; want the take first", rec.calls)
	}
	waitEscrow(t, s, "brush", 30) // the grant follows, in the background
}
