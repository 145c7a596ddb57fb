package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/documents"
	"github.com/verge-edge/verge/internal/spot"
	"github.com/verge-edge/verge/internal/wasm"
)

// bothKinds matches ErrUnknownOutcome and ErrUnavailable, as the SPOT
// client's error for a request sent and never answered does.
type bothKinds struct{}

func (bothKinds) Error() string { return "no answer" }
func (bothKinds) Is(target error) bool {
	return target == spot.ErrUnknownOutcome || target == spot.ErrUnavailable
}

func TestStatus(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err  error
		want uint32
	}{
		{fmt.Errorf("take: %w", bothKinds{}), wasm.StatusUnknown},
		{fmt.Errorf("take: %w", spot.ErrUnavailable), wasm.StatusUnavailable},
		{fmt.Errorf("take: %w", spot.ErrInvalid), wasm.StatusInvalid},
		{&spot.ConflictError{Key: "k", Expected: 1, Current: 2}, wasm.StatusConflict},
		{fmt.Errorf("get: %w", documents.ErrNotFound), wasm.StatusNotFound},
		{fmt.Errorf("update: %w", documents.ErrTooLarge), wasm.StatusLimit},
		{fmt.Errorf("update: %w", documents.ErrUnknownCollection), wasm.StatusInvalid},
		{Errorf(ErrNoFunction, "no such function"), wasm.StatusNotFound},
		{errNoSpot, wasm.StatusUnsupported},
		{fmt.Errorf("waiting: %w", context.DeadlineExceeded), wasm.StatusUnavailable},
		{errors.New("disk on fire"), wasm.StatusInternal},
		{nil, wasm.StatusOK},
	}
	for _, c := range cases {
		if got := Status(c.err); got != c.want {
			t.Errorf("Status(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

// A document that must come from its user's home PoP, when neither the
// home nor the centre answers, is unavailable (retry later), not an
// internal error: nothing here changed.
func TestFollowerUnreachableIsUnavailable(t *testing.T) {
	t.Parallel()
	down := errors.New("connection refused")
	for _, home := range []string{"b", "c"} { // another edge, then the centre itself
		f := &Follower{Self: "a", Central: "c", Local: func(string, string) bool { return true },
			Fetch:       func(context.Context, string, string, string, string) error { return down },
			HomeTimeout: time.Second, CentralTimeout: time.Second, Log: slog.New(slog.DiscardHandler)}
		err := f.pull(context.Background(), home, "shop", "carts", "ada")
		if err == nil || Status(err) != wasm.StatusUnavailable || !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("home %s: %v (status %d), want UNAVAILABLE naming the cause", home, err, Status(err))
		}
	}
}
