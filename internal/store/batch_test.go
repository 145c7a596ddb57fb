package store

import (
	"context"
	"errors"
	"testing"
)

func batchMerge(_ Key, state, delta []byte) ([]byte, error) { return setMerge(state, delta) }

func TestApplyBatch(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openTest(t, dir, Options{})
	ctx := context.Background()
	ka := Key{"app", "c", "a"}
	kb := Key{"app", "c", "b"}

	// A batch after a gap is refused and applies nothing.
	if _, err := s.ApplyBatch(ctx, "pop-b", 2, 3, []BatchItem{{ka, []byte("x;")}}, batchMerge); !errors.Is(err, ErrGap) {
		t.Fatalf("batch 2..3 on an empty store: err = %v, want ErrGap", err)
	}
	if got := mustGet(t, s, ka); got != "<absent>" {
		t.Fatalf("after a refused batch: %s = %q", ka, got)
	}
	wm, err := s.ApplyBatch(ctx, "pop-b", 1, 5, []BatchItem{{ka, []byte("x;")}, {kb, []byte("y;")}, {ka, []byte("z;")}}, batchMerge)
	if err != nil || wm != 5 {
		t.Fatalf("batch 1..5: wm %d, err %v; want 5, nil", wm, err)
	}
	if got := mustGet(t, s, ka); got != "x;z;" {
		t.Fatalf("%s = %q, want x;z;", ka, got)
	}
	// An empty batch advances the watermark (entries not meant for us).
	if wm, err = s.ApplyBatch(ctx, "pop-b", 6, 9, nil, batchMerge); err != nil || wm != 9 {
		t.Fatalf("empty batch 6..9: wm %d, err %v; want 9", wm, err)
	}
	// Overlapping and duplicate batches: merges are idempotent.
	if wm, err = s.ApplyBatch(ctx, "pop-b", 3, 10, []BatchItem{{kb, []byte("w;")}}, batchMerge); err != nil || wm != 10 {
		t.Fatalf("overlapping batch 3..10: wm %d, err %v", wm, err)
	}
	if wm, err = s.ApplyBatch(ctx, "pop-b", 1, 5, []BatchItem{{ka, []byte("dup;")}}, batchMerge); err != nil || wm != 10 {
		t.Fatalf("duplicate batch 1..5: wm %d, err %v", wm, err)
	}
	if got := mustGet(t, s, ka); got != "x;z;" {
		t.Fatalf("a duplicate batch was merged: %s = %q", ka, got)
	}
	if _, err := s.ApplyBatch(ctx, "pop-a", 1, 1, nil, batchMerge); err == nil {
		t.Fatal("ApplyBatch accepted this store's own origin")
	}
	if _, err := s.ApplyBatch(ctx, "pop-b", 12, 11, nil, batchMerge); err == nil {
		t.Fatal("ApplyBatch accepted an empty range")
	}
	// Receivers do not log what they apply.
	if e, err := s.LogSince("pop-b", 0, 100); err != nil || len(e) != 0 {
		t.Fatalf("LogSince(pop-b) = %d entries, %v; a batch must not be logged", len(e), err)
	}
	s.Close()

	// The watermark and the states survive a reopen.
	s = openTest(t, dir, Options{})
	if got := s.Seqs()["pop-b"]; got != 10 {
		t.Fatalf("after reopen Seqs[pop-b] = %d, want 10", got)
	}
	if got := mustGet(t, s, kb); got != "w;y;" {
		t.Fatalf("after reopen %s = %q, want w;y;", kb, got)
	}
}
