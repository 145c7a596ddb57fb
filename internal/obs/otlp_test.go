package obs

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// receiver is an OTLP/HTTP endpoint that decodes and keeps every export.
type receiver struct {
	srv     *httptest.Server
	mu      sync.Mutex
	reqs    []*coltrace.ExportTraceServiceRequest
	headers []http.Header
	fail    atomic.Int32 // answer this many exports 503 first
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "not an OTLP/HTTP protobuf export", http.StatusBadRequest)
			return
		}
		if r.fail.Add(-1) >= 0 {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		if req.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err == nil {
				body, err = io.ReadAll(zr)
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
		}
		var m coltrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.reqs = append(r.reqs, &m)
		r.headers = append(r.headers, req.Header.Clone())
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) exports() []*coltrace.ExportTraceServiceRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reqs)
}

// merged puts every export's spans in one request, scopes in name order
// and spans in span-id order, so that two exporters' batches compare.
func merged(reqs []*coltrace.ExportTraceServiceRequest) *coltrace.ExportTraceServiceRequest {
	out := &coltrace.ExportTraceServiceRequest{}
	var rs *tracepb.ResourceSpans
	scopes := map[string]*tracepb.ScopeSpans{}
	for _, req := range reqs {
		for _, r := range req.ResourceSpans {
			if rs == nil {
				rs = &tracepb.ResourceSpans{Resource: r.Resource, SchemaUrl: r.SchemaUrl}
				out.ResourceSpans = append(out.ResourceSpans, rs)
			}
			for _, ss := range r.ScopeSpans {
				k := ss.GetScope().GetName()
				if scopes[k] == nil {
					scopes[k] = &tracepb.ScopeSpans{Scope: ss.Scope, SchemaUrl: ss.SchemaUrl}
					rs.ScopeSpans = append(rs.ScopeSpans, scopes[k])
				}
				scopes[k].Spans = append(scopes[k].Spans, ss.Spans...)
			}
		}
	}
	if rs != nil {
		slices.SortFunc(rs.ScopeSpans, func(a, b *tracepb.ScopeSpans) int {
			return strings.Compare(a.GetScope().GetName(), b.GetScope().GetName())
		})
		for _, ss := range rs.ScopeSpans {
			slices.SortFunc(ss.Spans, func(a, b *tracepb.Span) int { return bytes.Compare(a.SpanId, b.SpanId) })
		}
	}
	return out
}

// What the processor sends decodes, with OTLP's own generated types, to
// exactly what the SDK's exporter sends for the same spans: every field a
// span can carry (remote parent and trace state, kinds, attributes of
// every type, dropped counts, events, links, status), two scopes, the
// resource and its schema.
func TestOTLPProcessorMatchesSDKExporter(t *testing.T) {
	ours, theirs := newReceiver(t), newReceiver(t)
	t.Setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "3") // several exports each
	ctx := context.Background()
	res := resource.NewWithAttributes("https://opentelemetry.io/schemas/1.26.0",
		attribute.String("service.name", "test"), attribute.String("verge.pop", "fra"), attribute.Int("n", 7))
	p, err := newOTLPProcessor(ours.srv.URL, res)
	if err != nil {
		t.Fatal(err)
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(theirs.srv.URL+"/v1/traces"))
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(p), sdktrace.WithBatcher(exp), sdktrace.WithResource(res),
		sdktrace.WithSpanLimits(sdktrace.SpanLimits{AttributeCountLimit: 12, EventCountLimit: 1, LinkCountLimit: 1,
			AttributeValueLengthLimit: -1, AttributePerEventCountLimit: 1, AttributePerLinkCountLimit: 1}))

	ts, _ := trace.ParseTraceState("vendor=x,other=y")
	remote := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5},
		TraceFlags: trace.FlagsSampled, TraceState: ts, Remote: true})
	linked := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{9}, SpanID: trace.SpanID{8}, TraceFlags: trace.FlagsSampled})
	tr := tp.Tracer("github.com/verge-edge/verge")
	sctx, server := tr.Start(trace.ContextWithRemoteSpanContext(ctx, remote), "GET shop", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("verge.app", "shop"), attribute.String("empty", ""), attribute.Bool("no", false),
			attribute.Bool("yes", true), attribute.Int64("neg", -5), attribute.Int("zero", 0), attribute.Float64("pi", 3.14),
			attribute.StringSlice("ss", []string{"a", ""}), attribute.Int64Slice("is", []int64{1, -1}),
			attribute.BoolSlice("bs", []bool{true, false}), attribute.Float64Slice("fs", []float64{0, 2.5})),
		trace.WithLinks(trace.Link{SpanContext: linked, Attributes: []attribute.KeyValue{attribute.String("k", "v"), attribute.String("k2", "v2")}},
			trace.Link{SpanContext: linked}))
	server.SetAttributes(attribute.String("a", "1"), attribute.String("b", "2"), attribute.String("c", "over the limit"))
	server.AddEvent("first", trace.WithAttributes(attribute.Int("x", 1), attribute.Int("y", 2)), trace.WithTimestamp(time.Unix(5, 6)))
	server.AddEvent("second, over the limit")
	gctx, guest := tr.Start(sctx, "guest hello", trace.WithAttributes(attribute.String("verge.function", "hello")))
	for _, k := range []trace.SpanKind{trace.SpanKindClient, trace.SpanKindProducer, trace.SpanKindConsumer, trace.SpanKindInternal} {
		_, s := tr.Start(gctx, "kind", trace.WithSpanKind(k))
		s.SetStatus(codes.Ok, "")
		s.End()
	}
	_, own := tp.Tracer("guest", trace.WithInstrumentationVersion("1.2"), trace.WithSchemaURL("https://example.com/s"),
		trace.WithInstrumentationAttributes(attribute.String("lib", "sdk"))).Start(gctx, "pricing")
	own.End()
	guest.SetStatus(codes.Error, "cpu_time")
	guest.End()
	server.End()
	_, noParent := tr.Start(ctx, "replicate apply", trace.WithSpanKind(trace.SpanKindConsumer), trace.WithTimestamp(time.Unix(0, 1)))
	noParent.End(trace.WithTimestamp(time.Unix(1, 0)))
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	got, want := merged(ours.exports()), merged(theirs.exports())
	if n := len(got.GetResourceSpans()); n != 1 {
		t.Fatalf("%d resources, want 1", n)
	}
	spans := 0
	for _, ss := range got.ResourceSpans[0].ScopeSpans {
		spans += len(ss.Spans)
	}
	if spans != 8 {
		t.Errorf("%d spans exported, want 8", spans)
	}
	if len(ours.exports()) < 3 {
		t.Errorf("%d exports of at most 3 spans for 8 spans", len(ours.exports()))
	}
	if !proto.Equal(got, want) {
		t.Errorf("the exports differ from the SDK exporter's:\n ours:   %v\n theirs: %v", got, want)
	}
}

// The processor honours the batch size, the exporter's headers and gzip,
// and retries an export the receiver asks to retry.
func TestOTLPProcessorEnvironment(t *testing.T) {
	r := newReceiver(t)
	r.fail.Store(1)
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", r.srv.URL+"/v1/traces")
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20abc, x-team=edge")
	t.Setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
	t.Setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "60000") // only full batches and the final flush
	p, err := newOTLPProcessor("http://127.0.0.1:1", resource.Empty())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(p))
	for range 5 {
		_, s := tp.Tracer("t").Start(context.Background(), "s")
		s.End()
	}
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for _, req := range r.exports() {
		sizes = append(sizes, len(req.ResourceSpans[0].ScopeSpans[0].Spans))
	}
	if !slices.Equal(sizes, []int{2, 2, 1}) {
		t.Errorf("batches of %v spans, want [2 2 1] (the first retried after a 503)", sizes)
	}
	r.mu.Lock()
	h := r.headers[0]
	r.mu.Unlock()
	if h.Get("Authorization") != "Bearer abc" || h.Get("X-Team") != "edge" || h.Get("Content-Encoding") != "gzip" {
		t.Errorf("headers %v, want the configured ones and gzip", h)
	}
}

// When the receiver is slower than spans end, the queue's bound holds:
// spans beyond it are dropped and counted, and a request never waits.
func TestOTLPProcessorDropsBeyondTheQueue(t *testing.T) {
	arrived, release := make(chan struct{}, 10), make(chan struct{})
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		arrived <- struct{}{}
		<-release
		body, _ := io.ReadAll(req.Body)
		var m coltrace.ExportTraceServiceRequest
		if proto.Unmarshal(body, &m) == nil {
			got.Add(int64(len(m.ResourceSpans[0].ScopeSpans[0].Spans)))
		}
	}))
	defer srv.Close()
	defer close(release)
	t.Setenv("OTEL_BSP_MAX_QUEUE_SIZE", "4")
	t.Setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2")
	p, err := newOTLPProcessor(srv.URL, resource.Empty())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(p))
	end := func(n int) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			for range n {
				_, s := tp.Tracer("t").Start(context.Background(), "s")
				s.End()
			}
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("ending spans blocked on a stalled receiver")
		}
	}
	end(2) // a full batch: its export starts and stalls
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the first batch was not exported")
	}
	end(8) // 4 wait behind it, 4 are dropped
	if d := p.dropped.Load(); d != 4 {
		t.Errorf("%d spans dropped, want 4 (a queue of 4 behind a stalled batch of 2)", d)
	}
	release <- struct{}{}
	go func() {
		for range arrived {
			release <- struct{}{}
		}
	}()
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got.Load() != 6 {
		t.Errorf("%d spans received, want the 6 the stalled export and the queue held", got.Load())
	}
}

// What a request's two spans cost to record and export: the SDK's spans,
// batch processor and OTLP exporter (sdk); the SDK's spans and
// otlpProcessor (sdkspans); Verge's spans and otlpProcessor (verge), all into a receiver
// that decodes (in this process, so its work is in the figure too). Both
// keep every span (the SDK's blocks, ours has a queue for all of them) and
// the final flush is timed, so neither is credited for spans it dropped or
// had not sent yet.
func BenchmarkExport(b *testing.B) {
	for _, name := range []string{"sdk", "sdkspans", "verge"} {
		b.Run(name, func(b *testing.B) {
			b.Setenv("OTEL_BSP_MAX_QUEUE_SIZE", strconv.Itoa(2*b.N+1024))
			r := newReceiver(&testing.T{})
			defer r.srv.Close()
			var tp interface {
				trace.TracerProvider
				Shutdown(context.Context) error
			}
			var ours *otlpProcessor
			switch name {
			case "sdk":
				exp, _ := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(r.srv.URL+"/v1/traces"))
				tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sdktrace.NewBatchSpanProcessor(exp, sdktrace.WithBlocking())),
					sdktrace.WithResource(resource.Default()))
			case "sdkspans":
				ours, _ = newOTLPProcessor(r.srv.URL, resource.Default())
				tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(ours), sdktrace.WithResource(resource.Default()))
			default:
				ours, _ = newOTLPProcessor(r.srv.URL, resource.Default())
				tp = newSpanProvider(ours, sampler{parentBased: true}, sdktrace.NewSpanLimits())
			}
			tr := tp.Tracer("bench")
			b.ReportAllocs()
			cpu0 := processCPU()
			b.ResetTimer()
			for range b.N {
				ctx, s := tr.Start(context.Background(), "GET hello-go", trace.WithSpanKind(trace.SpanKindServer),
					trace.WithAttributes(attribute.String("verge.app", "hello-go"), attribute.String("http.request.method", "GET"), attribute.String("url.path", "/hello")))
				_, g := tr.Start(ctx, "guest hello", trace.WithAttributes(attribute.String("verge.function", "hello"), attribute.String("verge.route", "/hello")))
				g.SetAttributes(attribute.Bool("verge.fresh_instance", false), attribute.Int64("verge.cpu_time_us", 40), attribute.Int("http.response.status_code", 200))
				g.End()
				s.SetAttributes(attribute.Int("http.response.status_code", 200), attribute.String("verge.version", "abc"))
				s.End()
			}
			tp.Shutdown(context.Background())
			b.StopTimer()
			// CPU time, every goroutine's (the receiver's decoding, the
			// same for both, included): on a shared machine wall time per
			// operation says more about the neighbours.
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
			spans := 0
			for _, req := range r.exports() {
				for _, rs := range req.ResourceSpans {
					for _, ss := range rs.ScopeSpans {
						spans += len(ss.Spans)
					}
				}
			}
			if spans != 2*b.N || (ours != nil && ours.dropped.Load() > 0) {
				b.Fatalf("%d spans received of %d", spans, 2*b.N)
			}
		})
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Child starts a span under the context's recording span, returns a context
// that keeps the caller's values and deadline, and starts nothing under a
// span that does not record.
func TestChild(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev) })

	type key struct{}
	base, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
	defer cancel()
	if ctx, s := Child(base, "untraced"); ctx != base || s.IsRecording() {
		t.Fatal("Child started a span without a recording parent")
	}
	pctx, parent := tp.Tracer("t").Start(base, "parent")
	ctx, child := Child(pctx, "child", attribute.String("a", "b"))
	if ctx.Value(key{}) != "v" || ctx.Done() != base.Done() {
		t.Error("the child's context lost the caller's values or cancellation")
	}
	if trace.SpanFromContext(ctx) != child {
		t.Error("the child's context does not hold the child")
	}
	child.End()
	parent.End()
	ended := rec.Ended()
	if len(ended) != 2 || ended[0].Name() != "child" || ended[0].Parent().SpanID() != parent.SpanContext().SpanID() ||
		ended[0].SpanContext().TraceID() != parent.SpanContext().TraceID() || len(ended[0].Attributes()) != 1 {
		t.Errorf("spans %v: want child under parent, in its trace, with its attribute", ended)
	}
}

// A guest may name spans and attributes with bytes that are not UTF-8; the
// export still decodes (protobuf's strings must be UTF-8, and a receiver
// rejects the whole batch otherwise), with U+FFFD in their place.
func TestOTLPProcessorInvalidUTF8(t *testing.T) {
	r := newReceiver(t)
	p, err := newOTLPProcessor(r.srv.URL, resource.NewSchemaless(attribute.String("service.name", "a\xffb")))
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(p))
	_, s := tp.Tracer("t").Start(context.Background(), "span \xc3\x28",
		trace.WithAttributes(attribute.String("k\xfe", "v\xff"), attribute.StringSlice("ss", []string{"ok", "\x80"})))
	s.AddEvent("ev\xff", trace.WithAttributes(attribute.String("e", "\xff\xfe")))
	s.SetStatus(codes.Error, "bad \xff")
	s.End()
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	reqs := r.exports()
	if len(reqs) != 1 {
		t.Fatalf("%d exports decoded, want 1", len(reqs))
	}
	sp := reqs[0].ResourceSpans[0].ScopeSpans[0].Spans[0]
	a := sp.Attributes
	if sp.Name != "span \uFFFD(" || a[0].Key != "k\uFFFD" || a[0].Value.GetStringValue() != "v\uFFFD" ||
		a[1].Value.GetArrayValue().Values[1].GetStringValue() != "\uFFFD" || sp.Events[0].Name != "ev\uFFFD" ||
		sp.Events[0].Attributes[0].Value.GetStringValue() != "\uFFFD" || sp.Status.Message != "bad \uFFFD" ||
		reqs[0].ResourceSpans[0].Resource.Attributes[0].Value.GetStringValue() != "a\uFFFDb" {
		t.Errorf("decoded %v", reqs[0])
	}
}

// One export's request buffer serves the next once the transport closed
// its body: every export still arrives whole, and the buffer is reused.
func TestOTLPProcessorReusesItsRequest(t *testing.T) {
	r := newReceiver(t)
	t.Setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "60000") // only full batches and the final flush
	p, err := newOTLPProcessor(r.srv.URL, resource.Empty())
	if err != nil {
		t.Fatal(err)
	}
	tp := newSpanProvider(p, sampler{root: sampleAlways}, sdktrace.NewSpanLimits())
	for i := range 7 {
		_, s := tp.Tracer("t").Start(context.Background(), "span "+strconv.Itoa(i), trace.WithAttributes(attribute.String("k", strings.Repeat("v", i*100))))
		s.End()
	}
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, req := range r.exports() {
		for _, s := range req.ResourceSpans[0].ScopeSpans[0].Spans {
			names = append(names, s.Name)
			if v, want := s.Attributes[0].Value.GetStringValue(), 100*int(s.Name[len(s.Name)-1]-'0'); len(v) != want {
				t.Errorf("%s: attribute of %d bytes, want %d", s.Name, len(v), want)
			}
		}
	}
	if want := []string{"span 0", "span 1", "span 2", "span 3", "span 4", "span 5", "span 6"}; !slices.Equal(names, want) {
		t.Errorf("exported %v, want %v", names, want)
	}
	if p.body == nil {
		t.Error("no export's request buffer was kept for the next")
	}
}
