package host

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/verge-edge/verge/internal/obs"
	"github.com/verge-edge/verge/internal/wasm"
)

// Guests' own spans, in the trace of the request they serve: a span the
// guest starts is a child of the span it was in (the guest's execution, or
// another of its spans), and attributes go on any of them. When the request
// is not traced these calls succeed and record nothing.

// maxGuestSpans bounds the spans one request may start.
const maxGuestSpans = 64

func traceCapability() wasm.Capability {
	return wasm.Capability{Name: "trace", Functions: []wasm.HostFunction{
		{Name: "trace_span_start", Params: wasm.I32s(4), Call: spanStart},
		{Name: "trace_span_end", Params: wasm.I32s(1), Call: spanEnd},
		{Name: "trace_span_attr", Params: wasm.I32s(5), Call: spanAttr},
	}}
}

type guestSpansKey struct{}

// guestSpans are a request's spans; handle n is spans[n-1], 0 the span the
// guest runs in.
type guestSpans struct {
	spans []trace.Span
	ctxs  []context.Context
}

func spansOf(ctx context.Context, c *wasm.Call) *guestSpans {
	if g, ok := c.Value(guestSpansKey{}).(*guestSpans); ok {
		return g
	}
	g := &guestSpans{}
	c.SetValue(guestSpansKey{}, g)
	c.OnEnd(func() { // a span the guest left open ends with its request
		for _, s := range g.spans {
			if s != nil {
				s.End()
			}
		}
	})
	return g
}

// span returns the span and context of handle h (0: the guest's own); g
// may be nil (no span started yet).
func (g *guestSpans) span(ctx context.Context, h uint32) (trace.Span, context.Context, bool) {
	if h == 0 {
		return trace.SpanFromContext(ctx), ctx, true
	}
	if g == nil || int(h) > len(g.spans) || g.spans[h-1] == nil {
		return nil, nil, false
	}
	return g.spans[h-1], g.ctxs[h-1], true
}

// trace_span_start(parent, name, name_len, handle_out): starts a span under
// parent (0: the guest's execution) and writes its handle.
func spanStart(ctx context.Context, c *wasm.Call, a []uint64) uint32 {
	name, ok := c.Bytes(uint32(a[1]), uint32(a[2]))
	if !ok || !c.Writable(uint32(a[3]), 4) {
		return wasm.StatusMemory
	}
	if len(name) == 0 || len(name) > 256 {
		return c.Refuse(wasm.StatusInvalid, "a span's name is 1 to 256 bytes, got %d", len(name))
	}
	g := spansOf(ctx, c)
	_, pctx, ok := g.span(ctx, uint32(a[0]))
	if !ok {
		return c.Refuse(wasm.StatusBadHandle, "no open span %d", a[0])
	}
	if len(g.spans) == maxGuestSpans {
		return c.Refuse(wasm.StatusLimit, "a request starts at most %d spans", maxGuestSpans)
	}
	sctx, s := obs.Child(pctx, string(name))
	g.spans = append(g.spans, s)
	g.ctxs = append(g.ctxs, sctx)
	c.PutUint32(uint32(a[3]), uint32(len(g.spans)))
	return wasm.StatusOK
}

// trace_span_end(handle): ends a span the guest started.
func spanEnd(ctx context.Context, c *wasm.Call, a []uint64) uint32 {
	g, _ := c.Value(guestSpansKey{}).(*guestSpans)
	h := uint32(a[0])
	s, _, ok := g.span(ctx, h)
	if !ok || h == 0 {
		return c.Refuse(wasm.StatusBadHandle, "no open span %d the guest started", h)
	}
	s.End()
	g.spans[h-1] = nil
	return wasm.StatusOK
}

// trace_span_attr(handle, key, key_len, value, value_len): sets a string
// attribute on a span (0: the guest's execution).
func spanAttr(ctx context.Context, c *wasm.Call, a []uint64) uint32 {
	k, ok1 := c.Bytes(uint32(a[1]), uint32(a[2]))
	v, ok2 := c.Bytes(uint32(a[3]), uint32(a[4]))
	if !ok1 || !ok2 {
		return wasm.StatusMemory
	}
	if len(k) == 0 || len(k) > 256 || len(v) > 4096 {
		return c.Refuse(wasm.StatusInvalid, "an attribute's key is 1 to 256 bytes and its value at most 4096")
	}
	g, _ := c.Value(guestSpansKey{}).(*guestSpans) // nil before the first span: handle 0 only
	s, _, ok := g.span(ctx, uint32(a[0]))
	if !ok {
		return c.Refuse(wasm.StatusBadHandle, "no open span %d", a[0])
	}
	s.SetAttributes(attribute.String(string(k), string(v)))
	return wasm.StatusOK
}
