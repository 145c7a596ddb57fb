package spot

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/verge-edge/verge/crdt"
	"github.com/verge-edge/verge/internal/lincheck"
)

// engineTarget drives an Engine (the engine itself, or a client of it) for
// lincheck's workloads, in app.
type engineTarget struct {
	e   Engine
	app string
}

func targets(app string, es []Engine) []lincheck.Target {
	out := make([]lincheck.Target, len(es))
	for i, e := range es {
		out[i] = engineTarget{e, app}
	}
	return out
}

// verdict translates an engine error into what lincheck records.
func verdict(err error) error {
	var ce *ConflictError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ce):
		return &lincheck.ConflictError{Current: ce.Current}
	case errors.Is(err, ErrUnknownOutcome): // before ErrUnavailable, which it also matches
		return fmt.Errorf("%w: %w", lincheck.ErrUnknown, err)
	case errors.Is(err, ErrUnavailable):
		return fmt.Errorf("%w: %w", lincheck.ErrNotApplied, err)
	}
	return err
}

func (x engineTarget) Claim(ctx context.Context, ns, key, owner string) (bool, string, error) {
	r, err := x.e.Claim(ctx, x.app, ns, key, owner)
	return r.Claimed, r.Owner, verdict(err)
}

func (x engineTarget) Release(ctx context.Context, ns, key, owner string) (bool, error) {
	ok, err := x.e.Release(ctx, x.app, ns, key, owner)
	return ok, verdict(err)
}

func (x engineTarget) Take(ctx context.Context, counter string, n int64) (bool, int64, error) {
	t, err := x.e.Take(ctx, x.app, counter, n)
	return t.OK, t.Remaining, verdict(err)
}

func (x engineTarget) Restock(ctx context.Context, counter string, n int64) (int64, error) {
	r, err := x.e.Restock(ctx, x.app, counter, n)
	return r, verdict(err)
}

func (x engineTarget) Counter(ctx context.Context, counter string) (int64, error) {
	r, err := x.e.Counter(ctx, x.app, counter)
	return r, verdict(err)
}

func (x engineTarget) GetDoc(ctx context.Context, key string) ([]byte, uint64, error) {
	d, rev, err := x.e.GetDoc(ctx, x.app, key)
	return d, rev, verdict(err)
}

func (x engineTarget) UpdateDoc(ctx context.Context, key string, rev uint64, ops []crdt.Op) ([]byte, uint64, error) {
	d, r, err := x.e.UpdateDoc(ctx, x.app, key, rev, ops)
	return d, r, verdict(err)
}

// TestLinearizable drives claims, stock and conditional updates from four
// edge connections (twelve workers) and a central function using the
// engine directly, through two engines serving one bucket in one queue
// group (as two central servers would), and checks the history.
func TestLinearizable(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	e1 := newEngine(t, s, Config{})
	e2 := newEngine(t, s, Config{})
	serve(t, s, e1, "spot")
	serve(t, s, e2, "spot")
	var es []Engine
	for range 4 {
		es = append(es, NewClient(connect(t, s.ClientURL()), "spot", 5*time.Second))
	}
	es = append(es, e1)
	w := &lincheck.Workload{
		ClaimKeys: []string{"joe", "ann", "bob"},
		Counters:  []string{"sku-1", "sku-2"},
		Docs:      []string{"d1", "d2"},
		Releases:  true,
		Owners:    4,
	}
	h := lincheck.NewHistory()
	w.Run(t, testCtx(t), h, targets("lin", es), 15, 150, 8*time.Second)
	if len(h.Ops) < 500 {
		t.Fatalf("only %d operations recorded", len(h.Ops))
	}
	if n := h.Pending(); n > 0 {
		t.Fatalf("%d operations have no outcome without any fault", n)
	}
	h.Check(t)
	if e1.refusals.Load()+e2.refusals.Load() == 0 {
		t.Log("note: the two engines never refused each other's writes")
	}
}
