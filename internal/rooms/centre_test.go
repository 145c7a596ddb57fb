package rooms

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/store"
)

func testCentre(t *testing.T, dir string, ttl time.Duration) (*Centre, *store.Store) {
	t.Helper()
	st, err := store.Open(dir, store.Options{Origin: "c.1", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	net := &verge.Network{PoPs: []verge.PoP{{ID: "c", Region: "us", Central: true, Number: 1}, {ID: "a", Region: "eu", Number: 2}, {ID: "b", Region: "eu", Number: 3}}}
	c, err := openCentre("c", net, st, ttl, func(string) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	return c, st
}

// TestLeaseFencing: a room has one owner at a time; when the owner's
// session ends another PoP gets the room with a higher token, and the old
// owner's writes are refused from then on.
func TestLeaseFencing(t *testing.T) {
	ctx := context.Background()
	c, st := testCentre(t, t.TempDir(), 300*time.Millisecond)
	defer st.Close()
	k := Key{"chat", "chat", "r"}
	g, err := c.Acquire(ctx, k, "a", 1, "first-client")
	if err != nil || g.Owner != "a" || g.Token == 0 {
		t.Fatalf("a's acquire: %+v %v", g, err)
	}
	if g2, err := c.Acquire(ctx, k, "b", 1, "first-client"); err != nil || g2.Owner != "a" || g2.Token != 0 {
		t.Fatalf("b while a holds it: %+v %v", g2, err)
	}
	if err := c.Backup(ctx, k, g.Token, 1, []kv{{"x", []byte("1")}}, 0); err != nil {
		t.Fatal(err)
	}
	// a stops heartbeating; b heartbeats on.
	deadline := time.Now().Add(5 * time.Second)
	var gb Grant
	for {
		c.Heartbeat("b", 1)
		if gb, err = c.Acquire(ctx, k, "b", 1, "first-client"); err == nil && gb.Owner == "b" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b never got the room: %+v %v", gb, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if gb.Token <= g.Token {
		t.Fatalf("tokens must grow: %d then %d", g.Token, gb.Token)
	}
	if err := c.Backup(ctx, k, g.Token, 2, []kv{{"x", []byte("stale")}}, 0); !errors.Is(err, ErrFenced) {
		t.Fatalf("a's write after losing the room: %v", err)
	}
	if c.Heartbeat("a", 1) {
		t.Fatal("a's ended session was renewed")
	}
	state, err := c.Load(ctx, k, gb.Token)
	if err != nil || len(state) != 1 || string(state[0].v) != "1" {
		t.Fatalf("b loads %v %v", state, err)
	}
	// A PoP that restarts (new session) ends its old session at once.
	if g3, err := c.Acquire(ctx, k, "b", 2, "first-client"); err != nil || g3.Owner != "b" || g3.Token <= gb.Token {
		t.Fatalf("b's new session: %+v %v", g3, err)
	}
	if err := c.Backup(ctx, k, gb.Token, 1, nil, 0); !errors.Is(err, ErrFenced) {
		t.Fatalf("the old session's token still writes: %v", err)
	}
}

// TestLeasesSurviveTheCentre: leases and tokens are durable; after a
// restart of the centre its owners keep their rooms (a grace of one TTL)
// and tokens keep growing.
func TestLeasesSurviveTheCentre(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c, st := testCentre(t, dir, time.Second)
	k := Key{"chat", "chat", "r"}
	g, _ := c.Acquire(ctx, k, "a", 7, "first-client")
	c.Backup(ctx, k, g.Token, 1, []kv{{alarmKey + "tick", make([]byte, 8)}}, 1234)
	st.Close()
	c, st = testCentre(t, dir, time.Second)
	defer st.Close()
	if l, ok := c.Lease(k); !ok || l.Owner != "a" || l.Token != g.Token {
		t.Fatalf("after a restart: %+v %v", l, ok)
	}
	if err := c.Backup(ctx, k, g.Token, 2, nil, 1234); err != nil {
		t.Fatalf("the owner's write after the centre restarted: %v", err)
	}
	g2, _ := c.Acquire(ctx, Key{"chat", "chat", "other"}, "b", 1, "first-client")
	if g2.Token <= g.Token {
		t.Fatalf("a token was reused: %d after %d", g2.Token, g.Token)
	}
	if len(c.Orphans(time.UnixMilli(2000))) != 0 {
		t.Fatal("a room with a valid lease is not an orphan")
	}
}

func TestPlacement(t *testing.T) {
	c, st := testCentre(t, t.TempDir(), time.Second)
	defer st.Close()
	for _, tc := range []struct{ placement, asker, want string }{
		{"first-client", "b", "b"}, {"central", "b", "c"}, {"eu", "c", "a"}, {"eu", "b", "b"}, {"mars", "b", "b"},
	} {
		if got := c.place(tc.placement, tc.asker); got != tc.want {
			t.Errorf("place(%q, %q) = %q, want %q", tc.placement, tc.asker, got, tc.want)
		}
	}
}

func TestMergeBatches(t *testing.T) {
	got := mergeBatches([]batch{{1, []kv{{"a", []byte("1")}, {"b", []byte("1")}}}, {2, []kv{{"a", nil}, {"c", []byte("3")}}}})
	if len(got) != 3 || got[0].k != "a" || got[0].v != nil || got[2].k != "c" {
		t.Fatalf("%+v", got)
	}
}

// TestBackupsApplyInOrder: pipelined backups of one lease are applied in
// their numbers' order whatever order they arrive in; a retry of one
// already applied changes nothing; one whose predecessor never comes
// fails rather than being applied out of order.
func TestBackupsApplyInOrder(t *testing.T) {
	ctx := context.Background()
	c, st := testCentre(t, t.TempDir(), time.Minute)
	defer st.Close()
	k := Key{"chat", "chat", "r"}
	g, err := c.Acquire(ctx, k, "a", 7, "first-client")
	if err != nil {
		t.Fatal(err)
	}
	second := make(chan error, 1)
	go func() { second <- c.Backup(ctx, k, g.Token, 2, []kv{{"x", []byte("2")}}, 0) }()
	select {
	case err := <-second:
		t.Fatalf("backup 2 finished before backup 1 came: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := c.Backup(ctx, k, g.Token, 1, []kv{{"x", []byte("1")}}, 0); err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	if err := c.Backup(ctx, k, g.Token, 1, []kv{{"x", []byte("1")}}, 0); err != nil {
		t.Fatalf("a retry of backup 1: %v", err)
	}
	if state, err := c.Load(ctx, k, g.Token); err != nil || len(state) != 1 || string(state[0].v) != "2" {
		t.Fatalf("state after backups 2, 1 and 1 again: %v %v", state, err)
	}
	tctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := c.Backup(tctx, k, g.Token, 4, []kv{{"x", []byte("4")}}, 0); err == nil {
		t.Fatal("backup 4 applied without backup 3")
	}
	if state, _ := c.Load(ctx, k, g.Token); string(state[0].v) != "2" {
		t.Fatalf("backup 4 applied without backup 3: %v", state)
	}
}

// TestReacquireFencesTheOldObject: an owner that asks again for a room it
// holds (its room object there stopped without giving the lease back)
// gets a new token, and backups still in flight under the old one are
// refused rather than taken for retries of the new object's.
func TestReacquireFencesTheOldObject(t *testing.T) {
	ctx := context.Background()
	c, st := testCentre(t, t.TempDir(), time.Minute)
	defer st.Close()
	k := Key{"chat", "chat", "r"}
	g1, err := c.Acquire(ctx, k, "a", 7, "first-client")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Backup(ctx, k, g1.Token, 1, []kv{{"x", []byte("old")}}, 0); err != nil {
		t.Fatal(err)
	}
	g2, err := c.Acquire(ctx, k, "a", 7, "first-client")
	if err != nil || g2.Owner != "a" || g2.Token <= g1.Token {
		t.Fatalf("the owner asking again: %+v %v (first token %d)", g2, err, g1.Token)
	}
	if err := c.Backup(ctx, k, g2.Token, 1, []kv{{"x", []byte("new")}}, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Backup(ctx, k, g1.Token, 2, []kv{{"x", []byte("stale")}}, 0); !errors.Is(err, ErrFenced) {
		t.Fatalf("a backup under the old token: %v, want ErrFenced", err)
	}
	if state, _ := c.Load(ctx, k, g2.Token); len(state) != 1 || string(state[0].v) != "new" {
		t.Fatalf("state: %v", state)
	}
}
