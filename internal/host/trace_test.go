package host

import (
	"context"
	"testing"
)

// The guest's span handles are checked: ending 0 or an unknown handle, and
// more than maxGuestSpans spans, are refused, not crashes.
func TestGuestSpanHandles(t *testing.T) {
	t.Parallel()
	g := &guestSpans{}
	ctx := context.Background()
	if _, _, ok := g.span(ctx, 0); !ok {
		t.Fatal("handle 0 (the execution span) must resolve")
	}
	for _, h := range []uint32{1, 7, 1 << 31} {
		if _, _, ok := g.span(ctx, h); ok {
			t.Fatalf("handle %d resolved with no spans open", h)
		}
		var none *guestSpans // no span started in the request
		if _, _, ok := none.span(ctx, h); ok {
			t.Fatalf("handle %d resolved before any span", h)
		}
	}
}
