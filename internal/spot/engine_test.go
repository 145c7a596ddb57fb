package spot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/verge-edge/verge/crdt"
)

// engines returns the engine used directly and a client talking to it
// through Serve over loopback TCP: every semantic test runs on both.
func engines(t *testing.T) map[string]Engine {
	s := newServer(t)
	served := newEngine(t, s, Config{Bucket: "served"})
	serve(t, s, served, "spot")
	nc := connect(t, s.ClientURL())
	return map[string]Engine{
		"engine": newEngine(t, s, Config{Bucket: "direct"}),
		"client": NewClient(nc, "spot", 5*time.Second),
	}
}

func TestClaimRelease(t *testing.T) {
	t.Parallel()
	for name, e := range engines(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			claim := func(ns, key, owner string, want Claim) {
				t.Helper()
				got, err := e.Claim(ctx, "app", ns, key, owner)
				if err != nil || got != want {
					t.Fatalf("Claim(%q, %q, %q) = %+v, %v; want %+v", ns, key, owner, got, err, want)
				}
			}
			release := func(ns, key, owner string, want bool) {
				t.Helper()
				got, err := e.Release(ctx, "app", ns, key, owner)
				if err != nil || got != want {
					t.Fatalf("Release(%q, %q, %q) = %v, %v; want %v", ns, key, owner, got, err, want)
				}
			}
			claim("users", "joe", "alice", Claim{true, "alice"})
			claim("users", "joe", "bob", Claim{false, "alice"})
			claim("users", "joe", "alice", Claim{true, "alice"}) // idempotent
			release("users", "joe", "bob", false)
			claim("users", "joe", "bob", Claim{false, "alice"})
			release("users", "joe", "alice", true)
			release("users", "joe", "alice", false)
			claim("users", "joe", "bob", Claim{true, "bob"})
			// Namespaces and names are independent, whatever their bytes.
			claim("", "joe", "carol", Claim{true, "carol"})
			claim("emails", "joe", "dave", Claim{true, "dave"})
			for _, k := range []string{"a.b", "a..b", ".", "*", ">", "ключ", "名前", " ", "a/b=c", strings.Repeat("x", MaxKey)} {
				owner := "o:" + k[:min(len(k), 16)]
				claim("users", k, owner, Claim{true, owner})
				claim("users", k, "other", Claim{false, owner})
			}
			claim("users", "joe", "erin", Claim{false, "bob"})
		})
	}
}

func TestTakeRestock(t *testing.T) {
	t.Parallel()
	for name, e := range engines(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			take := func(n int64, want Take) {
				t.Helper()
				got, err := e.Take(ctx, "shop", "sku-1", n)
				if err != nil || got != want {
					t.Fatalf("Take(%d) = %+v, %v; want %+v", n, got, err, want)
				}
			}
			restock := func(n, want int64) {
				t.Helper()
				got, err := e.Restock(ctx, "shop", "sku-1", n)
				if err != nil || got != want {
					t.Fatalf("Restock(%d) = %d, %v; want %d", n, got, err, want)
				}
			}
			counter := func(want int64) {
				t.Helper()
				got, err := e.Counter(ctx, "shop", "sku-1")
				if err != nil || got != want {
					t.Fatalf("Counter = %d, %v; want %d", got, err, want)
				}
			}
			counter(0)
			take(1, Take{OK: false, Remaining: 0})
			counter(0)
			restock(5, 5)
			take(3, Take{OK: true, Remaining: 2})
			take(3, Take{OK: false, Remaining: 2})
			counter(2)
			take(2, Take{OK: true, Remaining: 0})
			take(1, Take{OK: false, Remaining: 0})
			restock(math.MaxInt64, math.MaxInt64)
			_, err := e.Restock(ctx, "shop", "sku-1", 1)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "overflow") {
				t.Fatalf("Restock past MaxInt64: %v; want an overflow error", err)
			}
			counter(math.MaxInt64)
			take(math.MaxInt64, Take{OK: true, Remaining: 0})
			// Another counter of the same app is independent.
			if n, err := e.Counter(ctx, "shop", "sku-2"); n != 0 || err != nil {
				t.Fatalf("Counter(sku-2) = %d, %v", n, err)
			}
		})
	}
}

func TestUpdateDoc(t *testing.T) {
	t.Parallel()
	for name, e := range engines(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			doc, rev, err := e.GetDoc(ctx, "shop", "order/1")
			if doc != nil || rev != 0 || err != nil {
				t.Fatalf("GetDoc(missing) = %s, %d, %v", doc, rev, err)
			}
			set := []crdt.Op{{Op: "set", Path: "status", Value: json.RawMessage(`"open"`)}, {Op: "set", Path: "items", Value: json.RawMessage(`[]`)}}
			_, _, err = e.UpdateDoc(ctx, "shop", "order/1", 1, set)
			var ce *ConflictError
			if !errors.As(err, &ce) || ce.Current != 0 || ce.Expected != 1 || !errors.Is(err, ErrConflict) {
				t.Fatalf("UpdateDoc(rev 1) on a missing document: %v; want a conflict at 0", err)
			}
			doc, rev, err = e.UpdateDoc(ctx, "shop", "order/1", 0, set)
			if err != nil || rev != 1 || string(doc) != `{"items":[],"status":"open"}` {
				t.Fatalf("create = %s, %d, %v", doc, rev, err)
			}
			_, _, err = e.UpdateDoc(ctx, "shop", "order/1", 0, set)
			if !errors.As(err, &ce) || ce.Current != 1 {
				t.Fatalf("create again: %v; want a conflict at 1", err)
			}
			add := []crdt.Op{{Op: "append", Path: "items", Value: json.RawMessage(`{"sku":"a","qty":2}`)}, {Op: "increment", Path: "total", Value: json.RawMessage(`7`)}}
			doc, rev, err = e.UpdateDoc(ctx, "shop", "order/1", 1, add)
			if err != nil || rev != 2 || string(doc) != `{"items":[{"qty":2,"sku":"a"}],"status":"open","total":7}` {
				t.Fatalf("update = %s, %d, %v", doc, rev, err)
			}
			// An op that fails leaves the document and its revision alone.
			bad := []crdt.Op{{Op: "set", Path: "status", Value: json.RawMessage(`"paid"`)}, {Op: "increment", Path: "status", Value: json.RawMessage(`1`)}}
			if _, _, err = e.UpdateDoc(ctx, "shop", "order/1", 2, bad); !errors.Is(err, ErrInvalid) {
				t.Fatalf("failing op: %v; want ErrInvalid", err)
			}
			got, grev, err := e.GetDoc(ctx, "shop", "order/1")
			if err != nil || grev != 2 || string(got) != string(doc) {
				t.Fatalf("GetDoc = %s, %d, %v; want %s at 2", got, grev, err, doc)
			}
			if _, _, err = e.UpdateDoc(ctx, "shop", "order/1", 1, add); !errors.As(err, &ce) || ce.Current != 2 {
				t.Fatalf("stale update: %v; want a conflict at 2", err)
			}
		})
	}
}

func TestValidation(t *testing.T) {
	t.Parallel()
	long := func(n int) string { return strings.Repeat("a", n) }
	ok := []crdt.Op{{Op: "set", Path: "a", Value: json.RawMessage(`1`)}}
	tooMany := make([]crdt.Op, MaxOps+1)
	for i := range tooMany {
		tooMany[i] = ok[0]
	}
	cases := []struct {
		name string
		call func(context.Context, Engine) error
	}{
		{"empty app", func(c context.Context, e Engine) error { _, err := e.Claim(c, "", "ns", "k", "o"); return err }},
		{"empty key", func(c context.Context, e Engine) error { _, err := e.Claim(c, "a", "ns", "", "o"); return err }},
		{"empty owner", func(c context.Context, e Engine) error { _, err := e.Release(c, "a", "ns", "k", ""); return err }},
		{"long app", func(c context.Context, e Engine) error {
			_, err := e.Claim(c, long(MaxApp+1), "", "k", "o")
			return err
		}},
		{"long ns", func(c context.Context, e Engine) error {
			_, err := e.Claim(c, "a", long(MaxNS+1), "k", "o")
			return err
		}},
		{"long key", func(c context.Context, e Engine) error {
			_, err := e.Claim(c, "a", "", long(MaxKey+1), "o")
			return err
		}},
		{"long owner", func(c context.Context, e Engine) error {
			_, err := e.Claim(c, "a", "", "k", long(MaxOwner+1))
			return err
		}},
		{"bad utf8", func(c context.Context, e Engine) error { _, err := e.Claim(c, "a", "", "k\xff", "o"); return err }},
		{"take 0", func(c context.Context, e Engine) error { _, err := e.Take(c, "a", "c", 0); return err }},
		{"take -1", func(c context.Context, e Engine) error { _, err := e.Take(c, "a", "c", -1); return err }},
		{"restock 0", func(c context.Context, e Engine) error { _, err := e.Restock(c, "a", "c", 0); return err }},
		{"restock min", func(c context.Context, e Engine) error { _, err := e.Restock(c, "a", "c", math.MinInt64); return err }},
		{"empty counter", func(c context.Context, e Engine) error { _, err := e.Counter(c, "a", ""); return err }},
		{"long counter", func(c context.Context, e Engine) error { _, err := e.Take(c, "a", long(MaxKey+1), 1); return err }},
		{"empty doc key", func(c context.Context, e Engine) error { _, _, err := e.GetDoc(c, "a", ""); return err }},
		{"no ops", func(c context.Context, e Engine) error { _, _, err := e.UpdateDoc(c, "a", "d", 0, nil); return err }},
		{"too many ops", func(c context.Context, e Engine) error { _, _, err := e.UpdateDoc(c, "a", "d", 0, tooMany); return err }},
		{"big ops", func(c context.Context, e Engine) error {
			_, _, err := e.UpdateDoc(c, "a", "d", 0, []crdt.Op{{Op: "set", Path: "a", Value: json.RawMessage(`"` + long(MaxOpsBytes) + `"`)}})
			return err
		}},
		{"unknown op", func(c context.Context, e Engine) error {
			_, _, err := e.UpdateDoc(c, "a", "d", 0, []crdt.Op{{Op: "frobnicate", Path: "a"}})
			return err
		}},
		{"bad value", func(c context.Context, e Engine) error {
			_, _, err := e.UpdateDoc(c, "a", "d", 0, []crdt.Op{{Op: "set", Path: "a", Value: json.RawMessage(`{`)}})
			return err
		}},
		{"doc too large", func(c context.Context, e Engine) error {
			// Each update is within MaxOpsBytes; together they pass MaxDocBytes.
			for rev := uint64(0); rev < 8; rev++ {
				ops := make([]crdt.Op, 8)
				for i := range ops {
					ops[i] = crdt.Op{Op: "set", Path: fmt.Sprintf("k%d_%d", rev, i), Value: json.RawMessage(`"` + long(MaxOpsBytes/8-16) + `"`)}
				}
				if _, _, err := e.UpdateDoc(c, "a", "big", rev, ops); err != nil {
					return err
				}
			}
			return nil
		}},
	}
	for name, e := range engines(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			for _, c := range cases {
				err := c.call(ctx, e)
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("%s: %v; want ErrInvalid", c.name, err)
				}
			}
			// Nothing invalid was stored.
			if doc, rev, err := e.GetDoc(ctx, "a", "d"); doc != nil || rev != 0 || err != nil {
				t.Errorf("GetDoc after invalid updates = %s, %d, %v", doc, rev, err)
			}
			if n, err := e.Counter(ctx, "a", "c"); n != 0 || err != nil {
				t.Errorf("Counter after invalid calls = %d, %v", n, err)
			}
		})
	}
}

// TestStaleCache runs two engines on one bucket, as three central servers
// would: each one's cached value goes stale under the other's writes, its
// compare-and-set is refused, and it must re-read, never decide from the
// cache or the refusal.
func TestStaleCache(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	a, b := newEngine(t, s, Config{}), newEngine(t, s, Config{})
	ctx := testCtx(t)
	if _, err := a.Restock(ctx, "app", "c", 10); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Take(ctx, "app", "c", 4); err != nil || got != (Take{OK: true, Remaining: 6}) {
		t.Fatalf("b.Take = %+v, %v", got, err)
	}
	// a's cache says 10: the write it bases on it must be refused.
	if got, err := a.Take(ctx, "app", "c", 7); err != nil || got != (Take{OK: false, Remaining: 6}) {
		t.Fatalf("a.Take(7) = %+v, %v; want not enough, 6", got, err)
	}
	if got, err := a.Take(ctx, "app", "c", 6); err != nil || got != (Take{OK: true, Remaining: 0}) {
		t.Fatalf("a.Take(6) = %+v, %v", got, err)
	}
	if c, err := a.Claim(ctx, "app", "", "k", "x"); err != nil || !c.Claimed {
		t.Fatalf("a.Claim = %+v, %v", c, err)
	}
	if ok, err := b.Release(ctx, "app", "", "k", "x"); err != nil || !ok {
		t.Fatalf("b.Release = %v, %v", ok, err)
	}
	// a's cache says "x": it must not report the key as taken.
	if c, err := a.Claim(ctx, "app", "", "k", "y"); err != nil || c != (Claim{true, "y"}) {
		t.Fatalf("a.Claim(y) = %+v, %v; want claimed", c, err)
	}
	// Now both hammer one counter and one key.
	if _, err := a.Restock(ctx, "app", "hot", 500); err != nil {
		t.Fatal(err)
	}
	var took atomic.Int64
	var wg sync.WaitGroup
	for i := range 8 {
		e := a
		if i%2 == 1 {
			e = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 80 {
				r, err := e.Take(ctx, "app", "hot", 1)
				if err != nil {
					t.Error(err)
					return
				}
				if r.OK {
					took.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n, err := a.Counter(ctx, "app", "hot"); err != nil || n != 0 || took.Load() != 500 {
		t.Fatalf("after 640 takes of 500: counter %d (%v), %d taken; want 0 and 500", n, err, took.Load())
	}
	if a.refusals.Load()+b.refusals.Load() == 0 {
		t.Fatal("no compare-and-set was refused: the retry path was not exercised")
	}
}

// flakyKV loses the outcome of chosen writes, as a timeout or a lost
// connection does: the write commits (or not) and the engine gets an error.
type flakyKV struct {
	jetstream.KeyValue
	mu sync.Mutex
	// plan is consumed one entry per Update: "commit" commits and reports
	// a timeout, "drop" reports a timeout without writing, "" passes.
	plan []string
	// after runs after a write whose outcome is lost.
	after func()
	// slowStarted is closed when a "slow" write begins.
	slowStarted chan struct{}
}

func (f *flakyKV) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	f.mu.Lock()
	step := ""
	if len(f.plan) > 0 {
		step, f.plan = f.plan[0], f.plan[1:]
	}
	after := f.after
	f.mu.Unlock()
	switch step {
	case "slow":
		if f.slowStarted != nil {
			close(f.slowStarted)
		}
		time.Sleep(300 * time.Millisecond)
		return f.KeyValue.Update(ctx, key, value, rev)
	case "commit":
		if _, err := f.KeyValue.Update(ctx, key, value, rev); err != nil {
			return 0, err
		}
	case "drop":
	default:
		return f.KeyValue.Update(ctx, key, value, rev)
	}
	if after != nil {
		after()
	}
	return 0, context.DeadlineExceeded
}

func flaky(e *JetStream, plan ...string) *flakyKV {
	// One shard, so that the plan applies to every write in order.
	if len(e.shards) != 1 {
		panic("flaky needs an engine with one shard")
	}
	f := &flakyKV{KeyValue: e.shards[0].kv, plan: plan}
	e.shards[0].kv = f
	return f
}

// TestLostWriteOutcome checks the idempotency window: a write whose
// acknowledgement is lost is found by its op id and never applied twice,
// and when too many later writes hide it the engine says it does not know.
func TestLostWriteOutcome(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	// Each subtest has its own context: parallel subtests may wait for a
	// slot longer than a context made here would last.

	t.Run("take", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		e := newEngine(t, s, Config{Bucket: "take", Shards: 1})
		if _, err := e.Restock(ctx, "a", "c", 10); err != nil {
			t.Fatal(err)
		}
		flaky(e, "commit", "drop", "drop")
		for i, want := range []Take{{OK: true, Remaining: 7}, {OK: true, Remaining: 4}} {
			got, err := e.Take(ctx, "a", "c", 3)
			if err != nil || got != want {
				t.Fatalf("take %d = %+v, %v; want %+v", i, got, err, want)
			}
		}
		if n, _ := e.Counter(ctx, "a", "c"); n != 4 {
			t.Fatalf("counter %d after two takes of 3 from 10", n)
		}
		if e.ambiguous.Load() != 3 {
			t.Fatalf("%d ambiguous writes, want 3", e.ambiguous.Load())
		}
	})
	t.Run("claim", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		e := newEngine(t, s, Config{Bucket: "claim", Shards: 1})
		flaky(e, "commit")
		if c, err := e.Claim(ctx, "a", "", "k", "o"); err != nil || c != (Claim{true, "o"}) {
			t.Fatalf("claim = %+v, %v", c, err)
		}
		flaky(e, "commit")
		if ok, err := e.Release(ctx, "a", "", "k", "o"); err != nil || !ok {
			t.Fatalf("release = %v, %v; want released once, reported true", ok, err)
		}
	})
	t.Run("doc", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		e := newEngine(t, s, Config{Bucket: "doc", Shards: 1})
		flaky(e, "commit")
		doc, rev, err := e.UpdateDoc(ctx, "a", "d", 0, []crdt.Op{{Op: "increment", Path: "n", Value: json.RawMessage(`1`)}})
		if err != nil || rev != 1 || string(doc) != `{"n":1}` {
			// Without the window the retry would see revision 1 and
			// report a conflict with its own write.
			t.Fatalf("update = %s, %d, %v; want {\"n\":1} at 1", doc, rev, err)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		e := newEngine(t, s, Config{Bucket: "canceled", Shards: 1})
		if _, err := e.Restock(ctx, "a", "c", 10); err != nil {
			t.Fatal(err)
		}
		f := flaky(e, "slow")
		f.slowStarted = make(chan struct{})
		// A's caller gives up while A is being written: unknown, and in
		// fact applied. B's gives up while B waits behind A: not applied.
		aErr := make(chan error, 1)
		go func() {
			actx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			_, err := e.Take(actx, "a", "c", 1)
			aErr <- err
		}()
		select { // A is being written; B queues behind it
		case <-f.slowStarted:
		case <-ctx.Done():
			t.Fatal("A's write never started")
		}
		bctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
		defer cancel()
		_, err := e.Take(bctx, "a", "c", 5)
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrUnknownOutcome) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("take canceled while queued: %v; want ErrUnavailable only", err)
		}
		if err := <-aErr; !errors.Is(err, ErrUnknownOutcome) {
			t.Fatalf("take canceled while written: %v; want ErrUnknownOutcome", err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			n, err := e.Counter(ctx, "a", "c")
			if err != nil {
				t.Fatal(err)
			}
			if n == 9 {
				break
			}
			if n != 10 || time.Now().After(deadline) {
				t.Fatalf("counter %d; want 9: A applied, B not", n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	t.Run("hidden", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		e := newEngine(t, s, Config{Bucket: "hidden", Shards: 1})
		other := newEngine(t, s, Config{Bucket: "hidden", Shards: 1})
		if _, err := e.Restock(ctx, "a", "c", 100); err != nil {
			t.Fatal(err)
		}
		f := flaky(e, "commit")
		f.after = func() {
			for range window + 1 {
				if _, err := other.Restock(ctx, "a", "c", 1); err != nil {
					t.Error(err)
				}
			}
		}
		_, err := e.Take(ctx, "a", "c", 50)
		if !errors.Is(err, ErrUnknownOutcome) || !errors.Is(err, ErrUnavailable) {
			t.Fatalf("take whose write is hidden: %v; want ErrUnknownOutcome", err)
		}
		f.after = nil
		if n, _ := e.Counter(ctx, "a", "c"); n != 100-50+window+1 {
			t.Fatalf("counter %d; want the take applied exactly once: %d", n, 100-50+window+1)
		}
	})
}

func TestValueCodec(t *testing.T) {
	t.Parallel()
	vals := []*value{
		{kind: kindClaim},
		{kind: kindClaim, seq: 3, win: []entry{{opID{1, 2}, 0}, {opID{1 << 63, 1<<64 - 1}, 0}}, owner: "ünï"},
		{kind: kindCounter, seq: 40, win: []entry{{opID{7, 9}, math.MaxInt64}}, stock: math.MaxInt64},
		{kind: kindDoc, seq: 1, win: []entry{{opID{7, 9}, 0}}, doc: []byte{1, 2, 3}},
	}
	for _, v := range vals {
		b := v.encode()
		got, err := decodeValue(v.kind, b)
		if err != nil {
			t.Fatalf("%+v: %v", v, err)
		}
		if got.seq != v.seq || got.owner != v.owner || got.stock != v.stock || string(got.doc) != string(v.doc) || len(got.win) != len(v.win) {
			t.Fatalf("round trip %+v → %+v", v, got)
		}
		// Every truncation and every single-byte change is an error or a
		// value, never a panic.
		for i := range b {
			decodeValue(v.kind, b[:i])
			c := append([]byte(nil), b...)
			c[i] ^= 0xff
			decodeValue(v.kind, c)
		}
		if _, err := decodeValue(kindDoc+1, b); err == nil {
			t.Fatalf("value of kind %q read as another kind", v.kind)
		}
	}
	// A window longer than the writes it stands for is corrupt.
	bad := (&value{kind: kindClaim, seq: 1, win: []entry{{}, {}}}).encode()
	if _, err := decodeValue(kindClaim, bad); err == nil {
		t.Fatal("window of 2 at write 1 accepted")
	}
}

func TestKVKey(t *testing.T) {
	t.Parallel()
	seen := map[string][3]string{}
	for _, ns := range []string{"", "a", "a.b", "ab", "-"} {
		for _, k := range []string{"b", "a.b", "*", ">", "日本", "\x00"} {
			key := kvKey(kindClaim, "app", ns, k)
			for _, c := range key {
				if !strings.ContainsRune("-/_=.abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", c) || strings.Contains(key, "..") {
					t.Fatalf("key %q for (%q, %q) is not a valid KV key", key, ns, k)
				}
			}
			if prev, dup := seen[key]; dup {
				t.Fatalf("%v and (%q, %q) share key %q", prev, ns, k, key)
			}
			seen[key] = [3]string{"app", ns, k}
		}
	}
}
