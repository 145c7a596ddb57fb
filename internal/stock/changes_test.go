package stock

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/verge-edge/verge/internal/spot"
)

// lossyCentre is a SPOT centre reached through a relay that can lose the
// answers: the centre applies the change, the answer never arrives.
type lossyCentre struct {
	direct spot.Engine
	url    string
	drop   atomic.Int32 // answers to changes to lose, one by one
	hole   atomic.Bool  // lose every answer
}

func newLossyCentre(t *testing.T) *lossyCentre {
	t.Helper()
	js, nc, url := serveCentre(t, "real")
	l := &lossyCentre{direct: js, url: url}
	sub, err := nc.Subscribe("lossy.*", func(m *nats.Msg) {
		go func() {
			r, err := nc.Request("real"+m.Subject[len("lossy"):], m.Data, 5*time.Second)
			if err != nil || l.hole.Load() {
				return
			}
			// Only changes lose their answers: reads have none to settle.
			op := m.Subject[len("lossy."):]
			if (op == "take" || op == "restock" || strings.HasSuffix(op, "once")) && l.drop.Add(-1) >= 0 {
				return
			}
			m.Respond(r.Data)
		}()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	nc.Flush()
	return l
}

// client is an edge PoP's engine through the relay.
func (l *lossyCentre) client(t *testing.T, timeout time.Duration) spot.Engine {
	t.Helper()
	nc, err := nats.Connect(l.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return spot.NewClient(nc, "lossy", timeout)
}

// total is what the centre holds plus the escrow.
func total(t *testing.T, l *lossyCentre, s *Stock) int64 {
	t.Helper()
	n, err := l.direct.Counter(context.Background(), "shop", "brush")
	if err != nil {
		t.Fatal(err)
	}
	return n + s.Escrowed("shop", "brush")
}

// settled waits until the PoP has no change of brush pending.
func settled(t *testing.T, s *Stock) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); s.Pending("shop", "brush") > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%d changes still pending after 10s", s.Pending("shop", "brush"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A grant whose answer is lost is credited to the escrow once: the PoP
// resends it with its id and the centre answers the resend with the
// grant it gave, instead of giving it again or the PoP losing it.
func TestLostGrantAnswer(t *testing.T) {
	t.Parallel()
	l := newLossyCentre(t)
	ctx := context.Background()
	l.direct.Restock(ctx, "shop", "brush", 500)
	s := newStock(t, l.client(t, 200*time.Millisecond), manifest(10, 40), t.TempDir())
	// Learn the centre's stock first (the first take is served there).
	if tk, err := s.Take(ctx, "shop", "brush", 1); err != nil || !tk.OK {
		t.Fatalf("first take: %+v, %v", tk, err)
	}
	waitEscrow(t, s, "brush", 40)
	settled(t, s)
	// Sell the escrow down: the refill that follows loses its answer.
	l.drop.Store(1)
	for range 25 {
		if tk, err := s.Take(ctx, "shop", "brush", 1); err != nil || !tk.OK {
			t.Fatalf("take: %+v, %v", tk, err)
		}
	}
	// The refill starts in the background.
	for deadline := time.Now().Add(10 * time.Second); l.drop.Load() > 0; {
		if time.Now().After(deadline) {
			t.Fatal("no answer was lost: the test did not test anything")
		}
		time.Sleep(5 * time.Millisecond)
	}
	settled(t, s)
	if got := total(t, l, s); got != 500-26 {
		t.Fatalf("centre + escrow = %d after 26 sold of 500, want %d: a grant was lost or doubled", got, 500-26)
	}
}

// A return of the escrow whose answer is lost reaches the centre once.
func TestLostReturnAnswer(t *testing.T) {
	t.Parallel()
	l := newLossyCentre(t)
	ctx := context.Background()
	l.direct.Restock(ctx, "shop", "brush", 100)
	s := newStock(t, l.client(t, 200*time.Millisecond), manifest(50, 30), t.TempDir())
	s.Take(ctx, "shop", "brush", 1)
	waitEscrow(t, s, "brush", 30)
	settled(t, s)
	// Below the threshold the escrow goes back; its answer is lost.
	l.drop.Store(1)
	if _, err := l.direct.Take(ctx, "shop", "brush", 30); err != nil {
		t.Fatal(err)
	}
	waitEscrow(t, s, "brush", 0)
	settled(t, s)
	if got, _ := l.direct.Counter(ctx, "shop", "brush"); got != 100-1-30 {
		t.Fatalf("the centre holds %d after the return, want %d", got, 100-1-30)
	}
}

// A take at the centre for a caller whose answer never comes: the caller
// is told it did not get the units (not "maybe"), and the units the
// centre took go into the escrow once the PoP learns of them.
func TestLostCallerTake(t *testing.T) {
	t.Parallel()
	l := newLossyCentre(t)
	ctx := context.Background()
	l.direct.Restock(ctx, "shop", "brush", 20)
	// Threshold 100: every take is a take at the centre.
	s := newStock(t, l.client(t, 100*time.Millisecond), manifest(100, 10), t.TempDir())
	l.hole.Store(true)
	tctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err := s.Take(tctx, "shop", "brush", 3)
	cancel()
	if err == nil || errors.Is(err, spot.ErrUnknownOutcome) || !errors.Is(err, spot.ErrUnavailable) {
		t.Fatalf("take without an answer: %v; want unavailable, not unknown", err)
	}
	l.hole.Store(false)
	settled(t, s)
	// The units the centre took are here until the rebalancer gives the
	// escrow back (the stock is below its threshold).
	for deadline := time.Now().Add(10 * time.Second); ; {
		if got := total(t, l, s); got == 20 && s.Escrowed("shop", "brush") == 0 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("centre + escrow = %d (escrow %d), want 20 all at the centre", got, s.Escrowed("shop", "brush"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A PoP that crashes with a grant sent and unanswered resends it when it
// starts again, and credits it once.
func TestGrantPendingAcrossRestart(t *testing.T) {
	t.Parallel()
	l := newLossyCentre(t)
	ctx := context.Background()
	l.direct.Restock(ctx, "shop", "brush", 300)
	dir := t.TempDir()
	s1 := newStock(t, l.client(t, 100*time.Millisecond), manifest(10, 50), dir)
	s1.Take(ctx, "shop", "brush", 1)
	waitEscrow(t, s1, "brush", 50)
	settled(t, s1)
	// Every answer is lost from now on: the next grant stays pending.
	l.hole.Store(true)
	for range 30 {
		if _, err := s1.Take(ctx, "shop", "brush", 1); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); s1.Pending("shop", "brush") == 0; {
		if time.Now().After(deadline) {
			t.Fatal("no grant was sent")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The centre applied it (the relay loses only the answer).
	for deadline := time.Now().Add(10 * time.Second); ; {
		if n, _ := l.direct.Counter(ctx, "shop", "brush"); n < 300-1-50 {
			break
		} else if time.Now().After(deadline) {
			t.Fatal("the centre never gave the second grant")
		}
		time.Sleep(5 * time.Millisecond)
	}
	s1.Close()
	s1.opts.Store.Close()
	l.hole.Store(false)
	s2 := newStock(t, l.client(t, 200*time.Millisecond), manifest(10, 50), dir)
	if s2.Pending("shop", "brush") == 0 {
		t.Fatal("the pending grant was not stored with the escrow")
	}
	settled(t, s2)
	if got := total(t, l, s2); got != 300-31 {
		t.Fatalf("centre + escrow = %d after 31 sold of 300 and a restart, want %d", got, 300-31)
	}
}

func TestEscrowRecord(t *testing.T) {
	pend := []*change{{kind: chTake, id: spot.OpID{Client: 3, Seq: 9, Base: 4}, n: 50}, {kind: chRestock, id: spot.OpID{Client: 3, Seq: 10}, n: 7}}
	units, got, err := decodeEscrow(encodeEscrow(12, pend))
	if err != nil || units != 12 || len(got) != 2 || got[0].id != (spot.OpID{Client: 3, Seq: 9, Base: 4, Resend: true}) || got[1].n != 7 || got[1].kind != chRestock {
		t.Fatalf("round trip: %d %+v %v", units, got, err)
	}
	if units, got, err := decodeEscrow(encodeEscrow(5, nil)); err != nil || units != 5 || len(got) != 0 || len(encodeEscrow(5, nil)) != 8 {
		t.Fatalf("no changes: %d %v %v", units, got, err)
	}
	b := encodeEscrow(12, pend)
	for i := range len(b) - 1 {
		if i == 8 { // 8 bytes are the old format
			continue
		}
		if _, _, err := decodeEscrow(b[:i]); err == nil {
			t.Fatalf("truncated at %d: no error", i)
		}
	}
	if _, _, err := decodeEscrow(append(b, 0)); err == nil {
		t.Fatal("trailing byte: no error")
	}
}
