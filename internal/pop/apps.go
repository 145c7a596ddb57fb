package pop

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/app"
	"github.com/verge-edge/verge/internal/bundle"
	"github.com/verge-edge/verge/internal/jsonapi"
	"github.com/verge-edge/verge/internal/obs"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Many apps per PoP. Each app a PoP serves is one hosted version: its
// functions loaded into the PoP's one engine, behind its own gateway. A
// request reaches an app by its Host header: NAME.localhost (any port), or
// one of the names its manifest lists in `domains`; a Host that names no
// app (other than NAME.localhost) reaches the default app if the PoP has one
// (verge dev's app, or the app `verge net up --app` deployed), else gets a
// 404 naming the host.

// VersionHeader names, on every response an app gives, the version of the
// app that answered.
const VersionHeader = "Verge-Version"

// hosted is one version of an app served at this PoP.
type hosted struct {
	name    string
	version atomic.Pointer[string] // changes when verge dev reloads a module
	full    *verge.Manifest        // the whole manifest (central routes)
	app     *app.App               // the functions loaded here; nil: none
	edge    *edgeApp               // fetch and the cache (cache.go)
	handler http.Handler           // appHandler
	hits    *hitServer             // its cache hits, ahead of handler; nil: none (cache.go)
	getSpan string                 // "GET "+name: the name of most requests' spans, built once
}

func (h *hosted) Version() string { return *h.version.Load() }

// spanName names a request's server span: its method and the app.
func (h *hosted) spanName(method string) string {
	if method == http.MethodGet && h.getSpan != "" {
		return h.getSpan
	}
	return method + " " + h.name
}

// routing is the PoP's table of apps, replaced whole on every change.
type routing struct {
	byName map[string]*hosted
	byHost map[string]*hosted // lower-case host names (domains)
	def    *hosted
}

// apps is the set of apps a PoP serves.
type apps struct {
	mu      sync.Mutex // serialises changes; readers load table
	table   atomic.Pointer[routing]
	defName string // the default app's name, when it is served
	// standby keeps, per app, the version the last swap replaced, loaded,
	// for standbyFor: a rollback to it is a swap, not a compile.
	standby map[string]*standbyVersion
}

type standbyVersion struct {
	h     *hosted
	timer *time.Timer
}

// standbyFor is how long a replaced version stays loaded for a rollback.
const standbyFor = 10 * time.Minute

func (a *apps) init(def string) {
	a.defName = def
	a.standby = map[string]*standbyVersion{}
	a.table.Store(&routing{byName: map[string]*hosted{}, byHost: map[string]*hosted{}})
}

// set serves h in place of its app's current version and returns the
// version it replaced (nil: none).
func (a *apps) set(h *hosted) *hosted {
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.table.Load()
	prev := old.byName[h.name]
	t := &routing{byName: map[string]*hosted{}, byHost: map[string]*hosted{}}
	for name, x := range old.byName {
		if name != h.name {
			t.byName[name] = x
		}
	}
	t.byName[h.name] = h
	t.index(a.defName)
	a.table.Store(t)
	return prev
}

// remove stops routing to app and returns what served it.
func (a *apps) remove(name string) *hosted {
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.table.Load()
	prev := old.byName[name]
	if prev == nil {
		return nil
	}
	t := &routing{byName: map[string]*hosted{}, byHost: map[string]*hosted{}}
	for n, x := range old.byName {
		if n != name {
			t.byName[n] = x
		}
	}
	t.index(a.defName)
	a.table.Store(t)
	return prev
}

func (t *routing) index(def string) {
	for _, h := range t.byName {
		t.byHost[strings.ToLower(h.name)+".localhost"] = h
		for _, d := range h.full.Domains {
			t.byHost[d] = h
		}
	}
	t.def = t.byName[def]
}

// byName returns the version of app served here.
func (a *apps) byName(name string) *hosted { return a.table.Load().byName[name] }

// route finds the app a Host header names (named), or the default app.
func (a *apps) route(hostport string) (h *hosted, host string, named bool) {
	host = strings.ToLower(hostport)
	// Without a colon there is no port, and SplitHostPort would make an
	// error to say so: most requests name a host alone.
	if strings.IndexByte(host, ':') >= 0 {
		if hh, _, err := net.SplitHostPort(host); err == nil {
			host = hh
		}
	}
	t := a.table.Load()
	if h := t.byHost[host]; h != nil {
		return h, host, true
	}
	if strings.HasSuffix(host, ".localhost") {
		return nil, host, true // names an app, which is not here
	}
	return t.def, host, false
}

// serving returns app → version of everything served here.
func (a *apps) serving() map[string]string {
	out := map[string]string{}
	for name, h := range a.table.Load().byName {
		out[name] = h.Version()
	}
	return out
}

// ---- loading ----

// localVersion is the version id of an app served from its directory (verge
// dev, `app` in tests): the id its bundle would have.
func localVersion(m *verge.Manifest) string {
	if _, id, err := bundle.Pack(m, bundle.Meta{Placement: placementMeta(m)}); err == nil {
		return id
	}
	return "local"
}

// placementMeta keeps a manifest's placement in the id when it is not the
// default, as a deploy would carry it.
func placementMeta(m *verge.Manifest) verge.Placement {
	if m.Placement == verge.PlacementCentral {
		return m.Placement
	}
	return ""
}

// declare registers an app's data with the services that need it before
// any version serves: documents (collections) and stocks (counters).
func (p *PoP) declare(m *verge.Manifest) error {
	p.Docs.SetApp(m)
	return p.Stock.SetApp(m)
}

// load compiles a version of an app (an edge PoP leaves out its central
// functions) and builds its handler. Nothing serves it yet.
func (p *PoP) load(ctx context.Context, version string, m *verge.Manifest) (*hosted, error) {
	h := &hosted{name: m.Name, full: m, getSpan: "GET " + m.Name}
	h.version.Store(&version)
	if len(m.Functions) > 0 {
		lm := m
		if !p.self.Central {
			lm = edgeManifest(m)
		}
		a, err := app.Load(ctx, p.eng, lm, p.log.With("app", m.Name))
		if err != nil {
			return nil, err
		}
		a.Gateway.Observe = p.metrics.AppServed(m.Name)
		if p.apps.byName(m.Name) != nil {
			// It replaces a serving version: warm before the swap, so that
			// its first requests do not queue behind instance starts.
			if err := a.Warm(ctx); err != nil {
				a.Close()
				return nil, err
			}
		}
		h.app = a
		if err := p.attachEdge(h, m); err != nil {
			a.Close()
			return nil, err
		}
	}
	h.handler, h.hits = p.appHandler(h), p.hitsFirst(h)
	return h, nil
}

// serve loads a version (or takes it from standby) and swaps it in; the
// version it replaces finishes its requests in flight and stays loaded on
// standby for a while.
func (p *PoP) serve(ctx context.Context, version string, m *verge.Manifest) error {
	h := p.apps.takeStandby(m.Name, version)
	if h != nil && h.app != nil {
		if err := h.app.Warm(ctx); err != nil {
			h.app.Close()
			h = nil
		}
	}
	if h == nil {
		var err error
		if h, err = p.load(ctx, version, m); err != nil {
			return err
		}
	}
	p.apps.putStandby(p.apps.set(h))
	p.log.Info("serving", "app", m.Name, "version", version)
	return nil
}

// remove stops serving an app.
func (p *PoP) remove(name string) {
	p.apps.dropStandby(name)
	if old := p.apps.remove(name); old != nil && old.app != nil {
		go old.app.Close()
	}
}

// putStandby keeps a replaced version loaded for standbyFor, closing the
// one it replaces there.
func (a *apps) putStandby(h *hosted) {
	if h == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if old := a.standby[h.name]; old != nil {
		old.timer.Stop()
		closeHosted(old.h)
	}
	sv := &standbyVersion{h: h}
	sv.timer = time.AfterFunc(standbyFor, func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.standby[h.name] == sv {
			delete(a.standby, h.name)
			closeHosted(h)
		}
	})
	a.standby[h.name] = sv
}

// takeStandby returns the app's standby version if it is version.
func (a *apps) takeStandby(app, version string) *hosted {
	a.mu.Lock()
	defer a.mu.Unlock()
	sv := a.standby[app]
	if sv == nil || sv.h.Version() != version {
		return nil
	}
	sv.timer.Stop()
	delete(a.standby, app)
	return sv.h
}

func (a *apps) dropStandby(app string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if sv := a.standby[app]; sv != nil {
		sv.timer.Stop()
		delete(a.standby, app)
		closeHosted(sv.h)
	}
}

// closeHosted closes a version once its requests in flight are done.
func closeHosted(h *hosted) {
	if h.app != nil {
		go h.app.Close()
	}
}

// deployHost is the PoP as the deploy agent drives it.
type deployHost struct{ p *PoP }

func (d deployHost) Declare(m *verge.Manifest) error { return d.p.declare(m) }
func (d deployHost) Serve(ctx context.Context, version string, m *verge.Manifest) error {
	return d.p.serve(ctx, version, m)
}
func (d deployHost) Remove(app string) { d.p.remove(app) }

// probe calls an app's route at this PoP as a client would (the deploy
// gate's health checks).
func (p *PoP) probe(ctx context.Context, app, path string) (code int, err error) {
	h := p.apps.byName(app)
	if h == nil {
		return 0, fmt.Errorf("app %s is not served here", app)
	}
	r := httptest.NewRequestWithContext(ctx, http.MethodGet, path, nil)
	r.Host = app + ".localhost"
	w := httptest.NewRecorder()
	// A streamed response that breaks off aborts its handler, as net/http
	// expects (http.ErrAbortHandler); here no server recovers it.
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				panic(v)
			}
			code, err = 0, fmt.Errorf("the response of %s broke off", path)
		}
	}()
	h.serveHTTP(w, r)
	return w.Code, nil
}

// ---- HTTP ----

// router serves the PoP's HTTP listener: every app by Host, and the PoP's
// own GET /healthz for hosts that name no app (clients' routers probe it by
// address; an app's own /healthz stays its own).
func (p *PoP) router() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, host, named := p.apps.route(r.Host)
		if !named && r.URL.Path == "/healthz" && r.Method == http.MethodGet {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"pop":%q,"ok":true}`+"\n", p.opts.Self)
			return
		}
		if h == nil {
			jsonapi.WriteValue(w, http.StatusNotFound, struct {
				jsonapi.ErrorBody
				Host string `json:"host"`
			}{jsonapi.ErrorBody{Error: fmt.Sprintf("no app serves host %q at PoP %s; an app answers NAME.localhost and the domains its verge.toml lists", host, p.opts.Self), Kind: "not_found"}, host})
			return
		}
		// The request's trace: continued from the client's traceparent,
		// or begun here (the sampler decides; off without an endpoint).
		ctx, span := r.Context(), trace.SpanFromContext(r.Context())
		if obs.Enabled() {
			ctx = obs.ExtractHTTP(ctx, r.Header)
			ctx, span = obs.Start(ctx, h.spanName(r.Method), trace.SpanKindServer,
				attribute.String("verge.app", h.name), attribute.String("verge.pop", p.opts.Self),
				attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path))
			r = r.WithContext(ctx)
		}
		start := time.Now()
		// A fresh hit is answered before the handler chain (no status
		// writer: it knows its status); anything else goes down the chain.
		code, took, hit := h.hits.serve(w, r, start)
		if !hit {
			sw := &statusWriter{ResponseWriter: w, start: start}
			h.handler.ServeHTTP(sw, r)
			code, took = sw.code(), sw.elapsed()
		}
		if code != http.StatusSwitchingProtocols { // a socket's life is no request's latency
			p.slow.Note(ctx, h.name, r.URL.Path, code, took)
		}
		if !span.IsRecording() {
			return
		}
		obs.SetAttributes(span, attribute.Int("http.response.status_code", code), attribute.String("verge.version", w.Header().Get(VersionHeader)))
		if code >= 500 {
			span.SetStatus(codes.Error, http.StatusText(code))
		}
		span.End()
	})
}

// statusWriter remembers the status a handler answered, for the stats,
// and when the request began and (once a layer read the clock after
// the response) ended: the layers under the router share two clock
// readings, which cost ~0.1 µs each on a VM.
type statusWriter struct {
	http.ResponseWriter
	status     int
	start, end time.Time
}

// elapsed is the time from start to the end a layer noted, or to now.
func (w *statusWriter) elapsed() time.Duration {
	if w.end.IsZero() {
		return time.Since(w.start)
	}
	return w.end.Sub(w.start)
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// Flush keeps streaming responses streaming.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack hands a WebSocket upgrade the connection; the request counts as a
// 101 (gorilla writes the status line on the raw connection).
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	return c, rw, err
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// serveLocal runs a request through the app's gateway here, naming the
// version and counting the request for the deploy gate.
func (p *PoP) serveLocal(h *hosted, w http.ResponseWriter, r *http.Request) {
	version := h.Version()
	w.Header()[VersionHeader] = []string{version}
	if h.app == nil {
		jsonapi.Error(w, http.StatusNotFound, "not_found", fmt.Sprintf("app %s serves no function here", h.name))
		return
	}
	done := p.quotas.admit(h.name, w)
	if done == nil {
		return
	}
	defer done()
	// The router's writer, when it reaches here unwrapped, already records
	// the status and the start: one per request is enough.
	sw, ok := w.(*statusWriter)
	if !ok {
		sw = &statusWriter{ResponseWriter: w, start: time.Now()}
	}
	p.serveGateway(h, sw, r)
	if sw.code() != http.StatusSwitchingProtocols { // nor a deploy gate's
		sw.end = time.Now()
		p.stats.RecordAt(sw.end, h.name, version, sw.code(), sw.end.Sub(sw.start))
	}
}
