package host

import (
	"context"
	"errors"
	"fmt"
	"testing"

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
