package replicate

import (
	"context"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/verge-edge/verge/internal/mesh"
	"github.com/verge-edge/verge/internal/obs"
)

// Following a write into its replication: when a traced request writes, its
// span context is remembered under the write's log sequence number; a batch
// that carries such entries names their traces in a message header, and
// the peer that applies the batch records, in each of those traces, a span
// of its own for the application. So one trace shows a write and when
// every peer had it.

// tracesHeader carries the traceparents of the traced writes in a batch.
const tracesHeader = "Verge-Traces"

// maxTracedPerBatch bounds the traces one batch names: a batch of
// thousands of traced writes would otherwise carry a header as large.
const maxTracedPerBatch = 16

// traced remembers the span contexts of recent traced writes, by sequence.
type traced struct {
	mu   sync.Mutex
	seqs map[uint64]trace.SpanContext
	ring [4096]uint64 // the seqs in seqs, oldest overwritten first
	next int
}

// Traced records that the write logged as seq belongs to ctx's trace
// (when it is sampled), for the batches that carry it.
func (r *Replicator) Traced(ctx context.Context, seq uint64) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsSampled() {
		return
	}
	t := &r.traces
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seqs == nil {
		t.seqs = map[uint64]trace.SpanContext{}
	}
	delete(t.seqs, t.ring[t.next])
	t.ring[t.next] = seq
	t.next = (t.next + 1) % len(t.ring)
	t.seqs[seq] = sc
}

// batchContext returns ctx with the traces of the writes in [from, to] that
// are in the batch (seqs), for the push.
func (r *Replicator) batchContext(ctx context.Context, seqs []uint64) context.Context {
	t := &r.traces
	t.mu.Lock()
	var parents []string
	for _, s := range seqs {
		if sc, ok := t.seqs[s]; ok {
			carrier := propagation.MapCarrier{}
			propagation.TraceContext{}.Inject(trace.ContextWithSpanContext(context.Background(), sc), carrier)
			parents = append(parents, carrier["traceparent"])
			if len(parents) == maxTracedPerBatch {
				break
			}
		}
	}
	t.mu.Unlock()
	if len(parents) == 0 {
		return ctx
	}
	return mesh.WithHeader(ctx, tracesHeader, strings.Join(parents, ","))
}

// appliedSpans records, in the trace of each traced write of a batch, that
// this PoP applied it.
func (r *Replicator) appliedSpans(ctx context.Context, from, origin string, first, last uint64, items int, start time.Time) {
	h := mesh.Header(ctx, tracesHeader)
	if h == "" {
		return
	}
	for _, tp := range strings.Split(h, ",") {
		pctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": tp})
		if !trace.SpanContextFromContext(pctx).IsValid() {
			continue
		}
		_, span := obs.Tracer().Start(pctx, "replicate apply", trace.WithTimestamp(start), trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attribute.String("verge.pop", r.opts.Self), attribute.String("verge.replicate.from", from),
				attribute.String("verge.replicate.origin", origin), attribute.Int64("verge.replicate.first_seq", int64(first)),
				attribute.Int64("verge.replicate.last_seq", int64(last)), attribute.Int("verge.replicate.items", items)))
		span.End()
	}
}
