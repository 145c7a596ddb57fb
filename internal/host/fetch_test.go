package host

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/cache"
	"github.com/verge-edge/verge/internal/fetch"
	"github.com/verge-edge/verge/internal/wasm"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// fetchGuest loads testdata/gofetch in an engine whose app "app" fetches
// through svc.
func fetchGuest(t *testing.T, svc *fetch.Service, limits verge.Limits) *wasm.Function {
	t.Helper()
	fetchers := func(app string) *fetch.Service {
		if app == "app" {
			return svc
		}
		return nil
	}
	if svc == nil {
		fetchers = nil
	}
	e, err := wasm.NewEngine(wasm.Options{CacheDir: "-", Logger: slog.New(slog.DiscardHandler),
		Capabilities: Capabilities(Services{Fetchers: fetchers})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	return load(t, e, verge.Function{App: "app", Module: buildGo(t, "internal/host/testdata/gofetch"), Executor: verge.ExecutorVerge, Limits: limits})
}

func serveBody(t *testing.T, f *wasm.Function, req *wasm.Request) string {
	t.Helper()
	resp, err := f.Serve(context.Background(), req)
	if err != nil {
		t.Fatalf("%s: %v", req.URI, err)
	}
	return string(resp.Body)
}

func TestFetchThroughTheABI(t *testing.T) {
	var mu sync.Mutex
	seen := http.Header{}
	arrived := make(chan string, 10)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = r.Header.Clone()
		mu.Unlock()
		switch r.URL.Path {
		case "/a", "/b":
			// Answer only once both are under way: a guest that fetched one
			// after the other would never get its first answer in time.
			arrived <- r.URL.Path
			timeout := time.After(10 * time.Second)
			for len(arrived) < 2 {
				select {
				case <-timeout:
					http.Error(w, "sequential", 500)
					return
				case <-time.After(time.Millisecond):
				}
			}
			w.Write([]byte(r.URL.Path[1:]))
		case "/hang":
			<-r.Context().Done()
		case "/echo":
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s %d bytes %q", r.Method, len(b), b[:min(len(b), 12)])
		case "/redirect":
			w.Header().Set("Cache-Control", "max-age=60")
			http.Redirect(w, r, "/elsewhere", http.StatusMovedPermanently)
		default:
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("X-Origin", "1")
			w.Write([]byte("hello " + r.URL.RequestURI()))
		}
	}))
	defer origin.Close()
	svc, err := fetch.New("app", []verge.Backend{
		{Name: "origin", URL: origin.URL, AllowPrivate: true},
		{Name: "private", URL: origin.URL}, // loopback without allow_private
		{Name: "slow", URL: origin.URL, AllowPrivate: true, FirstByteTimeout: 30 * time.Millisecond},
	}, fetch.Options{Cache: cache.New(cache.Options{})})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	f := fetchGuest(t, svc, verge.Limits{})

	if got := serveBody(t, f, get("/get?b=origin&u=/x%3Fq%3D1")); got != "200 MISS hello /x?q=1|-" {
		t.Fatalf("first fetch: %q", got)
	}
	mu.Lock()
	fromGuest := seen.Get("X-From-Guest")
	mu.Unlock()
	if fromGuest != "yes" {
		t.Fatal("the guest's header did not reach the backend")
	}
	if got := serveBody(t, f, get("/get?b=origin&u=/x%3Fq%3D1")); got != "200 HIT hello /x?q=1|-" {
		t.Fatalf("second fetch: %q", got)
	}
	if got := serveBody(t, f, get("/get?b=origin&u=/x%3Fq%3D1&nocache=1")); got != "200  hello /x?q=1|-" {
		t.Fatalf("NoCache: %q", got)
	}
	if got := serveBody(t, f, get("/parallel?b=origin&u=/a,/b")); got != "[a][b]" {
		t.Fatalf("parallel: %q", got)
	}
	post := get("/post?b=origin&u=/echo")
	post.Method, post.Body = "POST", []byte(strings.Repeat("0123456789", 100_000))
	if got := serveBody(t, f, post); got != `200 POST 1000000 bytes "012345678901"|-` {
		t.Fatalf("post: %q", got)
	}
	resp, err := f.Serve(context.Background(), get("/proxy?b=origin&u=/p"))
	if err != nil || resp.Status != 200 || string(resp.Body) != "hello /p" || resp.Header.Get("X-Proxied-By") != "verge" || resp.Header.Get("X-Origin") != "1" {
		t.Fatalf("proxy: %v %+v", err, resp)
	}
	resp, err = f.Serve(context.Background(), get("/proxy?b=origin&u=/redirect"))
	if err != nil || resp.Status != http.StatusMovedPermanently || resp.Header.Get("Location") != "/elsewhere" {
		t.Fatalf("a redirect is the function's to pass on: %v %+v", err, resp)
	}

	for path, want := range map[string]string{
		"/get?b=nope&u=/":                         `notfound verge: fetch_head: not found: no backend named "nope"; the app declares origin, private, slow`,
		"/get?b=private&u=/":                      "status1 verge: fetch_head: invalid argument: backend \"private\": 127.0.0.1 is a loopback address",
		"/get?b=slow&u=/hang":                     "unavailable verge: fetch_head: unavailable: backend \"slow\" sent no response within its first_byte_timeout of 30ms",
		"/get?b=origin&u=http://elsewhere.test/x": `notfound verge: fetch_head: not found: the URL's origin http://elsewhere.test is not backend "origin"'s`,
		"/many?b=origin&u=/m&n=40":                "32 limit verge: fetch_head: limit reached: this request already made 32 fetches, the most allowed",
	} {
		if got := serveBody(t, f, get(path)); !strings.HasPrefix(got, want) {
			t.Errorf("%s:\n got %q\nwant %q...", path, got, want)
		}
	}
}

func TestFetchBodiesLeftOpenAreClosed(t *testing.T) {
	gone := make(chan struct{}, 1)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("x"))
		w.(http.Flusher).Flush()
		<-r.Context().Done() // an endless body, until the client hangs up
		gone <- struct{}{}
	}))
	defer origin.Close()
	svc, err := fetch.New("app", []verge.Backend{{Name: "origin", URL: origin.URL, AllowPrivate: true}}, fetch.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	f := fetchGuest(t, svc, verge.Limits{})
	// The gateway's request context ends when the response is sent.
	ctx, cancel := context.WithCancel(context.Background())
	resp, err := f.Serve(ctx, get("/leave?b=origin&u=/endless"))
	if err != nil || string(resp.Body) != `read "x"` {
		t.Fatalf("%v %q", err, resp.Body)
	}
	cancel()
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the backend connection stayed open after the request ended")
	}
	// Without a context that ends, the wall time bounds it.
	f = fetchGuest(t, svc, verge.Limits{WallTime: 200 * time.Millisecond})
	if _, err := f.Serve(context.Background(), get("/leave?b=origin&u=/endless")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the backend connection stayed open past the wall time")
	}
}

func TestFetchUnsupported(t *testing.T) {
	f := fetchGuest(t, nil, verge.Limits{})
	if got := serveBody(t, f, get("/get?b=origin&u=/")); !strings.HasPrefix(got, "status7 verge: fetch_open: not supported by this host: outbound fetch is not available") {
		t.Fatalf("%q", got)
	}
}

// TestFetchCarriesTraceContext: a fetch sends the request's trace context
// (W3C traceparent) to the backend, unless the guest set its own.
func TestFetchCarriesTraceContext(t *testing.T) {
	f, got := traceparentOrigin(t)
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
	if _, err := f.Serve(ctx, get("/get?b=origin&u=/t")); err != nil {
		t.Fatal(err)
	}
	select {
	case tp := <-got:
		if want := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"; tp != want {
			t.Errorf("traceparent at the backend: %q, want %q", tp, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the backend saw no request")
	}
}

// With tracing on, a fetch is a span of its own under the guest's, and the
// backend's traceparent names it.
func TestFetchSpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	defer otel.SetTracerProvider(prev)
	f, got := traceparentOrigin(t)
	ctx, parent := tp.Tracer("test").Start(context.Background(), "request")
	if _, err := f.Serve(ctx, get("/get?b=origin&u=/t")); err != nil {
		t.Fatal(err)
	}
	parent.End()
	var tpHeader string
	select {
	case tpHeader = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the backend saw no request")
	}
	for _, s := range rec.Ended() {
		if s.Name() != "fetch origin" {
			continue
		}
		if s.Parent().SpanID() != parent.SpanContext().SpanID() {
			t.Fatalf("the fetch span's parent is %v, not the request's span", s.Parent().SpanID())
		}
		if want := "-" + s.SpanContext().SpanID().String() + "-"; !strings.Contains(tpHeader, want) {
			t.Fatalf("traceparent at the backend %q does not name the fetch span %s", tpHeader, want)
		}
		return
	}
	t.Fatalf("no fetch span among %d ended spans", len(rec.Ended()))
}

// traceparentOrigin is the gofetch guest in front of an origin that hands
// the traceparent of its first request to got.
func traceparentOrigin(t *testing.T) (f *wasm.Function, got <-chan string) {
	t.Helper()
	ch := make(chan string, 1)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case ch <- r.Header.Get("Traceparent"):
		default:
		}
		w.Write([]byte("ok"))
	}))
	t.Cleanup(origin.Close)
	svc, err := fetch.New("app", []verge.Backend{{Name: "origin", URL: origin.URL, AllowPrivate: true}}, fetch.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	return fetchGuest(t, svc, verge.Limits{}), ch
}
