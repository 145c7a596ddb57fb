package pop

import (
	"errors"
	"fmt"
	"testing"

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

func TestSpotStatus(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err  error
		want uint32
	}{
		{fmt.Errorf("take: %w", bothKinds{}), wasm.StatusUnknown},
		{fmt.Errorf("take: %w", spot.ErrUnavailable), wasm.StatusUnavailable},
		{fmt.Errorf("take: %w", spot.ErrInvalid), wasm.StatusInvalid},
	}
	for _, c := range cases {
		var de wasm.DocError
		if err := spotStatus(c.err); !errors.As(err, &de) || de.Status() != c.want {
			t.Errorf("spotStatus(%v) = %v, want status %d", c.err, err, c.want)
		}
	}
}
