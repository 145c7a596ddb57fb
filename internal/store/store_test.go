package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
)

func openTest(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	if opts.Origin == "" {
		opts.Origin = "pop-a"
	}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// appendFn appends tok to the state and logs tok as the delta, so replaying
// a document's log entries in seq order must rebuild its state exactly.
func appendFn(tok string) func([]byte) ([]byte, []byte, error) {
	return func(state []byte) ([]byte, []byte, error) {
		ns := append(append(make([]byte, 0, len(state)+len(tok)+1), state...), tok...)
		ns = append(ns, ';')
		return ns, []byte(tok + ";"), nil
	}
}

// setMerge treats a state as a sorted set of ';'-terminated tokens; it is
// commutative and idempotent, like the CRDT merges the store will be given.
func setMerge(state, delta []byte) ([]byte, error) {
	set := strings.Split(strings.TrimSuffix(string(state), ";"), ";")
	if len(state) == 0 {
		set = nil
	}
	for _, tok := range strings.Split(strings.TrimSuffix(string(delta), ";"), ";") {
		if !slices.Contains(set, tok) {
			set = append(set, tok)
		}
	}
	slices.Sort(set)
	return []byte(strings.Join(set, ";") + ";"), nil
}

func mustGet(t *testing.T, s *Store, k Key) string {
	t.Helper()
	v, ok, err := s.Get(k)
	if err != nil {
		t.Fatalf("Get(%v): %v", k, err)
	}
	if !ok {
		return "<absent>"
	}
	return string(v)
}

func TestUpdateGetLog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTest(t, t.TempDir(), Options{})
	k := Key{"shop", "carts", "u1"}
	if v, ok, err := s.Get(k); err != nil || ok || v != nil {
		t.Fatalf("Get of a missing document = %q, %v, %v", v, ok, err)
	}
	for i, tok := range []string{"a", "b", "c"} {
		e, err := s.Update(ctx, k, appendFn(tok))
		if err != nil {
			t.Fatal(err)
		}
		if e.Seq != uint64(i+1) || e.Origin != "pop-a" || e.Key != k || string(e.Delta) != tok+";" {
			t.Fatalf("entry %d = %+v", i, e)
		}
	}
	if got := mustGet(t, s, k); got != "a;b;c;" {
		t.Fatalf("state = %q", got)
	}
	// A nil delta writes nothing.
	e, err := s.Update(ctx, k, func(st []byte) ([]byte, []byte, error) { return []byte("ignored"), nil, nil })
	if err != nil || e.Seq != 0 {
		t.Fatalf("no-op Update = %+v, %v", e, err)
	}
	// fn's error aborts the write.
	boom := errors.New("boom")
	if _, err := s.Update(ctx, k, func([]byte) ([]byte, []byte, error) { return nil, nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("Update error = %v, want boom", err)
	}
	if got := s.Seqs()["pop-a"]; got != 3 {
		t.Fatalf("Seqs = %d, want 3", got)
	}
	log, err := s.LogSince("pop-a", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != 2 || log[0].Seq != 2 || string(log[0].Delta) != "b;" || log[1].Seq != 3 || log[1].Key != k {
		t.Fatalf("LogSince(1) = %+v", log)
	}
	if log, err := s.LogSince("pop-a", 0, 1); err != nil || len(log) != 1 || log[0].Seq != 1 {
		t.Fatalf("LogSince(0, limit 1) = %+v, %v", log, err)
	}
	if log, err := s.LogSince("nobody", 0, 0); err != nil || len(log) != 0 {
		t.Fatalf("LogSince(unknown origin) = %+v, %v", log, err)
	}

	// A nil newState deletes the document; its delta (the tombstone a peer's
	// merge needs) is logged like any other.
	e, err = s.Update(ctx, k, func([]byte) ([]byte, []byte, error) { return nil, []byte("tomb"), nil })
	if err != nil || e.Seq != 4 {
		t.Fatalf("deleting Update = %+v, %v", e, err)
	}
	if got := mustGet(t, s, k); got != "<absent>" {
		t.Fatalf("after the deleting Update state = %q", got)
	}
	if log, _ := s.LogSince("pop-a", 3, 0); len(log) != 1 || string(log[0].Delta) != "tomb" {
		t.Fatalf("tombstone entry = %+v", log)
	}
}

func TestLimitsAndInvalidInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTest(t, t.TempDir(), Options{MaxValueBytes: 10})
	for _, k := range []Key{
		{"a", "c", ""},
		{strings.Repeat("x", MaxNameLen+1), "c", "d"},
		{"a", strings.Repeat("x", MaxNameLen+1), "d"},
		{"a", "c", strings.Repeat("x", MaxDocLen+1)},
	} {
		if _, err := s.Update(ctx, k, appendFn("x")); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Update(%.20v) error = %v, want ErrInvalidKey", k, err)
		}
		if _, _, err := s.Get(k); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Get(%.20v) error = %v, want ErrInvalidKey", k, err)
		}
		if _, err := s.ApplyBatch(ctx, "pop-b", 1, 1, []BatchItem{{k, []byte("x;")}}, batchMerge); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ApplyBatch(%.20v) error = %v, want ErrInvalidKey", k, err)
		}
		if err := s.Merge(ctx, []BatchItem{{k, []byte("x;")}}, batchMerge); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Merge(%.20v) error = %v, want ErrInvalidKey", k, err)
		}
	}
	k := Key{"a", "c", "d"}
	if _, err := s.Update(ctx, k, appendFn("0123456789")); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized Update error = %v", err)
	}
	if _, err := s.ApplyBatch(ctx, "pop-b", 1, 1, []BatchItem{{k, []byte("0123456789x")}}, batchMerge); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized ApplyBatch error = %v", err)
	}
	if err := s.Merge(ctx, []BatchItem{{k, []byte("0123456789x")}}, batchMerge); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized Merge error = %v", err)
	}
	if _, err := s.ApplyBatch(ctx, "pop-a", 1, 1, []BatchItem{{k, []byte("x")}}, batchMerge); err == nil {
		t.Fatal("ApplyBatch accepted this store's own origin")
	}
	if _, err := s.ApplyBatch(ctx, "pop-b", 0, 1, []BatchItem{{k, []byte("x")}}, batchMerge); err == nil {
		t.Fatal("ApplyBatch accepted seq 0")
	}
	if got := mustGet(t, s, k); got != "<absent>" {
		t.Fatalf("refused writes left %q", got)
	}
	if _, err := Open(t.TempDir(), Options{}); err == nil {
		t.Fatal("Open accepted an empty origin")
	}
	// A cancelled context stops a writer waiting for a document's lock.
	hold := make(chan struct{})
	held := make(chan struct{})
	go s.Update(ctx, k, func(st []byte) ([]byte, []byte, error) {
		close(held)
		<-hold
		return nil, nil, nil
	})
	<-held
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Update(cctx, k, appendFn("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Update with cancelled ctx = %v", err)
	}
	close(hold)
	if _, err := s.Update(ctx, k, appendFn("x")); err != nil {
		t.Fatalf("Update after the lock was released: %v", err)
	}
}

// Adversarial names: separators, NULs, empty components, names that are
// prefixes of one another and names that look like length prefixes. Each
// (app, collection) must see exactly its own documents.
func TestKeyIsolation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTest(t, t.TempDir(), Options{})
	pairs := [][2]string{
		{"a", "b"}, {"a", "bc"}, {"ab", "c"}, {"a/b", "c"}, {"a", "b/c"},
		{"", "ab"}, {"a", ""}, {"", ""}, {"ab", ""},
		{"a\x00", "b"}, {"a", "\x00b"}, {"\x00", "\x00"}, {"\x01a", "b"},
		{"\x02ab", ""}, {"a\xff", "b"}, {"\xff\xff", "\xff"},
	}
	docs := []string{"d", "\x00", "\xff", "b\x00c", "/", "d/e"}
	for _, p := range pairs {
		for _, d := range docs {
			k := Key{p[0], p[1], d}
			if _, err := s.Update(ctx, k, appendFn(fmt.Sprintf("%q", k))); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := slices.Clone(docs)
	slices.Sort(want)
	for _, p := range pairs {
		got, next, err := s.List(p[0], p[1], "", 1000)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) || next != "" {
			t.Errorf("List(%q, %q) = %q (next %q), want %q", p[0], p[1], got, next, want)
		}
		for _, d := range docs {
			k := Key{p[0], p[1], d}
			if got := mustGet(t, s, k); got != fmt.Sprintf("%q;", k) {
				t.Errorf("Get(%v) = %q: another key's value", k, got)
			}
		}
	}
	if got, _, _ := s.List("a", "b/", "", 10); len(got) != 0 {
		t.Errorf("List of an unused collection = %q", got)
	}
	if got, _, _ := s.List("zz", "b", "", 10); len(got) != 0 {
		t.Errorf("List of an unused app = %q", got)
	}
}

func TestListPagination(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTest(t, t.TempDir(), Options{NoSync: true})
	var want []string
	for i := range 25 {
		d := fmt.Sprintf("doc%02d", i)
		want = append(want, d)
		if _, err := s.Update(ctx, Key{"app", "c", d}, appendFn("x")); err != nil {
			t.Fatal(err)
		}
		// Neighbouring collections must not leak into the pages.
		s.Update(ctx, Key{"app", "b", d}, appendFn("x"))
		s.Update(ctx, Key{"app", "d", d}, appendFn("x"))
	}
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("List does not terminate")
		}
		page, next, err := s.List("app", "c", after, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > 10 {
			t.Fatalf("page of %d > limit", len(page))
		}
		got = append(got, page...)
		if next == "" {
			break
		}
		after = next
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paged List = %q, want %q", got, want)
	}
	// A cursor between names, and one past the end.
	if page, _, _ := s.List("app", "c", "doc10x", 2); !slices.Equal(page, []string{"doc11", "doc12"}) {
		t.Fatalf("List after doc10x = %q", page)
	}
	if page, next, _ := s.List("app", "c", "doc24", 2); len(page) != 0 || next != "" {
		t.Fatalf("List after the last = %q, %q", page, next)
	}
	// Exactly limit documents left: no next page.
	if page, next, _ := s.List("app", "c", "doc19", 5); len(page) != 5 || next != "" {
		t.Fatalf("List(doc19, 5) = %q, next %q", page, next)
	}
}

// Batches of one origin may arrive out of order and more than once (a
// sender keeps several in flight and goes back to the watermark): a batch
// after a gap is refused and merges nothing, a duplicate is not merged
// again, and both stay so across a restart.
func TestApplyBatchOutOfOrderAndDuplicates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir, Options{})
	k := Key{"app", "c", "doc"}
	merges := 0
	counting := func(k Key, state, delta []byte) ([]byte, error) {
		merges++
		return setMerge(state, delta)
	}
	apply := func(seq, wantWM uint64, wantErr error, wantMerges int) {
		t.Helper()
		merges = 0
		wm, err := s.ApplyBatch(ctx, "pop-b", seq, seq, []BatchItem{{k, []byte(fmt.Sprintf("t%d;", seq))}}, counting)
		if !errors.Is(err, wantErr) || wm != wantWM || merges != wantMerges {
			t.Fatalf("ApplyBatch(%d..%d) = %d, %v after %d merges; want %d, %v after %d",
				seq, seq, wm, err, merges, wantWM, wantErr, wantMerges)
		}
	}
	apply(1, 1, nil, 1)
	apply(3, 1, ErrGap, 0)
	apply(1, 1, nil, 0)
	if got := s.Seqs()["pop-b"]; got != 1 {
		t.Fatalf("Seqs with a gap at 2 = %d, want 1", got)
	}
	if got := mustGet(t, s, k); got != "t1;" {
		t.Fatalf("state = %q", got)
	}
	// The watermark survives a restart; the gap is still refused.
	s.Close()
	s = openTest(t, dir, Options{})
	apply(3, 1, ErrGap, 0)
	apply(1, 1, nil, 0)
	apply(2, 2, nil, 1)
	apply(3, 3, nil, 1)
	apply(2, 3, nil, 0)
	apply(4, 4, nil, 1)
	if got := mustGet(t, s, k); got != "t1;t2;t3;t4;" {
		t.Fatalf("state = %q", got)
	}
	// Local writes keep their own sequence.
	e, err := s.Update(ctx, k, func(st []byte) ([]byte, []byte, error) {
		ns, err := setMerge(st, []byte("local;"))
		return ns, []byte("local;"), err
	})
	if err != nil || e.Seq != 1 || e.Origin != "pop-a" {
		t.Fatalf("local Update = %+v, %v", e, err)
	}
	// A merge that returns nil deletes the document.
	wm, err := s.ApplyBatch(ctx, "pop-b", 5, 5, []BatchItem{{k, []byte("del")}}, func(Key, []byte, []byte) ([]byte, error) { return nil, nil })
	if err != nil || wm != 5 || mustGet(t, s, k) != "<absent>" {
		t.Fatalf("remote delete = %d, %v, state %q", wm, err, mustGet(t, s, k))
	}
	// A failing merge writes nothing and leaves the watermark.
	boom := errors.New("boom")
	fail := func(Key, []byte, []byte) ([]byte, error) { return nil, boom }
	if _, err := s.ApplyBatch(ctx, "pop-b", 6, 6, []BatchItem{{k, []byte("x;")}}, fail); !errors.Is(err, boom) {
		t.Fatalf("merge error = %v", err)
	}
	if got := s.Seqs()["pop-b"]; got != 5 {
		t.Fatalf("Seqs after a failed merge = %d, want 5", got)
	}
	// Merge (repair: no watermark) follows the same rules.
	if err := s.Merge(ctx, []BatchItem{{k, []byte("m;")}}, batchMerge); err != nil || mustGet(t, s, k) != "m;" {
		t.Fatalf("Merge = %v, state %q", err, mustGet(t, s, k))
	}
	if err := s.Merge(ctx, []BatchItem{{k, []byte("x;")}}, fail); !errors.Is(err, boom) || mustGet(t, s, k) != "m;" {
		t.Fatalf("failing Merge = %v, state %q", err, mustGet(t, s, k))
	}
	if err := s.Merge(ctx, []BatchItem{{k, []byte("del")}}, func(Key, []byte, []byte) ([]byte, error) { return nil, nil }); err != nil || mustGet(t, s, k) != "<absent>" {
		t.Fatalf("deleting Merge = %v, state %q", err, mustGet(t, s, k))
	}
	// Only the local write is logged; the watermark survives another restart.
	if log, err := s.LogSince("pop-a", 0, 0); err != nil || len(log) != 1 {
		t.Fatalf("LogSince(pop-a) = %+v, %v; want the one local write", log, err)
	}
	s.Close()
	s = openTest(t, dir, Options{})
	if got := s.Seqs()["pop-b"]; got != 5 {
		t.Fatalf("Seqs after reopen = %d, want 5", got)
	}
	if got := mustGet(t, s, k); got != "<absent>" {
		t.Fatalf("state after reopen = %q", got)
	}
}

// Several batches of one origin at once, duplicated and in both orders (a
// sender with several in flight and its resends): a refused batch applies
// nothing, an acknowledged one is under the watermark, the watermark never
// moves back, and the document ends with every delta.
func TestApplyBatchConcurrentDuplicates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTest(t, t.TempDir(), Options{})
	k := Key{"app", "c", "doc"}
	const n = 20
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			var last uint64
			for i := uint64(1); i <= n; i++ {
				seq := i
				if w%2 == 1 { // half the workers deliver in reverse order
					seq = n + 1 - i
				}
				wm, err := s.ApplyBatch(ctx, "pop-b", seq, seq, []BatchItem{{k, []byte(fmt.Sprintf("t%02d;", seq))}}, batchMerge)
				if err != nil && !errors.Is(err, ErrGap) {
					t.Error(err)
					return
				}
				if err == nil && wm < seq {
					t.Errorf("batch %d acknowledged with watermark %d", seq, wm)
				}
				if wm < last {
					t.Errorf("the watermark went back from %d to %d", last, wm)
				}
				last = wm
			}
		})
	}
	wg.Wait()
	if got := s.Seqs()["pop-b"]; got != n {
		t.Fatalf("Seqs = %d, want %d", got, n)
	}
	var want []string
	for i := 1; i <= n; i++ {
		want = append(want, fmt.Sprintf("t%02d;", i))
	}
	if got := mustGet(t, s, k); got != strings.Join(want, "") {
		t.Fatalf("state = %q", got)
	}
}

// Many writers on one document chain behind each other's pending writes;
// none may be lost, and the log must replay to the state.
func TestConcurrentUpdatesOneDocument(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTest(t, t.TempDir(), Options{})
	k := Key{"app", "c", "hot"}
	const writers, each = 16, 25
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if _, err := s.Update(ctx, k, appendFn(fmt.Sprintf("w%d-%d", w, i))); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	state := mustGet(t, s, k)
	if n := strings.Count(state, ";"); n != writers*each {
		t.Fatalf("state has %d tokens, want %d", n, writers*each)
	}
	log, err := s.LogSince("pop-a", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var replay bytes.Buffer
	for i, e := range log {
		if e.Seq != uint64(i+1) {
			t.Fatalf("log entry %d has seq %d", i, e.Seq)
		}
		replay.Write(e.Delta)
	}
	if replay.String() != state {
		t.Fatal("replaying the log does not give the state")
	}
}

func TestTruncateLog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir, Options{})
	for i := range 10 {
		if _, err := s.Update(ctx, Key{"app", "c", fmt.Sprint(i)}, appendFn("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.TruncateLog(ctx, "pop-a", 11); err == nil {
		t.Fatal("TruncateLog past the last seq succeeded")
	}
	if err := s.TruncateLog(ctx, "pop-a", 6); err != nil {
		t.Fatal(err)
	}
	if err := s.TruncateLog(ctx, "pop-a", 3); err != nil { // already done: no-op
		t.Fatal(err)
	}
	if _, err := s.LogSince("pop-a", 2, 0); !errors.Is(err, ErrTruncated) {
		t.Fatalf("LogSince into the truncated range = %v, want ErrTruncated", err)
	}
	check := func() {
		t.Helper()
		log, err := s.LogSince("pop-a", 6, 0)
		if err != nil || len(log) != 4 || log[0].Seq != 7 {
			t.Fatalf("LogSince(6) = %+v, %v", log, err)
		}
		if got := s.Seqs()["pop-a"]; got != 10 {
			t.Fatalf("Seqs = %d", got)
		}
	}
	check()
	s.Close()
	s = openTest(t, dir, Options{})
	check()
	if _, err := s.LogSince("pop-a", 5, 0); !errors.Is(err, ErrTruncated) {
		t.Fatalf("after reopen, LogSince(5) = %v, want ErrTruncated", err)
	}
	// Truncating everything keeps the sequence going.
	if err := s.TruncateLog(ctx, "pop-a", 10); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openTest(t, dir, Options{})
	e, err := s.Update(ctx, Key{"app", "c", "x"}, appendFn("y"))
	if err != nil || e.Seq != 11 {
		t.Fatalf("Update after full truncation = %+v, %v", e, err)
	}
}

func TestCloseRefusesWork(t *testing.T) {
	t.Parallel()
	s := openTest(t, t.TempDir(), Options{})
	k := Key{"a", "c", "d"}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(context.Background(), k, appendFn("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Update after Close = %v", err)
	}
	if _, _, err := s.Get(k); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close = %v", err)
	}
	if _, _, err := s.List("a", "c", "", 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("List after Close = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}
