package documents

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/crdt"
	"github.com/verge-edge/verge/internal/store"
)

func manifest(name string, colls ...string) *verge.Manifest {
	m := &verge.Manifest{Name: name}
	for _, c := range colls {
		m.Collections = append(m.Collections, verge.Collection{Name: c, Scope: verge.Scope{Kind: "local"}})
	}
	return m
}

// testOptions are a service's options and its store's.
type testOptions struct {
	Origin      string
	NoSync      bool
	Replica     crdt.ReplicaID
	MaxDocBytes int
}

// openDir opens a store in dir and the service over it, as a PoP does.
func openDir(dir string, o testOptions) (*Service, error) {
	if o.MaxDocBytes <= 0 {
		o.MaxDocBytes = DefaultMaxDocBytes
	}
	st, err := store.Open(dir, store.Options{Origin: o.Origin, NoSync: o.NoSync, MaxValueBytes: StoreValueBytes(o.MaxDocBytes)})
	if err != nil {
		return nil, err
	}
	return New(st, Options{Replica: o.Replica, MaxDocBytes: o.MaxDocBytes}), nil
}

func open(t testing.TB, opts testOptions, apps ...*verge.Manifest) *Service {
	t.Helper()
	if opts.Origin == "" {
		opts.Origin = "test"
	}
	if opts.Replica == 0 {
		opts.Replica = 1
	}
	s, err := openDir(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.st.Close() })
	for _, m := range apps {
		s.SetApp(m)
	}
	return s
}

func op(o, path, value string) crdt.Op {
	x := crdt.Op{Op: o, Path: path}
	if value != "" {
		x.Value = json.RawMessage(value)
	}
	return x
}

func TestPutGetUpdateDelete(t *testing.T) {
	t.Parallel()
	s := open(t, testOptions{NoSync: true}, manifest("shop", "carts"))
	ctx := context.Background()

	if _, found, err := s.Get("shop", "carts", "u1"); err != nil || found {
		t.Fatalf("Get of an absent doc: found=%v err=%v", found, err)
	}
	got, err := s.Put(ctx, "shop", "carts", "u1", []byte(`{"items":[], "owner":"ada"}`))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != `{"items":[],"owner":"ada"}` {
		t.Fatalf("Put returned %s", got)
	}
	got, err = s.Update(ctx, "shop", "carts", "u1", []crdt.Op{
		op("append", "items", `{"sku":"tea","qty":1}`),
		op("prepend", "items", `"first"`),
		op("increment", "items.1.qty", "2"),
		op("increment", "views", "1"),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"items":["first",{"qty":3,"sku":"tea"}],"owner":"ada","views":1}`
	if string(got) != want {
		t.Fatalf("Update returned %s, want %s", got, want)
	}
	doc, found, err := s.Get("shop", "carts", "u1")
	if err != nil || !found || string(doc) != want {
		t.Fatalf("Get = %s, %v, %v; want %s", doc, found, err, want)
	}

	// Put replaces the whole document: fields not in the new one disappear.
	if got, err = s.Put(ctx, "shop", "carts", "u1", []byte(`{"owner":"bob"}`)); err != nil || string(got) != `{"owner":"bob"}` {
		t.Fatalf("Put replacing = %s, %v", got, err)
	}

	// Update creates an absent document from {}.
	if got, err = s.Update(ctx, "shop", "carts", "u2", []crdt.Op{op("increment", "n", "5")}); err != nil || string(got) != `{"n":5}` {
		t.Fatalf("Update creating = %s, %v", got, err)
	}

	if found, err := s.Delete(ctx, "shop", "carts", "u1"); err != nil || !found {
		t.Fatalf("Delete = %v, %v", found, err)
	}
	if _, found, err := s.Get("shop", "carts", "u1"); err != nil || found {
		t.Fatalf("Get after Delete: found=%v err=%v", found, err)
	}
	if found, err := s.Delete(ctx, "shop", "carts", "u1"); err != nil || found {
		t.Fatalf("second Delete = %v, %v; want not found", found, err)
	}
	keys, next, err := s.List("shop", "carts", "", 0)
	if err != nil || next != "" || strings.Join(keys, ",") != "u2" {
		t.Fatalf("List = %q, %q, %v", keys, next, err)
	}
}

func TestBadOpsNameIndexAndPathAndChangeNothing(t *testing.T) {
	t.Parallel()
	s := open(t, testOptions{NoSync: true}, manifest("shop", "carts"))
	ctx := context.Background()
	const start = `{"items":[1,2],"n":1}`
	if _, err := s.Put(ctx, "shop", "carts", "k", []byte(start)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ops  []crdt.Op
		want []string
	}{
		{[]crdt.Op{op("increment", "n", "1"), op("append", "missing", "1")}, []string{"op 1", `"missing"`}},
		{[]crdt.Op{op("increment", "items", "1")}, []string{"op 0", `"items"`, "array"}},
		{[]crdt.Op{op("set", "items.9", "1")}, []string{"op 0", `"items.9"`, "out of range"}},
		{[]crdt.Op{op("frobnicate", "n", "1")}, []string{"op 0", "frobnicate", "unknown op"}},
		{[]crdt.Op{op("increment", "n", `"x"`)}, []string{"op 0", "integer"}},
		{[]crdt.Op{op("set", "n.x", "1")}, []string{"op 0", `"n.x"`}},
		{nil, []string{"no operations"}},
	} {
		_, err := s.Update(ctx, "shop", "carts", "k", tc.ops)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%v: err = %v, want ErrInvalid", tc.ops, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error %q does not mention %s", tc.ops, err, w)
			}
		}
	}
	if doc, _, err := s.Get("shop", "carts", "k"); err != nil || string(doc) != start {
		t.Fatalf("after rejected updates the doc is %s (%v), want %s", doc, err, start)
	}
	for _, body := range []string{`[1]`, `"x"`, `{"a":`, ``, `null`} {
		if _, err := s.Put(ctx, "shop", "carts", "k", []byte(body)); !errors.Is(err, ErrInvalid) {
			t.Errorf("Put(%q) err = %v, want ErrInvalid", body, err)
		}
	}
}

func TestUnknownAppAndCollection(t *testing.T) {
	t.Parallel()
	s := open(t, testOptions{NoSync: true}, manifest("shop", "carts"))
	ctx := context.Background()
	_, err := s.Update(ctx, "shop", "orders", "k", []crdt.Op{op("increment", "n", "1")})
	if !errors.Is(err, ErrUnknownCollection) || !strings.Contains(err.Error(), `"orders"`) {
		t.Fatalf("unknown collection: %v", err)
	}
	_, _, err = s.Get("nope", "carts", "k")
	if !errors.Is(err, ErrUnknownApp) || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("unknown app: %v", err)
	}
	if _, _, err := s.List("shop", "orders", "", 10); !errors.Is(err, ErrUnknownCollection) {
		t.Fatalf("List of an unknown collection: %v", err)
	}
	if _, err := s.Delete(ctx, "nope", "carts", "k"); !errors.Is(err, ErrUnknownApp) {
		t.Fatalf("Delete in an unknown app: %v", err)
	}
	// Redeclaring the app without the collection makes it unreachable.
	if _, err := s.Update(ctx, "shop", "carts", "k", []crdt.Op{op("increment", "n", "1")}); err != nil {
		t.Fatal(err)
	}
	s.SetApp(manifest("shop", "orders"))
	if _, _, err := s.Get("shop", "carts", "k"); !errors.Is(err, ErrUnknownCollection) {
		t.Fatalf("Get after the collection was dropped: %v", err)
	}
}

func TestKeyLimits(t *testing.T) {
	t.Parallel()
	s := open(t, testOptions{NoSync: true}, manifest("shop", "carts"))
	ctx := context.Background()
	for _, k := range []string{"", strings.Repeat("k", MaxKeyBytes+1), "\xff\xfe"} {
		if _, err := s.Put(ctx, "shop", "carts", k, []byte(`{}`)); !errors.Is(err, ErrInvalid) {
			t.Errorf("Put with key %.20q: %v, want ErrInvalid", k, err)
		}
	}
	if _, err := s.Put(ctx, "shop", "carts", strings.Repeat("k", MaxKeyBytes), []byte(`{}`)); err != nil {
		t.Errorf("Put with a key of the maximum length: %v", err)
	}
}

func TestDocumentSizeLimit(t *testing.T) {
	t.Parallel()
	s := open(t, testOptions{NoSync: true, MaxDocBytes: 4 << 10}, manifest("shop", "carts"))
	ctx := context.Background()
	big := fmt.Sprintf(`{"blob":%q}`, strings.Repeat("x", 8<<10))
	if _, err := s.Put(ctx, "shop", "carts", "k", []byte(big)); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "limit is 4096") {
		t.Fatalf("oversized Put: %v", err)
	}
	if _, found, _ := s.Get("shop", "carts", "k"); found {
		t.Fatal("an oversized Put was stored")
	}
	// Growing a document past the limit one append at a time is refused at
	// the append that crosses it, and the document keeps its last state.
	if _, err := s.Put(ctx, "shop", "carts", "k", []byte(`{"l":[]}`)); err != nil {
		t.Fatal(err)
	}
	chunk := fmt.Sprintf("%q", strings.Repeat("y", 500))
	var n int
	for n = 0; n < 100; n++ {
		_, err := s.Update(ctx, "shop", "carts", "k", []crdt.Op{op("append", "l", chunk)})
		if errors.Is(err, ErrTooLarge) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if n == 0 || n == 100 {
		t.Fatalf("appends accepted before the limit: %d", n)
	}
	doc, _, err := s.Get("shop", "carts", "k")
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ L []string }
	if err := json.Unmarshal(doc, &v); err != nil || len(v.L) != n {
		t.Fatalf("document holds %d elements (%v), want %d", len(v.L), err, n)
	}
}

// App "a" can never see app "b"'s documents, whatever the names: the
// service only knows registered apps and collections, and the store's keys
// are prefix-free.
func TestAppIsolation(t *testing.T) {
	t.Parallel()
	s := open(t, testOptions{NoSync: true},
		manifest("a", "c", "cc"),
		manifest("ab", "c"),
		manifest("b", "c", "secret"))
	ctx := context.Background()
	// Names chosen so that naive concatenation would make one a prefix of
	// another: ("a","cc") vs ("a","c")+"c...", ("ab","c") vs ("a","bc").
	for _, k := range []string{"x", "c", "cx", "\x00", "/", "..", "a/c/x"} {
		for _, w := range []struct{ app, coll string }{{"b", "c"}, {"b", "secret"}, {"ab", "c"}, {"a", "cc"}} {
			if _, err := s.Put(ctx, w.app, w.coll, k, []byte(fmt.Sprintf(`{"owner":%q}`, w.app+"/"+w.coll))); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := s.Put(ctx, "a", "c", "mine", []byte(`{"owner":"a/c"}`)); err != nil {
		t.Fatal(err)
	}

	keys, next, err := s.List("a", "c", "", MaxListLimit)
	if err != nil || next != "" || strings.Join(keys, ",") != "mine" {
		t.Fatalf(`List("a","c") = %q, %q, %v; want only "mine"`, keys, next, err)
	}
	for _, after := range []string{"\x00", "c", "\xff\xff\xff", "mine\x00", "b"} {
		keys, _, err := s.List("a", "c", after, MaxListLimit)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if k != "mine" {
				t.Fatalf("List(a, c, after=%q) reached key %q", after, k)
			}
		}
	}
	for _, k := range []string{"x", "c", "cx", "\x00", "/", "..", "a/c/x", "cx", "ccx"} {
		if doc, found, err := s.Get("a", "c", k); found || err != nil {
			t.Fatalf("Get(a, c, %q) = %s, %v, %v", k, doc, found, err)
		}
	}
	// Adversarial app and collection names are unknown, never another
	// app's data.
	for _, w := range []struct{ app, coll string }{
		{"a", "secret"}, {"a/../b", "c"}, {"b\x00", "c"}, {"", "c"}, {"a", ""}, {"a", "c/../../b/c"}, {"A", "c"}, {"b ", "c"},
	} {
		if _, found, err := s.Get(w.app, w.coll, "x"); found || err == nil {
			t.Fatalf("Get(%q, %q, x): found=%v err=%v", w.app, w.coll, found, err)
		}
		if keys, _, err := s.List(w.app, w.coll, "", 10); err == nil || len(keys) != 0 {
			t.Fatalf("List(%q, %q) = %q, %v", w.app, w.coll, keys, err)
		}
	}
	// Each app reads back exactly its own documents.
	doc, _, err := s.Get("a", "cc", "x")
	if err != nil || string(doc) != `{"owner":"a/cc"}` {
		t.Fatalf("Get(a, cc, x) = %s, %v", doc, err)
	}
	doc, _, err = s.Get("ab", "c", "x")
	if err != nil || string(doc) != `{"owner":"ab/c"}` {
		t.Fatalf("Get(ab, c, x) = %s, %v", doc, err)
	}
	// Deleting in one app leaves the others alone.
	if found, err := s.Delete(ctx, "a", "c", "x"); err != nil || found {
		t.Fatalf("Delete(a, c, x) = %v, %v; want not found", found, err)
	}
	if _, found, _ := s.Get("b", "c", "x"); !found {
		t.Fatal("b's document vanished")
	}
}

func TestListPagination(t *testing.T) {
	t.Parallel()
	s := open(t, testOptions{NoSync: true}, manifest("shop", "carts"))
	ctx := context.Background()
	const n = 25
	want := make([]string, n)
	for i := range n {
		want[i] = fmt.Sprintf("k%03d", i)
		if _, err := s.Put(ctx, "shop", "carts", want[i], []byte(`{"n":1}`)); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	after := ""
	for page := 0; page < n; page++ {
		keys, next, err := s.List("shop", "carts", after, 7)
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) > 7 {
			t.Fatalf("page of %d keys, limit 7", len(keys))
		}
		got = append(got, keys...)
		if next == "" {
			break
		}
		after = next
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("paged keys %q, want %q", got, want)
	}
}

// N writers incrementing one counter: every acknowledged increment counts,
// exactly once, with fsync on.
func TestConcurrentIncrements(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := openDir(dir, testOptions{Origin: "test", Replica: 1})
	if err != nil {
		t.Fatal(err)
	}
	s.SetApp(manifest("shop", "stats"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := s.Put(ctx, "shop", "stats", "views", []byte(`{"log":[]}`)); err != nil {
		t.Fatal(err)
	}
	const writers, each = 16, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if _, err := s.Update(ctx, "shop", "stats", "views", []crdt.Op{op("increment", "n", "1"), op("append", "log", "1")}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	check := func(s *Service) {
		t.Helper()
		doc, _, err := s.Get("shop", "stats", "views")
		if err != nil {
			t.Fatal(err)
		}
		var v struct {
			N   int
			Log []int
		}
		if err := json.Unmarshal(doc, &v); err != nil {
			t.Fatal(err)
		}
		if v.N != writers*each || len(v.Log) != writers*each {
			t.Fatalf("n = %d, log has %d entries; want %d", v.N, len(v.Log), writers*each)
		}
	}
	check(s)
	// Every write was acknowledged after its fsync: it survives a reopen.
	if err := s.st.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = openDir(dir, testOptions{Origin: "test", Replica: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.st.Close()
	s.SetApp(manifest("shop", "stats"))
	check(s)
	if seq := s.st.Seqs()["test"]; seq != writers*each+1 {
		t.Fatalf("delta log holds %d local entries, want %d", seq, writers*each+1)
	}
}

// Deltas logged by the service rebuild the document at another replica:
// what later issues replicate is complete.
func TestLoggedDeltasRebuildTheDocument(t *testing.T) {
	t.Parallel()
	s := open(t, testOptions{NoSync: true}, manifest("shop", "carts"))
	ctx := context.Background()
	if _, err := s.Put(ctx, "shop", "carts", "u1", []byte(`{"items":[]}`)); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := s.Update(ctx, "shop", "carts", "u1", []crdt.Op{op("append", "items", fmt.Sprint(i)), op("increment", "n", "1")}); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := s.st.LogSince("test", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 6 {
		t.Fatalf("%d log entries, want 6", len(entries))
	}
	replica := crdt.NewDoc()
	for _, e := range entries {
		d, err := crdt.DecodeDelta(e.Delta)
		if err != nil {
			t.Fatal(err)
		}
		if err := replica.Merge(d); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := replica.JSON()
	want, _, _ := s.Get("shop", "carts", "u1")
	if string(got) != string(want) {
		t.Fatalf("replica rebuilt from the log: %s, want %s", got, want)
	}
}

// A document whose encoding stays small but would expand past what the
// decoder accepts (runs of appended elements) is refused at the write that
// would cross the line, and stays readable and writable.
func TestUnreadableDocumentIsNeverStored(t *testing.T) {
	t.Parallel()
	s := open(t, testOptions{NoSync: true}, manifest("shop", "carts"))
	ctx := context.Background()
	if _, err := s.Put(ctx, "shop", "carts", "k", []byte(`{"l":[]}`)); err != nil {
		t.Fatal(err)
	}
	ops := make([]crdt.Op, 60_000)
	for i := range ops {
		ops[i] = op("append", "l", "1")
	}
	var err error
	rounds := 0
	for ; rounds < 100 && err == nil; rounds++ {
		_, err = s.Update(ctx, "shop", "carts", "k", ops)
	}
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "split") {
		t.Fatalf("after %d rounds of 60,000 appends: %v, want ErrTooLarge", rounds, err)
	}
	doc, found, err := s.Get("shop", "carts", "k")
	if err != nil || !found {
		t.Fatalf("the document is no longer readable: %v", err)
	}
	var v struct{ L []int }
	if err := json.Unmarshal(doc, &v); err != nil || len(v.L) != (rounds-1)*len(ops) {
		t.Fatalf("document holds %d elements (%v), want %d", len(v.L), err, (rounds-1)*len(ops))
	}
	if _, err := s.Update(ctx, "shop", "carts", "k", []crdt.Op{op("increment", "n", "1")}); err != nil {
		t.Fatalf("a small update after the refusal: %v", err)
	}
}

// A document with no fields does not exist: a Put of {} (new or over a
// document) leaves it not found, and List skips it. This is what makes a
// deletion a plain CRDT operation that replicas agree on (see Delete).
func TestPutEmptyObject(t *testing.T) {
	t.Parallel()
	s := open(t, testOptions{NoSync: true}, manifest("shop", "carts"))
	ctx := context.Background()
	for i := range 3 {
		if got, err := s.Put(ctx, "shop", "carts", "k", []byte(`{}`)); err != nil || string(got) != `{}` {
			t.Fatalf("Put %d of {}: %s, %v", i, got, err)
		}
		if doc, found, err := s.Get("shop", "carts", "k"); err != nil || found {
			t.Fatalf("Get after Put %d of {}: %s, %v, %v; want not found", i, doc, found, err)
		}
	}
	if got, err := s.Update(ctx, "shop", "carts", "k", []crdt.Op{op("set", "a", "1")}); err != nil || string(got) != `{"a":1}` {
		t.Fatalf("set after {}: %s, %v", got, err)
	}
	if keys, _, err := s.List("shop", "carts", "", 10); err != nil || len(keys) != 1 {
		t.Fatalf("List = %q, %v; want [k]", keys, err)
	}
	if got, err := s.Put(ctx, "shop", "carts", "k", []byte(`{}`)); err != nil || string(got) != `{}` {
		t.Fatalf("Put of {} over a document: %s, %v", got, err)
	}
	if keys, _, err := s.List("shop", "carts", "", 10); err != nil || len(keys) != 0 {
		t.Fatalf("List after emptying = %q, %v; want none", keys, err)
	}
}

// A deleted document keeps its causal context, so re-creating it continues
// this replica's event numbers: a peer that saw the deletion still applies
// the re-creation.
func TestDeleteThenRecreateReplicates(t *testing.T) {
	t.Parallel()
	a := open(t, testOptions{NoSync: true, Origin: "a", Replica: 1}, manifest("shop", "carts"))
	b := open(t, testOptions{NoSync: true, Origin: "b", Replica: 2}, manifest("shop", "carts"))
	ctx := context.Background()
	// ship sends b what a logged since b's watermark, as one batch, as
	// replication does.
	ship := func() {
		t.Helper()
		wm := b.st.Seqs()["a"]
		entries, err := a.st.LogSince("a", wm, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) == 0 {
			t.Fatal("nothing to ship")
		}
		items := make([]store.BatchItem, len(entries))
		for i, e := range entries {
			items[i] = store.BatchItem{Key: e.Key, Delta: e.Delta}
		}
		to := entries[len(entries)-1].Seq
		if got, err := b.st.ApplyBatch(ctx, "a", wm+1, to, items, b.Merge); err != nil || got != to {
			t.Fatalf("ApplyBatch(a, %d..%d) = %d, %v", wm+1, to, got, err)
		}
	}
	if _, err := a.Update(ctx, "shop", "carts", "k", []crdt.Op{op("set", "x", "1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Delete(ctx, "shop", "carts", "k"); err != nil {
		t.Fatal(err)
	}
	ship()
	if _, found, _ := b.Get("shop", "carts", "k"); found {
		t.Fatal("b still has the deleted document")
	}
	if _, err := a.Update(ctx, "shop", "carts", "k", []crdt.Op{op("set", "y", "2")}); err != nil {
		t.Fatal(err)
	}
	ship()
	if doc, found, err := b.Get("shop", "carts", "k"); err != nil || string(doc) != `{"y":2}` {
		t.Fatalf("b after re-creation: %s, %v, %v; want {\"y\":2}", doc, found, err)
	}
}

// An increment that would take a number past int64 is refused as invalid
// and changes nothing, in both directions and for a missing key.
func TestIncrementOverflowIsInvalid(t *testing.T) {
	t.Parallel()
	s := open(t, testOptions{NoSync: true}, manifest("shop", "carts"))
	ctx := context.Background()
	const start = `{"max":9223372036854775807,"min":-9223372036854775808}`
	if _, err := s.Put(ctx, "shop", "carts", "k", []byte(start)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ops  []crdt.Op
		want string
	}{
		{[]crdt.Op{op("increment", "max", "1")}, `op 0 (increment "max"): increment by 1 would make the number 9223372036854775808, outside the 64-bit integer range -9223372036854775808..9223372036854775807`},
		{[]crdt.Op{op("increment", "min", "-1")}, `op 0 (increment "min"): increment by -1 would make the number -9223372036854775809, outside the 64-bit integer range`},
		{[]crdt.Op{op("increment", "new", "9223372036854775807"), op("increment", "new", "1")}, `op 1 (increment "new"): increment by 1 would make the number 9223372036854775808`},
	} {
		_, err := s.Update(ctx, "shop", "carts", "k", tc.ops)
		if !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want ErrInvalid %q", tc.ops, err, tc.want)
		}
	}
	if doc, _, err := s.Get("shop", "carts", "k"); err != nil || string(doc) != start {
		t.Fatalf("after refused increments the doc is %s (%v), want %s", doc, err, start)
	}
	if doc, err := s.Update(ctx, "shop", "carts", "k", []crdt.Op{op("increment", "max", "-1"), op("increment", "max", "1")}); err != nil || string(doc) != start {
		t.Fatalf("increments within range: %s %v", doc, err)
	}
}

// Invalid UTF-8 and escaped lone surrogates, which encoding/json would turn
// into U+FFFD, are refused as invalid in a whole document and in ops, as
// are paths that are not valid UTF-8; nothing changes.
func TestInvalidTextIsInvalid(t *testing.T) {
	t.Parallel()
	s := open(t, testOptions{NoSync: true}, manifest("shop", "carts"))
	ctx := context.Background()
	const start = `{"o":{},"s":"ok"}`
	if _, err := s.Put(ctx, "shop", "carts", "k", []byte(start)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ body, want string }{
		{"{\"s\":\"caf\xe9\"}", "invalid request: the document is invalid JSON text: not valid UTF-8 at byte 9"},
		{"{\"k\xff\":1}", "invalid request: the document is invalid JSON text: not valid UTF-8 at byte 3"},
		{`{"s":"\ud800"}`, `invalid request: the document is invalid JSON text: \ud800 at byte 6 is a lone UTF-16 surrogate`},
		{`{"s":"\ud800\u0041"}`, `\ud800 at byte 6 is a lone UTF-16 surrogate`},
		{`{"\udc00":1}`, `\udc00 at byte 2 is a lone UTF-16 surrogate`},
	} {
		_, err := s.Put(ctx, "shop", "carts", "k", []byte(c.body))
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Put(%q): err = %v, want ErrInvalid %q", c.body, err, c.want)
		}
	}
	for _, c := range []struct {
		op   crdt.Op
		want string
	}{
		{op("set", "s", "\"\xff\""), `op 0 (set "s"): value is invalid JSON text: not valid UTF-8 at byte 1`},
		{op("set", "o", `{"\ud800":1}`), `op 0 (set "o"): value is invalid JSON text: \ud800 at byte 2 is a lone UTF-16 surrogate`},
		{op("set", "o.\xff", "1"), `op 0 (set "o.\xff"): path is not valid UTF-8`},
		{op("increment", "\xed\xa0\x80", "1"), `path is not valid UTF-8`},
	} {
		_, err := s.Update(ctx, "shop", "carts", "k", []crdt.Op{c.op})
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Update(%q %q %s): err = %v, want ErrInvalid %q", c.op.Op, c.op.Path, c.op.Value, err, c.want)
		}
	}
	if doc, _, err := s.Get("shop", "carts", "k"); err != nil || string(doc) != start {
		t.Fatalf("after refused writes the doc is %s (%v), want %s", doc, err, start)
	}
	// the valid forms
	if doc, err := s.Put(ctx, "shop", "carts", "k", []byte(`{"s":"caf\u00e9 \ud83d\ude00","\\ud800":"é"}`)); err != nil || string(doc) != `{"\\ud800":"é","s":"café 😀"}` {
		t.Fatalf("valid text: %s %v", doc, err)
	}
}

// A limit above MaxListLimit is refused, not capped; MaxListLimit itself
// and limit ≤ 0 (the default) are fine.
func TestListLimitAboveMaximum(t *testing.T) {
	t.Parallel()
	s := open(t, testOptions{NoSync: true}, manifest("shop", "carts"))
	if _, err := s.Put(context.Background(), "shop", "carts", "k", []byte(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int{MaxListLimit + 1, 5000} {
		_, _, err := s.List("shop", "carts", "", limit)
		if want := fmt.Sprintf("invalid request: limit %d is above the maximum of 1000 keys per page", limit); !errors.Is(err, ErrInvalid) || err.Error() != want {
			t.Errorf("List limit %d: err = %v, want ErrInvalid %q", limit, err, want)
		}
	}
	for _, limit := range []int{MaxListLimit, 1, 0, -1} {
		if keys, _, err := s.List("shop", "carts", "", limit); err != nil || len(keys) != 1 {
			t.Errorf("List limit %d: %q %v", limit, keys, err)
		}
	}
}
