// Package obs is how a PoP is observed: OpenTelemetry traces exported over
// OTLP (configured by the standard OTEL_* environment), Prometheus metrics,
// and structured logs that carry the trace of the request that caused them.
// It is the one package that imports OpenTelemetry's SDK and Prometheus'
// client; the rest of the code starts spans through Tracer and records
// through a *Metrics.
package obs

import (
	"context"
	"fmt"
	"net/http"
	"net/textproto"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// instrumentation names Verge's spans.
const instrumentation = "github.com/verge-edge/verge"

// Tracer is the tracer every span of Verge starts from. Without Setup (or
// without an OTLP endpoint in the environment) it is OpenTelemetry's no-op,
// which costs a few nanoseconds a span.
func Tracer() trace.Tracer {
	// The SDK's provider finds a named tracer under a mutex in a map keyed
	// by its whole scope; a request asks two to five times. The tracer is
	// kept with the provider it came from, since tests install their own.
	tp := otel.GetTracerProvider()
	if c := tracer.Load(); c != nil && c.tp == tp {
		return c.tr
	}
	tr := tp.Tracer(instrumentation)
	tracer.Store(&cachedTracer{tp: tp, tr: tr})
	return tr
}

type cachedTracer struct {
	tp trace.TracerProvider
	tr trace.Tracer
}

var tracer atomic.Pointer[cachedTracer]

// Propagator carries trace context in W3C traceparent/tracestate headers
// (HTTP from clients and between PoPs, NATS message headers on the mesh).
var Propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// TraceOptions configure tracing.
type TraceOptions struct {
	// PoP names the process in every span (verge.pop).
	PoP string
	// Endpoint overrides OTEL_EXPORTER_OTLP_ENDPOINT (a config file's
	// [trace] section); "" keeps the environment's.
	Endpoint string
}

// Enabled reports whether the environment or o asks for traces.
func (o TraceOptions) Enabled() bool {
	return o.Endpoint != "" || os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" ||
		os.Getenv("OTEL_TRACES_EXPORTER") == "otlp"
}

// SetupTracing installs the process's tracer provider: spans batched and
// exported over OTLP/HTTP (Verge's own spans exported by otlpProcessor, or
// the SDK's spans and batch processor and exporter when the environment
// asks for what they do not do), sampled as OTEL_TRACES_SAMPLER(_ARG) say
// (default: parent-based, always), batched as OTEL_BSP_* say, named by
// OTEL_SERVICE_NAME (default "verge"). Without an endpoint it installs
// nothing: tracing is off. The returned function flushes and stops it.
func SetupTracing(ctx context.Context, o TraceOptions) (func(context.Context) error, error) {
	otel.SetTextMapPropagator(Propagator)
	if !o.Enabled() {
		return func(context.Context) error { return nil }, nil
	}
	name := os.Getenv("OTEL_SERVICE_NAME")
	if name == "" {
		name = "verge"
	}
	res, err := resource.New(ctx, resource.WithFromEnv(), resource.WithTelemetrySDK(),
		resource.WithAttributes(attribute.String("service.name", name), attribute.String("verge.pop", o.PoP)))
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	var sp sdktrace.SpanProcessor
	if fastExportable() {
		proc, err := newOTLPProcessor(o.Endpoint, res)
		if err != nil {
			return nil, err
		}
		if ownSpans() {
			tp := newSpanProvider(proc, samplerFromEnv(), sdktrace.NewSpanLimits())
			otel.SetTracerProvider(tp)
			enabled.Store(true)
			return stopping(tp.Shutdown), nil
		}
		sp = proc
	} else {
		var opts []otlptracehttp.Option
		if o.Endpoint != "" && os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
			opts = append(opts, otlptracehttp.WithEndpointURL(strings.TrimRight(o.Endpoint, "/")+"/v1/traces"))
		}
		exp, err := otlptracehttp.New(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("tracing: the OTLP exporter: %w", err)
		}
		sp = sdktrace.NewBatchSpanProcessor(exp)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	enabled.Store(true)
	return stopping(tp.Shutdown), nil
}

// stopping turns the request path's tracing off before shutdown: requests
// still running start no more spans a stopped provider would drop.
func stopping(shutdown func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		enabled.Store(false)
		return shutdown(ctx)
	}
}

// ownSpans reports whether Verge's own spans (spanProvider) may replace
// the SDK's in front of otlpProcessor: unless a limit on attribute values'
// length is set (the SDK truncates them, ours do not) or
// VERGE_TRACE_SPANS=sdk asks for the SDK's spans.
func ownSpans() bool {
	return os.Getenv("VERGE_TRACE_SPANS") != "sdk" && sdktrace.NewSpanLimits().AttributeValueLengthLimit < 0
}

var enabled atomic.Bool

// Enabled reports whether this process exports traces: when it does not, the
// request path skips reading the client's trace context and starting spans.
func Enabled() bool { return enabled.Load() }

// ExtractHTTP returns ctx with the trace context of an HTTP request's
// headers, as Propagator.Extract with a propagation.HeaderCarrier does,
// without canonicalizing each field's name (an allocation for each of
// traceparent, tracestate and baggage).
func ExtractHTTP(ctx context.Context, h http.Header) context.Context {
	return Propagator.Extract(ctx, httpCarrier(h))
}

// httpCarrier is propagation.HeaderCarrier with W3C's fields looked up by
// their canonical names directly.
type httpCarrier http.Header

func canonicalField(k string) string {
	switch k {
	case "traceparent":
		return "Traceparent"
	case "tracestate":
		return "Tracestate"
	case "baggage":
		return "Baggage"
	}
	return textproto.CanonicalMIMEHeaderKey(k)
}

func (c httpCarrier) Get(k string) string {
	if v := c[canonicalField(k)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c httpCarrier) Values(k string) []string { return c[canonicalField(k)] }

func (c httpCarrier) Set(k, v string) { c[canonicalField(k)] = []string{v} }

func (c httpCarrier) Keys() []string { return propagation.HeaderCarrier(c).Keys() }

// Inject writes ctx's trace context into h (a mesh message's headers).
func Inject(ctx context.Context, h map[string]string) {
	Propagator.Inject(ctx, propagation.MapCarrier(h))
}

// Extract returns ctx with the trace context h carries.
func Extract(ctx context.Context, h map[string]string) context.Context {
	return Propagator.Extract(ctx, propagation.MapCarrier(h))
}

// Child starts a span under ctx's span only if that one is recording: on
// the request path, an unsampled request (or tracing off) then pays one
// interface call per would-be span, nothing more.
func Child(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, parent
	}
	return Start(ctx, name, trace.SpanKindInternal, attrs...)
}

// Start starts a span of a kind with attributes, as Tracer().Start with
// WithSpanKind and WithAttributes does; with Verge's own spans it goes
// around the options (two allocations and their copying).
func Start(ctx context.Context, name string, kind trace.SpanKind, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	tr := Tracer()
	if t, ok := tr.(*spanTracer); ok {
		return t.start(ctx, name, kind, attrs, time.Time{}, nil, false)
	}
	// The options keep what they are given: a copy, so that attrs (and
	// the caller's arrays under it) stay on the caller's stack.
	return tr.Start(ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(slices.Clone(attrs)...))
}

// SetAttributes is span.SetAttributes for the request path: Verge's own
// spans copy what they are given, so kvs stays on the caller's stack where
// an interface call would move it to the heap, one allocation a call.
func SetAttributes(s trace.Span, kvs ...attribute.KeyValue) {
	if s, ok := s.(*span); ok {
		s.SetAttributes(kvs...)
		return
	}
	s.SetAttributes(slices.Clone(kvs)...)
}

// Slow is a request that took long, with its trace when it was traced.
type Slow struct {
	At      time.Time `json:"at"`
	App     string    `json:"app"`
	Path    string    `json:"path"`
	Status  int       `json:"status"`
	Ms      float64   `json:"ms"`
	TraceID string    `json:"trace_id,omitempty"`
}

// SlowLog keeps the slowest recent requests: the last few that took more
// than a threshold, for the dashboard's "why was this slow?".
type SlowLog struct {
	mu        sync.Mutex
	Threshold time.Duration
	ring      [32]Slow
	n         int
}

// Note records a request if it was slow.
func (l *SlowLog) Note(ctx context.Context, app, path string, status int, d time.Duration) {
	if d < l.Threshold {
		return
	}
	s := Slow{At: time.Now().UTC(), App: app, Path: path, Status: status, Ms: float64(d.Microseconds()) / 1000}
	if sc := trace.SpanContextFromContext(ctx); sc.IsSampled() {
		s.TraceID = sc.TraceID().String()
	}
	l.mu.Lock()
	l.ring[l.n%len(l.ring)] = s
	l.n++
	l.mu.Unlock()
}

// Recent returns the slow requests kept, newest first.
func (l *SlowLog) Recent() []Slow {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := []Slow{}
	for i := 1; i <= min(l.n, len(l.ring)); i++ {
		out = append(out, l.ring[(l.n-i)%len(l.ring)])
	}
	return out
}
