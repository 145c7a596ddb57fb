package gateway

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/verge-edge/verge"
)

// A traced request's guest runs in a span of its own with the attributes
// the issue asks for (CPU time, a fresh or warm instance), and a guest
// stopped by a limit marks its span with the limit's kind. An untraced
// request records nothing. (Not parallel: it installs the global tracer
// provider, which the gateway's spans start from.)
func TestGuestSpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev) })

	e := engine(t)
	g := New(quiet)
	defer g.Close()
	g.Set(loadFn(t, e, "hi", "hello.wasm", []string{"/hello"}, verge.Limits{}))
	g.Set(loadFn(t, e, "spin", "loop.wasm", []string{"/loop"}, verge.Limits{CPUTime: 20 * time.Millisecond, WallTime: 5 * time.Second}))
	traced := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if traced { // as the PoP's router does for a sampled request
			ctx, span := tp.Tracer("test").Start(r.Context(), "request")
			defer span.End()
			r = r.WithContext(ctx)
		}
		g.ServeHTTP(w, r)
	}))
	defer srv.Close()

	fetch(t, "GET", srv.URL+"/hello", nil)
	fetch(t, "GET", srv.URL+"/loop", nil)
	traced = false
	fetch(t, "GET", srv.URL+"/hello", nil)

	attrs := func(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
		m := map[attribute.Key]attribute.Value{}
		for _, kv := range s.Attributes() {
			m[kv.Key] = kv.Value
		}
		return m
	}
	spans := map[string]sdktrace.ReadOnlySpan{}
	var requests []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "request" {
			requests = append(requests, s)
		} else {
			spans[s.Name()] = s
		}
	}
	if len(requests) != 2 || len(spans) != 2 {
		t.Fatalf("%d request spans and guest spans %v; want 2 and guest hi, guest spin", len(requests), spans)
	}
	hi, spin := spans["guest hi"], spans["guest spin"]
	if hi == nil || spin == nil {
		t.Fatalf("guest spans %v, want guest hi and guest spin", spans)
	}
	a := attrs(hi)
	if a["verge.function"].AsString() != "hi" || a["verge.route"].AsString() != "/hello" || a["http.response.status_code"].AsInt64() != 200 ||
		a["verge.fresh_instance"].Type() != attribute.BOOL || a["verge.cpu_time_us"].Type() != attribute.INT64 || hi.Status().Code == codes.Error {
		t.Errorf("guest hi: attributes %v, status %v", a, hi.Status())
	}
	if hi.Parent().SpanID() != requests[0].SpanContext().SpanID() || attrs(requests[0])["verge.function"].AsString() != "hi" {
		t.Errorf("guest hi is not the child of its request span, or that span lacks verge.function")
	}
	a = attrs(spin)
	if a["verge.error"].AsString() != "cpu_time" || spin.Status().Code != codes.Error || a["verge.cpu_time_us"].AsInt64() < 20000 {
		t.Errorf("guest spin: attributes %v, status %v; want verge.error cpu_time, an error status and at least 20 ms of CPU", a, spin.Status())
	}
}
