package spot

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// lossy relays requests on <from>.* to <to>.* and drops the answer of the
// first drop of them: the centre applied the change, its answer never
// arrived.
func lossy(t *testing.T, nc *nats.Conn, from, to string, drop *atomic.Int32) {
	t.Helper()
	sub, err := nc.Subscribe(from+".*", func(m *nats.Msg) {
		r, err := nc.Request(to+m.Subject[len(from):], m.Data, 5*time.Second)
		if err != nil {
			return
		}
		if drop.Add(-1) >= 0 {
			return
		}
		m.Respond(r.Data)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// A take and a restock whose answers are lost are applied once however
// often they are resent with their id, and answered as the first send was.
func TestOnceLostAnswer(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	e := newEngine(t, s, Config{Shards: 1})
	serve(t, s, e, "real")
	var drop atomic.Int32
	lossy(t, inProcess(t, s), "lossy", "real", &drop)
	c := NewClient(connect(t, s.ClientURL()), "lossy", 300*time.Millisecond).(Once)
	ctx := testCtx(t)
	if _, err := e.Restock(ctx, "shop", "brush", 10); err != nil {
		t.Fatal(err)
	}
	_, base, err := c.CounterSeq(ctx, "shop", "brush")
	if err != nil || base != 1 {
		t.Fatalf("CounterSeq: write sequence %d, %v; want 1", base, err)
	}

	drop.Store(1)
	id := OpID{Client: 7, Seq: 1, Base: base}
	if _, err := c.TakeOnce(ctx, "shop", "brush", 3, id); !errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("take whose answer was dropped: %v, want an unknown outcome", err)
	}
	if n, _ := e.Counter(ctx, "shop", "brush"); n != 7 {
		t.Fatalf("the centre holds %d after the lost take, want 7 (applied)", n)
	}
	id.Resend = true
	for range 3 {
		tk, err := c.TakeOnce(ctx, "shop", "brush", 3, id)
		if err != nil || !tk.OK || tk.Remaining != 7 || tk.Seq != 2 {
			t.Fatalf("resent take: %+v, %v; want OK, 7 remaining, write 2", tk, err)
		}
	}
	if n, _ := e.Counter(ctx, "shop", "brush"); n != 7 {
		t.Fatalf("the centre holds %d after the resends, want 7 (applied once)", n)
	}

	drop.Store(1)
	rid := OpID{Client: 7, Seq: 2, Base: 2}
	if _, _, err := c.RestockOnce(ctx, "shop", "brush", 5, rid); !errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("restock whose answer was dropped: %v", err)
	}
	rid.Resend = true
	for range 2 {
		rem, seq, err := c.RestockOnce(ctx, "shop", "brush", 5, rid)
		if err != nil || rem != 12 || seq != 3 {
			t.Fatalf("resent restock: %d at write %d, %v; want 12 at write 3", rem, seq, err)
		}
	}

	// A resend whose first send never reached the centre is applied now:
	// the window holds every write since its base and not it.
	tk, err := c.TakeOnce(ctx, "shop", "brush", 2, OpID{Client: 7, Seq: 3, Base: 3, Resend: true})
	if err != nil || !tk.OK || tk.Remaining != 10 {
		t.Fatalf("resend of a change never applied: %+v, %v; want it applied (10 remaining)", tk, err)
	}
	// A take refused for want of stock writes nothing; resent, it is
	// decided again.
	tk, err = c.TakeOnce(ctx, "shop", "brush", 50, OpID{Client: 7, Seq: 4, Base: 4})
	if err != nil || tk.OK || tk.Remaining != 10 {
		t.Fatalf("take of more than the stock: %+v, %v", tk, err)
	}

	// More writes than the window holds since the base: the centre cannot
	// tell, and says so instead of applying the change again.
	for range window + 1 {
		if _, err := e.Restock(ctx, "shop", "brush", 1); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := e.Counter(ctx, "shop", "brush")
	_, err = c.TakeOnce(ctx, "shop", "brush", 3, OpID{Client: 7, Seq: 1, Base: base, Resend: true})
	if !errors.Is(err, ErrForgotten) || !errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("resend older than the window: %v, want ErrForgotten", err)
	}
	if after, _ := e.Counter(ctx, "shop", "brush"); after != before {
		t.Fatalf("a forgotten resend changed the stock: %d -> %d", before, after)
	}

	// Ids are the client's: a zero one is refused, not applied.
	if _, err := c.TakeOnce(ctx, "shop", "brush", 1, OpID{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("zero id: %v", err)
	}
	if b := handle(e, opTakeOnce, []byte{wireVersion, 10, 4, 's', 'h', 'o', 'p', 1, 'x', 2, 0, 1}); b[1] != stInvalid {
		t.Fatalf("take with a zero client id: status %d, want invalid", b[1])
	}
	if b := handle(e, opTakeOnce, []byte{wireVersion, 10, 4, 's', 'h', 'o', 'p', 1, 'x', 2, 5, 1, 7}); b[1] != stInvalid {
		t.Fatalf("take with a truncated id: status %d, want invalid", b[1])
	}
}

// Inside one batch, an original and its resend (the client gave up on the
// first while it was queued) are applied once.
func TestOnceResendInBatch(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	e := newEngine(t, s, Config{Shards: 1})
	ctx := testCtx(t)
	if _, err := e.Restock(ctx, "shop", "mug", 100); err != nil {
		t.Fatal(err)
	}
	id := OpID{Client: 9, Seq: 1, Base: 1}
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			id := id
			id.Resend = i > 0
			_, err := e.TakeOnce(ctx, "shop", "mug", 5, id)
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := e.Counter(ctx, "shop", "mug"); n != 95 {
		t.Fatalf("one take sent eight times left %d, want 95", n)
	}
}

// plainEngine hides Once: a centre that predates changes by id.
type plainEngine struct{ Engine }

// Against a centre without changes by id, a first send falls back to the
// plain operation and a resend is answered "forgotten", never applied.
func TestOnceOlderCentre(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	e := newEngine(t, s, Config{Shards: 1})
	serve(t, s, plainEngine{e}, "old")
	c := NewClient(connect(t, s.ClientURL()), "old", 2*time.Second).(Once)
	ctx := testCtx(t)
	if rem, _, err := c.RestockOnce(ctx, "shop", "cup", 10, OpID{Client: 3, Seq: 1}); err != nil || rem != 10 {
		t.Fatalf("first send of a restock: %d, %v", rem, err)
	}
	if tk, err := c.TakeOnce(ctx, "shop", "cup", 4, OpID{Client: 3, Seq: 2}); err != nil || !tk.OK || tk.Remaining != 6 {
		t.Fatalf("first send of a take: %+v, %v", tk, err)
	}
	if _, err := c.TakeOnce(ctx, "shop", "cup", 4, OpID{Client: 3, Seq: 2, Resend: true}); !errors.Is(err, ErrForgotten) {
		t.Fatalf("resend to an older centre: %v, want ErrForgotten", err)
	}
	if rem, seq, err := c.CounterSeq(ctx, "shop", "cup"); err != nil || rem != 6 || seq != 0 {
		t.Fatalf("CounterSeq from an older centre: %d at %d, %v; want 6 and no sequence", rem, seq, err)
	}
}
