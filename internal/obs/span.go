package obs

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	instr "go.opentelemetry.io/otel/sdk/instrumentation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// spanProvider is Verge's own implementation of OpenTelemetry's tracing
// API, used when otlpProcessor exports (the usual case): its spans are
// plain structs whose End encodes them for the processor, with none of the
// SDK's machinery around a span (processors' OnStart, a snapshot at End,
// a locked random source for IDs). It keeps what the SDK gives Verge's
// operators: the OTEL_TRACES_SAMPLER(_ARG) samplers, the OTEL_*_LIMIT span
// limits (SetupTracing keeps the SDK's spans when a value length limit is
// set), W3C propagation (a span's SpanContext is the API's), kinds,
// status, events, RecordError, links, the resource and scopes. RATIONALE.md
// says why.
type spanProvider struct {
	embedded.TracerProvider
	proc    *otlpProcessor
	sampler sampler
	limits  sdktrace.SpanLimits
	ids     func(parent trace.TraceID) (trace.TraceID, trace.SpanID) // newIDs; a test's sequence

	mu      sync.Mutex
	tracers map[instr.Scope]*spanTracer
}

func newSpanProvider(proc *otlpProcessor, s sampler, limits sdktrace.SpanLimits) *spanProvider {
	return &spanProvider{proc: proc, sampler: s, limits: limits, tracers: map[instr.Scope]*spanTracer{}}
}

// Tracer returns the tracer of a scope, the same one each time it is asked.
func (p *spanProvider) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	if name == "" {
		name = "go.opentelemetry.io/otel/sdk/tracer" // as the SDK names it
	}
	c := trace.NewTracerConfig(opts...)
	scope := instr.Scope{Name: name, Version: c.InstrumentationVersion(), SchemaURL: c.SchemaURL(), Attributes: c.InstrumentationAttributes()}
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.tracers[scope]
	if t == nil {
		t = &spanTracer{p: p, scope: scope}
		p.tracers[scope] = t
	}
	return t
}

// ForceFlush exports every span that has ended.
func (p *spanProvider) ForceFlush(ctx context.Context) error { return p.proc.ForceFlush(ctx) }

// Shutdown exports what has ended and stops: spans ending later are not
// exported.
func (p *spanProvider) Shutdown(ctx context.Context) error { return p.proc.Shutdown(ctx) }

// sampler is one of the samplers OTEL_TRACES_SAMPLER names: a root span is
// sampled always, never, or when its trace id is below a bound (the SDK's
// TraceIDRatioBased test, so that a trace is sampled alike by both); a
// parent-based one follows a valid parent's sampled flag.
type sampler struct {
	parentBased bool
	root        rootSampling
	bound       uint64 // of traceIDRatio: the ratio times 2^63
}

type rootSampling uint8

const (
	sampleAlways rootSampling = iota
	sampleNever
	sampleRatio
)

// sample decides a new span's fate from its parent and trace id.
func (s sampler) sample(parent trace.SpanContext, tid trace.TraceID) bool {
	if s.parentBased && parent.IsValid() {
		return parent.IsSampled()
	}
	switch s.root {
	case sampleAlways:
		return true
	case sampleRatio:
		return binary.BigEndian.Uint64(tid[8:16])>>1 < s.bound
	}
	return false
}

// ratioSampler is TraceIDRatioBased(f) as the SDK makes it.
func ratioSampler(f float64) sampler {
	if f >= 1 {
		return sampler{root: sampleAlways}
	}
	return sampler{root: sampleRatio, bound: uint64(max(f, 0) * (1 << 63))}
}

// samplerFromEnv reads OTEL_TRACES_SAMPLER(_ARG) as the SDK does: the
// default is parentbased_always_on, a ratio that is missing is 1, and what
// the SDK would refuse is reported and replaced as the SDK replaces it.
func samplerFromEnv() sampler {
	def := sampler{parentBased: true}
	name, ok := os.LookupEnv("OTEL_TRACES_SAMPLER")
	if !ok {
		return def
	}
	name = strings.ToLower(strings.TrimSpace(name))
	arg, hasArg := os.LookupEnv("OTEL_TRACES_SAMPLER_ARG")
	ratio := func() sampler {
		if !hasArg {
			return ratioSampler(1)
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(arg), 64)
		if err != nil || v < 0 || v > 1 {
			otel.Handle(fmt.Errorf("tracing: OTEL_TRACES_SAMPLER_ARG %q is not a ratio from 0 to 1; sampling every trace", arg))
			return ratioSampler(1)
		}
		return ratioSampler(v)
	}
	switch name {
	case "always_on":
		return sampler{root: sampleAlways}
	case "always_off":
		return sampler{root: sampleNever}
	case "traceidratio":
		return ratio()
	case "parentbased_always_on":
		return sampler{parentBased: true, root: sampleAlways}
	case "parentbased_always_off":
		return sampler{parentBased: true, root: sampleNever}
	case "parentbased_traceidratio":
		s := ratio()
		s.parentBased = true
		return s
	}
	otel.Handle(fmt.Errorf("tracing: unsupported sampler: %s", name))
	return def
}

type spanTracer struct {
	embedded.Tracer
	p     *spanProvider
	scope instr.Scope
}

// newIDs are a span's ids: its parent's trace id (a new one if it has
// none) and a new span id, from the runtime's per-thread random source, so
// concurrent requests share no lock.
func newIDs(parent trace.TraceID) (tid trace.TraceID, sid trace.SpanID) {
	tid = parent
	for !tid.IsValid() {
		binary.NativeEndian.PutUint64(tid[:8], rand.Uint64())
		binary.NativeEndian.PutUint64(tid[8:], rand.Uint64())
	}
	for !sid.IsValid() {
		binary.NativeEndian.PutUint64(sid[:], rand.Uint64())
	}
	return tid, sid
}

// Start starts a span under ctx's span (a new trace if there is none, or
// WithNewRoot says so). A span the sampler drops still has ids of its own
// and carries the trace on, unsampled, as the SDK's does.
func (t *spanTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	cfg := trace.NewSpanStartConfig(opts...)
	return t.start(ctx, name, cfg.SpanKind(), cfg.Attributes(), cfg.Timestamp(), cfg.Links(), cfg.NewRoot())
}

func (t *spanTracer) start(ctx context.Context, name string, kind trace.SpanKind, attrs []attribute.KeyValue,
	at time.Time, links []trace.Link, newRoot bool) (context.Context, trace.Span) {
	if ctx == nil {
		ctx = context.Background()
	}
	var psc trace.SpanContext
	if !newRoot {
		psc = trace.SpanContextFromContext(ctx)
	}
	ids := newIDs
	if t.p.ids != nil {
		ids = t.p.ids
	}
	tid, sid := ids(psc.TraceID())
	scc := trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceState: psc.TraceState()}
	if !t.p.sampler.sample(psc, tid) {
		scc.TraceFlags = psc.TraceFlags() &^ trace.FlagsSampled
		s := &unsampledSpan{sc: trace.NewSpanContext(scc), p: t.p}
		return trace.ContextWithSpan(ctx, s), s
	}
	scc.TraceFlags = psc.TraceFlags() | trace.FlagsSampled
	s := &span{t: t, sc: trace.NewSpanContext(scc), r: records.Get().(*spanRecord)}
	r := s.r
	r.sc = s.sc
	r.parent = psc
	r.name = name
	r.kind = trace.ValidateSpanKind(kind)
	if r.start = at; r.start.IsZero() {
		r.start = time.Now()
	}
	for _, l := range links {
		r.addLink(t.p.limits, l)
	}
	r.addAttrs(t.p.limits, attrs)
	return trace.ContextWithSpan(ctx, s), s
}

// spanData is what an ended span exports: appendSpan encodes it, whether
// it came from one of our spans or from the SDK's.
type spanData struct {
	sc, parent    trace.SpanContext
	name          string
	kind          trace.SpanKind
	start, end    time.Time
	attrs         []attribute.KeyValue
	droppedAttrs  int
	events        []sdktrace.Event
	droppedEvents int
	links         []sdktrace.Link
	droppedLinks  int
	status        sdktrace.Status
}

// span is a recording (and sampled) span. What it records is in a
// spanRecord under mu until it ends; End encodes the record for the
// processor and gives it back to the pool, so a traced request's spans
// allocate only this small struct. The span itself is not reused: whoever
// holds it (a context, a goroutine the request started, a guest's handle
// table) may read its SpanContext at any time, and calls after End find
// it ended and do nothing.
type span struct {
	embedded.Span
	t     *spanTracer
	sc    trace.SpanContext
	mu    sync.Mutex
	ended atomic.Bool // set under mu; read alone by IsRecording
	r     *spanRecord // nil once ended
}

// spanRecord is what a span records until it ends.
type spanRecord struct {
	spanData
	// inline holds the first attributes: a request's spans have up to
	// seven, so their attributes take no allocation of their own.
	inline [8]attribute.KeyValue
}

// records keeps ended spans' records for new spans: a record is ~0.8 KB,
// the largest allocation of a traced request, and a request has two.
var records = sync.Pool{New: func() any {
	r := &spanRecord{}
	r.attrs = r.inline[:0]
	return r
}}

// release clears what the record refers to (names, attribute values,
// events) and pools it.
func (r *spanRecord) release() {
	clear(r.inline[:])
	r.spanData = spanData{attrs: r.inline[:0]} // an attribute slice grown beyond inline goes with the garbage
	records.Put(r)
}

func (s *span) SpanContext() trace.SpanContext       { return s.sc }
func (s *span) IsRecording() bool                    { return !s.ended.Load() }
func (s *span) TracerProvider() trace.TracerProvider { return s.t.p }

// End ends the span (at the option's time, else now) and hands its
// encoding to the processor. A span ended in a deferred call while its
// goroutine panics records the panic as an exception event, as the SDK's
// does, and the panic goes on.
func (s *span) End(opts ...trace.SpanEndOption) {
	s.mu.Lock()
	if s.ended.Load() {
		s.mu.Unlock()
		return
	}
	r := s.r
	end := r.start.Add(time.Since(r.start)) // monotonic, as the SDK's
	if p := recover(); p != nil {
		defer panic(p)
		r.addEvent(s.t.p.limits, "exception", trace.WithAttributes(attribute.String("exception.type", typeName(p)),
			attribute.String("exception.message", fmt.Sprint(p))))
	}
	if len(opts) > 0 {
		if c := trace.NewSpanEndConfig(opts...); !c.Timestamp().IsZero() {
			end = c.Timestamp()
		}
	}
	r.end = end
	s.r = nil
	s.ended.Store(true)
	s.mu.Unlock()
	s.t.p.proc.enqueue(s.t.scope, &r.spanData) // encodes it: the record is free after
	r.release()
}

func (s *span) SetAttributes(kvs ...attribute.KeyValue) {
	if len(kvs) == 0 {
		return
	}
	s.mu.Lock()
	if !s.ended.Load() {
		s.r.addAttrs(s.t.p.limits, kvs)
	}
	s.mu.Unlock()
}

// addAttrs sets attributes as the SDK does: an invalid one is dropped, a
// key set again keeps its place and takes the new value, and beyond the
// count limit new keys are dropped and counted.
func (r *spanRecord) addAttrs(limits sdktrace.SpanLimits, kvs []attribute.KeyValue) {
	limit := limits.AttributeCountLimit
next:
	for _, kv := range kvs {
		if !kv.Valid() {
			r.droppedAttrs++
			continue
		}
		for i := range r.attrs {
			if r.attrs[i].Key == kv.Key {
				r.attrs[i] = kv
				continue next
			}
		}
		if limit >= 0 && len(r.attrs) >= limit {
			r.droppedAttrs++
			continue
		}
		r.attrs = append(r.attrs, kv)
	}
}

func (s *span) SetStatus(code codes.Code, description string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended.Load() || s.r.status.Code > code { // Ok stands; Unset changes nothing
		return
	}
	s.r.status = sdktrace.Status{Code: code}
	if code == codes.Error {
		s.r.status.Description = description
	}
}

func (s *span) SetName(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended.Load() {
		s.r.name = name
	}
}

func (s *span) AddEvent(name string, opts ...trace.EventOption) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended.Load() {
		s.r.addEvent(s.t.p.limits, name, opts...)
	}
}

// RecordError adds an "exception" event with the error's type and message
// (and the stack, if asked), as the SDK does.
func (s *span) RecordError(err error, opts ...trace.EventOption) {
	if err == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended.Load() {
		return
	}
	opts = append(opts, trace.WithAttributes(attribute.String("exception.type", typeName(err)), attribute.String("exception.message", err.Error())))
	if c := trace.NewEventConfig(opts...); c.StackTrace() {
		buf := make([]byte, 2048)
		opts = append(opts, trace.WithAttributes(attribute.String("exception.stacktrace", string(buf[:runtime.Stack(buf, false)]))))
	}
	s.r.addEvent(s.t.p.limits, "exception", opts...)
}

// typeName names an error's (or a panic's) type as the SDK does.
func typeName(v any) string {
	t := reflect.TypeOf(v)
	if t.PkgPath() == "" && t.Name() == "" {
		return t.String()
	}
	return t.PkgPath() + "." + t.Name()
}

// addEvent keeps at most the event count limit, the newest (as the SDK's
// queue does), each with at most its attribute limit.
func (r *spanRecord) addEvent(limits sdktrace.SpanLimits, name string, opts ...trace.EventOption) {
	c := trace.NewEventConfig(opts...)
	e := sdktrace.Event{Name: name, Attributes: c.Attributes(), Time: c.Timestamp()}
	if limit := limits.AttributePerEventCountLimit; limit >= 0 && len(e.Attributes) > limit {
		e.DroppedAttributeCount = len(e.Attributes) - limit
		e.Attributes = e.Attributes[:limit]
	}
	r.events = evict(r.events, e, limits.EventCountLimit, &r.droppedEvents)
}

func (s *span) AddLink(l trace.Link) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended.Load() {
		s.r.addLink(s.t.p.limits, l)
	}
}

func (r *spanRecord) addLink(limits sdktrace.SpanLimits, link trace.Link) {
	if !link.SpanContext.IsValid() && len(link.Attributes) == 0 && link.SpanContext.TraceState().Len() == 0 {
		return
	}
	l := sdktrace.Link{SpanContext: link.SpanContext, Attributes: link.Attributes}
	if limit := limits.AttributePerLinkCountLimit; limit >= 0 && len(l.Attributes) > limit {
		l.DroppedAttributeCount = len(l.Attributes) - limit
		l.Attributes = l.Attributes[:limit]
	}
	r.links = evict(r.links, l, limits.LinkCountLimit, &r.droppedLinks)
}

// evict appends v to q, dropping the oldest when q holds limit already (a
// negative limit: no limit).
func evict[T any](q []T, v T, limit int, dropped *int) []T {
	switch {
	case limit == 0:
		*dropped++
		return q
	case limit > 0 && len(q) >= limit:
		copy(q, q[1:])
		q = q[:len(q)-1]
		*dropped++
	}
	return append(q, v)
}

// unsampledSpan is a span the sampler dropped: it records nothing and
// carries its context (the trace, unsampled) to children and other PoPs.
type unsampledSpan struct {
	embedded.Span
	sc trace.SpanContext
	p  *spanProvider
}

func (s *unsampledSpan) SpanContext() trace.SpanContext          { return s.sc }
func (s *unsampledSpan) IsRecording() bool                       { return false }
func (s *unsampledSpan) TracerProvider() trace.TracerProvider    { return s.p }
func (s *unsampledSpan) End(...trace.SpanEndOption)              {}
func (s *unsampledSpan) SetAttributes(...attribute.KeyValue)     {}
func (s *unsampledSpan) SetStatus(codes.Code, string)            {}
func (s *unsampledSpan) SetName(string)                          {}
func (s *unsampledSpan) AddEvent(string, ...trace.EventOption)   {}
func (s *unsampledSpan) RecordError(error, ...trace.EventOption) {}
func (s *unsampledSpan) AddLink(trace.Link)                      {}

var (
	_ trace.TracerProvider = (*spanProvider)(nil)
	_ trace.Span           = (*span)(nil)
	_ trace.Span           = (*unsampledSpan)(nil)
)
