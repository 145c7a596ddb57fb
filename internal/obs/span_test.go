package obs

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
)

// seqIDs hands out the same ids, in the order spans start, to our provider
// and (as an IDGenerator) to the SDK's, so that their exports compare.
type seqIDs struct {
	mu sync.Mutex
	n  uint64
}

func (g *seqIDs) next() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n++
	return g.n
}

func (g *seqIDs) ours(parent trace.TraceID) (tid trace.TraceID, sid trace.SpanID) {
	if tid = parent; !tid.IsValid() {
		binary.BigEndian.PutUint64(tid[8:], g.next())
	}
	binary.BigEndian.PutUint64(sid[:], g.next())
	return tid, sid
}

func (g *seqIDs) NewIDs(context.Context) (trace.TraceID, trace.SpanID) {
	return g.ours(trace.TraceID{})
}

func (g *seqIDs) NewSpanID(context.Context, trace.TraceID) (sid trace.SpanID) {
	binary.BigEndian.PutUint64(sid[:], g.next())
	return sid
}

// emitSpans makes, through any provider, spans with every field a span can
// carry (remote parent and trace state, kinds, attributes of every type and
// set twice, limits reached, events, an error, links, status, two scopes),
// every time given, so that two providers' spans are the same.
func emitSpans(tp trace.TracerProvider) {
	ctx := context.Background()
	at := func(s int64) time.Time { return time.Unix(1700000000+s, 123) }
	ts, _ := trace.ParseTraceState("vendor=x,other=y")
	remote := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5},
		TraceFlags: trace.FlagsSampled, TraceState: ts, Remote: true})
	linked := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{9}, SpanID: trace.SpanID{8}, TraceFlags: trace.FlagsSampled})
	tr := tp.Tracer("github.com/verge-edge/verge")
	sctx, server := tr.Start(trace.ContextWithRemoteSpanContext(ctx, remote), "GET shop", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithTimestamp(at(1)),
		trace.WithAttributes(attribute.String("verge.app", "shop"), attribute.String("empty", ""), attribute.Bool("no", false),
			attribute.Bool("yes", true), attribute.Int64("neg", -5), attribute.Int("zero", 0), attribute.Float64("pi", 3.14),
			attribute.StringSlice("ss", []string{"a", ""}), attribute.Int64Slice("is", []int64{1, -1}),
			attribute.BoolSlice("bs", []bool{true, false}), attribute.Float64Slice("fs", []float64{0, 2.5}), attribute.KeyValue{}),
		trace.WithLinks(trace.Link{SpanContext: linked, Attributes: []attribute.KeyValue{attribute.String("k", "v"), attribute.String("k2", "v2")}},
			trace.Link{SpanContext: linked}, trace.Link{}))
	server.SetAttributes(attribute.String("a", "1"), attribute.String("verge.app", "shop2"), attribute.String("c", "over the limit"))
	server.AddEvent("first", trace.WithAttributes(attribute.Int("x", 1), attribute.Int("y", 2)), trace.WithTimestamp(time.Unix(5, 6)))
	server.AddEvent("second, over the limit", trace.WithTimestamp(at(2)))
	server.SetName("GET shop renamed")
	gctx, guest := tr.Start(sctx, "guest hello", trace.WithAttributes(attribute.String("verge.function", "hello")), trace.WithTimestamp(at(2)))
	for _, k := range []trace.SpanKind{trace.SpanKindClient, trace.SpanKindProducer, trace.SpanKindConsumer, trace.SpanKindInternal, trace.SpanKind(42)} {
		_, s := tr.Start(gctx, "kind", trace.WithSpanKind(k), trace.WithTimestamp(at(3)))
		s.SetStatus(codes.Ok, "")
		s.SetStatus(codes.Error, "after ok: ignored")
		s.End(trace.WithTimestamp(at(4)))
	}
	_, own := tp.Tracer("guest", trace.WithInstrumentationVersion("1.2"), trace.WithSchemaURL("https://example.com/s"),
		trace.WithInstrumentationAttributes(attribute.String("lib", "sdk"))).Start(gctx, "pricing", trace.WithTimestamp(at(3)))
	own.RecordError(errors.New("out of stock"), trace.WithTimestamp(at(4)))
	own.RecordError(nil)
	own.AddLink(trace.Link{SpanContext: remote, Attributes: []attribute.KeyValue{attribute.Int("n", 1)}})
	own.End(trace.WithTimestamp(at(5)))
	own.SetAttributes(attribute.String("after", "end")) // ignored
	guest.SetStatus(codes.Error, "cpu_time")
	guest.End(trace.WithTimestamp(at(6)))
	server.End(trace.WithTimestamp(at(7)))
	_, noParent := tr.Start(ctx, "replicate apply", trace.WithSpanKind(trace.SpanKindConsumer), trace.WithTimestamp(time.Unix(0, 1)))
	noParent.End(trace.WithTimestamp(time.Unix(1, 0)))
	_, root := tr.Start(sctx, "new root", trace.WithNewRoot(), trace.WithTimestamp(at(8)))
	root.End(trace.WithTimestamp(at(9)))
}

// Verge's spans, exported by otlpProcessor, decode with OTLP's generated
// types to exactly what the SDK's spans and exporter send for the same
// calls: ids, parents, trace state, flags, kinds, attributes after limits
// and overwrites, events, links, status, scopes, resource.
func TestOwnSpansMatchSDK(t *testing.T) {
	ours, theirs := newReceiver(t), newReceiver(t)
	t.Setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "3")
	ctx := context.Background()
	res := resource.NewWithAttributes("https://opentelemetry.io/schemas/1.26.0",
		attribute.String("service.name", "test"), attribute.String("verge.pop", "fra"))
	limits := sdktrace.SpanLimits{AttributeCountLimit: 12, EventCountLimit: 1, LinkCountLimit: 2,
		AttributeValueLengthLimit: -1, AttributePerEventCountLimit: 1, AttributePerLinkCountLimit: 1}

	p, err := newOTLPProcessor(ours.srv.URL, res)
	if err != nil {
		t.Fatal(err)
	}
	own := newSpanProvider(p, sampler{parentBased: true}, limits)
	own.ids = (&seqIDs{}).ours
	emitSpans(own)
	if err := own.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(theirs.srv.URL+"/v1/traces"))
	if err != nil {
		t.Fatal(err)
	}
	sdk := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res), sdktrace.WithSpanLimits(limits),
		sdktrace.WithIDGenerator(&seqIDs{}))
	emitSpans(sdk)
	if err := sdk.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	got, want := merged(ours.exports()), merged(theirs.exports())
	spans := 0
	for _, rs := range got.GetResourceSpans() {
		for _, ss := range rs.ScopeSpans {
			spans += len(ss.Spans)
		}
	}
	if spans != 10 {
		t.Errorf("%d spans exported, want 10", spans)
	}
	if !proto.Equal(got, want) {
		t.Errorf("the exports differ from the SDK's:\n ours:   %v\n theirs: %v", got, want)
	}
}

// The samplers OTEL_TRACES_SAMPLER names decide as the SDK's do: for a
// root span, under a sampled and an unsampled parent (remote and local),
// and for the ratio, trace by trace.
func TestSamplersFromEnv(t *testing.T) {
	sampled := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled})
	unsampled := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}})
	parents := []trace.SpanContext{{}, sampled, unsampled, sampled.WithRemote(true), unsampled.WithRemote(true)}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, env := range []struct{ name, arg string }{
		{"", ""}, {"always_on", ""}, {"always_off", ""}, {"traceidratio", "0.25"}, {"traceidratio", "-"},
		{"parentbased_always_on", ""}, {"parentbased_always_off", ""}, {"parentbased_traceidratio", "0.01"},
		{"parentbased_traceidratio", "0"}, {"parentbased_traceidratio", "1"}, {" ParentBased_TraceIDRatio ", "0.5"},
		{"parentbased_traceidratio", "7"}, {"jaeger_remote", ""},
	} {
		if env.name != "" {
			t.Setenv("OTEL_TRACES_SAMPLER", env.name)
		}
		if env.arg != "" {
			t.Setenv("OTEL_TRACES_SAMPLER_ARG", env.arg)
		}
		ours := samplerFromEnv()
		// The SDK's provider reads the same environment and keeps its
		// sampler private; its spans show its decision. Under a valid
		// parent the trace id is the parent's; for a root span the id
		// generator is the way in.
		gen := &fixedIDs{}
		sdk := sdktrace.NewTracerProvider(sdktrace.WithIDGenerator(gen))
		for _, parent := range parents {
			ctx := trace.ContextWithSpanContext(context.Background(), parent)
			for range 500 {
				var tid trace.TraceID
				binary.BigEndian.PutUint64(tid[:8], rng.Uint64())
				binary.BigEndian.PutUint64(tid[8:], rng.Uint64())
				if parent.IsValid() {
					tid = parent.TraceID()
				}
				gen.tid = tid
				_, s := sdk.Tracer("t").Start(ctx, "s")
				want := s.SpanContext().IsSampled()
				if got := ours.sample(parent, tid); got != want {
					t.Fatalf("%s=%q: parent %v, trace %v: ours sampled %v, the SDK's %v", env.name, env.arg, parent, tid, got, want)
				}
				if parent.IsValid() {
					break
				}
			}
		}
		sdk.Shutdown(context.Background())
	}
}

type fixedIDs struct{ tid trace.TraceID }

func (f *fixedIDs) NewIDs(context.Context) (trace.TraceID, trace.SpanID) {
	return f.tid, trace.SpanID{1}
}
func (f *fixedIDs) NewSpanID(context.Context, trace.TraceID) trace.SpanID {
	return trace.SpanID{1}
}

// A span's context travels in traceparent/tracestate through the global
// propagator both ways: a child across the hop continues the trace under
// it, remote; an unsampled trace stays unsampled; and a span's context is
// its own for good once it ended (spans are not reused).
func TestOwnSpansPropagate(t *testing.T) {
	r := newReceiver(t)
	p, err := newOTLPProcessor(r.srv.URL, resource.Empty())
	if err != nil {
		t.Fatal(err)
	}
	tp := newSpanProvider(p, ratioSampler(0.5), sdktrace.NewSpanLimits())
	tp.sampler.parentBased = true
	defer tp.Shutdown(context.Background())
	tr := tp.Tracer("t")
	prop := propagation.TraceContext{}

	in := propagation.MapCarrier{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "congo=t61rcWkgMzE"}
	ctx, s := tr.Start(prop.Extract(context.Background(), in), "server")
	sc := s.SpanContext()
	if sc.TraceID().String() != "0af7651916cd43dd8448eb211c80319c" || !sc.IsSampled() || sc.TraceState().String() != "congo=t61rcWkgMzE" {
		t.Fatalf("span %v: want the client's trace, sampled, with its trace state", sc)
	}
	if ps := s.(*span).r.parent; ps.SpanID().String() != "b7ad6b7169203331" || !ps.IsRemote() {
		t.Errorf("parent %v: want the client's span, remote", ps)
	}
	out := propagation.MapCarrier{}
	prop.Inject(ctx, out)
	if want := "00-0af7651916cd43dd8448eb211c80319c-" + sc.SpanID().String() + "-01"; out["traceparent"] != want || out["tracestate"] != "congo=t61rcWkgMzE" {
		t.Errorf("injected %v, want traceparent %s and the trace state", out, want)
	}
	_, next := tr.Start(prop.Extract(context.Background(), out), "next PoP")
	if next.SpanContext().TraceID() != sc.TraceID() || next.(*span).r.parent.SpanID() != sc.SpanID() {
		t.Errorf("the next PoP's span %v is not under %v", next.SpanContext(), sc)
	}
	next.End()
	s.End()
	for range 100 { // more spans: s keeps its own
		_, o := tr.Start(context.Background(), "other")
		o.End()
	}
	if !s.SpanContext().Equal(sc) || s.IsRecording() || !trace.SpanFromContext(ctx).SpanContext().Equal(sc) {
		t.Error("an ended span's context changed after more spans started")
	}

	in["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
	uctx, u := tr.Start(prop.Extract(context.Background(), in), "unsampled")
	if u.IsRecording() || u.SpanContext().IsSampled() || !u.SpanContext().IsValid() || u.SpanContext().SpanID().String() == "b7ad6b7169203331" {
		t.Errorf("unsampled parent: span %v recording %v, want a new span id, not sampled, not recording", u.SpanContext(), u.IsRecording())
	}
	out = propagation.MapCarrier{}
	prop.Inject(uctx, out)
	if !strings.HasSuffix(out["traceparent"], "-00") || !strings.Contains(out["traceparent"], u.SpanContext().SpanID().String()) {
		t.Errorf("injected %v, want the unsampled span's context", out)
	}
	if _, c := Child(uctx, "child"); c.IsRecording() {
		t.Error("Child started a span under an unsampled one")
	}

	// A ratio's root spans: about half sampled, each with a fresh trace.
	n, seen := 0, map[trace.TraceID]bool{}
	for range 2000 {
		_, s := tr.Start(context.Background(), "root")
		if s.SpanContext().IsSampled() {
			n++
		}
		seen[s.SpanContext().TraceID()] = true
		s.End()
	}
	if n < 800 || n > 1200 || len(seen) != 2000 {
		t.Errorf("%d of 2000 roots sampled at 0.5, %d distinct traces", n, len(seen))
	}
}

// A span ended in a deferred call while its goroutine panics records the
// panic, as the SDK's does, and the panic goes on.
func TestOwnSpanRecordsPanic(t *testing.T) {
	r := newReceiver(t)
	p, err := newOTLPProcessor(r.srv.URL, resource.Empty())
	if err != nil {
		t.Fatal(err)
	}
	tp := newSpanProvider(p, sampler{}, sdktrace.NewSpanLimits())
	func() {
		defer func() {
			if recover() != "boom" {
				t.Error("the panic did not go on")
			}
		}()
		_, s := tp.Tracer("t").Start(context.Background(), "s")
		defer s.End()
		panic("boom")
	}()
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	reqs := r.exports()
	if len(reqs) != 1 {
		t.Fatalf("%d exports, want 1", len(reqs))
	}
	ev := reqs[0].ResourceSpans[0].ScopeSpans[0].Spans[0].Events
	if len(ev) != 1 || ev[0].Name != "exception" || ev[0].Attributes[1].Value.GetStringValue() != "boom" {
		t.Errorf("events %v, want the panic's exception", ev)
	}
}

// What a hello-go request's two spans cost the PoP with each provider:
// started, given their attributes, ended and exported as the router and
// the gateway do, into a receiver that reads and discards (a collector
// elsewhere does the decoding). CPU time of the whole process per request.
func BenchmarkRequestSpans(b *testing.B) {
	for _, name := range []string{"sdkspans", "verge"} {
		b.Run(name, func(b *testing.B) {
			b.Setenv("OTEL_BSP_MAX_QUEUE_SIZE", strconv.Itoa(2*b.N+1024))
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
			defer srv.Close()
			p, _ := newOTLPProcessor(srv.URL, resource.Default())
			var tp interface {
				trace.TracerProvider
				Shutdown(context.Context) error
			}
			if name == "verge" {
				tp = newSpanProvider(p, sampler{parentBased: true}, sdktrace.NewSpanLimits())
			} else {
				tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(p), sdktrace.WithResource(resource.Default()))
			}
			prev := otel.GetTracerProvider()
			otel.SetTracerProvider(tp)
			defer otel.SetTracerProvider(prev)
			b.ReportAllocs()
			cpu0 := processCPU()
			b.ResetTimer()
			for range b.N {
				ctx, s := Start(context.Background(), "GET hello-go", trace.SpanKindServer,
					attribute.String("verge.app", "hello-go"), attribute.String("verge.pop", "dev"),
					attribute.String("http.request.method", "GET"), attribute.String("url.path", "/hello"))
				_, g := Child(ctx, "guest hello", attribute.String("verge.function", "hello"), attribute.String("verge.route", "/hello"))
				g.SetAttributes(attribute.Int64("verge.cpu_time_us", 40), attribute.Int("http.response.status_code", 200), attribute.Bool("verge.fresh_instance", false))
				g.End()
				s.SetAttributes(attribute.String("verge.function", "hello"))
				s.SetAttributes(attribute.Int("http.response.status_code", 200), attribute.String("verge.version", "abc"))
				s.End()
			}
			tp.Shutdown(context.Background())
			b.StopTimer()
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
			if p.dropped.Load() > 0 {
				b.Fatalf("%d spans dropped", p.dropped.Load())
			}
		})
	}
}

// ExtractHTTP reads what Propagator.Extract reads from an HTTP request's
// headers: the W3C trace context and baggage, from canonical fields.
func TestExtractHTTP(t *testing.T) {
	h := http.Header{}
	h.Set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	h.Set("tracestate", "congo=t61rcWkgMzE")
	h.Set("baggage", "user=alice")
	got := ExtractHTTP(context.Background(), h)
	want := Propagator.Extract(context.Background(), propagation.HeaderCarrier(h))
	gsc, wsc := trace.SpanContextFromContext(got), trace.SpanContextFromContext(want)
	if !gsc.IsValid() || !gsc.Equal(wsc) || gsc.TraceState().String() != "congo=t61rcWkgMzE" {
		t.Errorf("span context %v, want %v", gsc, wsc)
	}
	if g, w := baggage.FromContext(got).String(), baggage.FromContext(want).String(); g != w || g != "user=alice" {
		t.Errorf("baggage %q, want %q", g, w)
	}
	if sc := trace.SpanContextFromContext(ExtractHTTP(context.Background(), http.Header{})); sc.IsValid() {
		t.Errorf("no headers gave %v", sc)
	}
}
