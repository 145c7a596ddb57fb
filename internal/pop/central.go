package pop

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/host"
	"github.com/verge-edge/verge/internal/jsonapi"
	"github.com/verge-edge/verge/internal/mesh"
	"github.com/verge-edge/verge/internal/obs"
	"github.com/verge-edge/verge/internal/spot"
	"github.com/verge-edge/verge/internal/stock"
	"github.com/verge-edge/verge/internal/wasm"
)

// spotPrefix is the NATS subject prefix the centre's SPOT engine answers on.
const spotPrefix = "verge.spot"

// startSpot starts the SPOT engine at the centre (JetStream on the centre's
// embedded server, fsync on every write) or its client at an edge PoP (one
// request per operation over the link to the centre), behind the stock
// decorator: p.Spot is the one engine functions and the admin API use.
func (p *PoP) startSpot(ctx context.Context) error {
	central, _ := p.opts.Network.Central()
	var engine spot.Engine
	if p.self.Central {
		js, err := p.openEngine(ctx)
		if err != nil {
			return err
		}
		stop, err := spot.Serve(p.Mesh.Local(), spotPrefix, js)
		if err != nil {
			return err
		}
		p.stopSpot = stop
		engine = js
	} else {
		nc, _ := p.Mesh.Conn(central.ID)
		engine = spot.NewClient(nc, spotPrefix, p.opts.SpotTimeout)
	}
	var err error
	p.Stock, err = stock.New(stock.Options{Central: engine, Store: p.Store, AtCentre: p.self.Central, Logger: p.log})
	p.Spot = meteredSpot{p.Stock, p.metrics}
	return err
}

// openEngine opens the SPOT buckets. Replicated over three central
// servers, the cluster first elects a leader: wait for it (bounded).
func (p *PoP) openEngine(ctx context.Context) (*spot.JetStream, error) {
	deadline := time.Now().Add(p.opts.CentralWait)
	for {
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		js, err := spot.NewJetStream(actx, p.Mesh.Local(), spot.Config{Replicas: p.opts.SpotReplicas})
		cancel()
		if err == nil {
			return js, nil
		}
		if p.opts.SpotReplicas <= 1 || time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("SPOT engine: %w", err)
		}
		p.log.Info("waiting for the central servers to form the SPOT cluster", "err", err)
		time.Sleep(200 * time.Millisecond)
	}
}

// ---- central functions ----

// invocation is a request to a central function, carried over the mesh.
type invocation struct {
	App    string      `json:"app"`
	Fn     string      `json:"fn,omitempty"` // "": route by path
	ID     string      `json:"id,omitempty"` // the request id, one across the call
	Method string      `json:"method"`
	URI    string      `json:"uri"`
	Header http.Header `json:"header,omitempty"`
	Body   []byte      `json:"body,omitempty"`
}

type invocationResult struct {
	Status int         `json:"status"`
	Header http.Header `json:"header,omitempty"`
	Body   []byte      `json:"body,omitempty"`
}

// centralRoute returns the central function whose routes match path.
func centralRoute(m *verge.Manifest, path string) (verge.Function, bool) {
	for _, fn := range m.Functions {
		if fn.Kind != verge.KindCentral {
			continue
		}
		for _, r := range fn.Routes {
			if prefix, ok := strings.CutSuffix(r, "/*"); ok {
				if path == prefix || strings.HasPrefix(path, prefix+"/") {
					return fn, true
				}
			} else if path == r {
				return fn, true
			}
		}
	}
	return verge.Function{}, false
}

// edgeManifest is the app without its central functions: an edge PoP never
// runs them.
func edgeManifest(m *verge.Manifest) *verge.Manifest {
	c := *m
	c.Functions = nil
	for _, fn := range m.Functions {
		if fn.Kind != verge.KindCentral {
			c.Functions = append(c.Functions, fn)
		}
	}
	return &c
}

// maxInvokeBody bounds what a central-function invocation carries each way.
const maxInvokeBody = 4 << 20

// invoker runs central functions for the invoke host call: directly at the
// centre, over the mesh (one round trip) elsewhere.
type invoker struct{ p *PoP }

func (iv invoker) Invoke(ctx context.Context, app, fn string, req *wasm.Request) (*wasm.Response, error) {
	if iv.p.self.Central {
		return iv.p.callCentral(ctx, app, fn, req), nil
	}
	uri := req.URI
	if uri == "" {
		uri = req.Path
		if req.Query != "" {
			uri += "?" + req.Query
		}
	}
	res, err := iv.p.invokeCentral(ctx, invocation{App: app, Fn: fn, ID: req.ID, Method: req.Method, URI: uri, Header: req.Header, Body: req.Body})
	if err != nil {
		return nil, err
	}
	return &wasm.Response{Status: res.Status, Header: res.Header, Body: res.Body}, nil
}

// callCentral runs a central function of app at the centre: the one whose
// routes match req's path, which must be fn unless fn is "" (a request
// forwarded by its route). A failure is its response, as the gateway
// answers it.
func (p *PoP) callCentral(ctx context.Context, app, fn string, req *wasm.Request) *wasm.Response {
	h := p.apps.byName(app)
	if h == nil || h.app == nil {
		return &wasm.Response{Status: http.StatusNotFound, Header: http.Header{"Content-Type": {"application/json"}},
			Body: jsonapi.ErrorBody{Error: fmt.Sprintf("app %q is not served at the central PoP %s", app, p.opts.Self), Kind: "not_found"}.Encode()}
	}
	f, ok := centralRoute(h.full, req.Path)
	if !ok || (fn != "" && fn != f.Name) {
		return &wasm.Response{Status: http.StatusNotFound, Header: http.Header{"Content-Type": {"application/json"}},
			Body: jsonapi.ErrorBody{Error: fmt.Sprintf("no central function %q serves %s", fn, req.Path), Kind: "not_found"}.Encode()}
	}
	resp := h.app.Gateway.Call(ctx, f.Name, req)
	resp.Header.Set(VersionHeader, h.Version())
	return resp
}

// forwardCentral runs a request for a central function at the centre: one
// request over the link to it, one reply.
func (p *PoP) forwardCentral(w http.ResponseWriter, r *http.Request, app string) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxInvokeBody+1))
	if err != nil || len(body) > maxInvokeBody {
		jsonapi.Error(w, http.StatusRequestEntityTooLarge, "request_body", fmt.Sprintf("a request to a central function carries at most %d bytes", maxInvokeBody))
		return
	}
	res, err := p.invokeCentral(r.Context(), invocation{App: app, Method: r.Method, URI: r.URL.RequestURI(), Header: r.Header, Body: body})
	switch {
	case errors.Is(err, spot.ErrUnknownOutcome):
		jsonapi.Error(w, http.StatusGatewayTimeout, "unknown_outcome", err.Error())
		return
	case err != nil:
		w.Header().Set("Retry-After", "1")
		jsonapi.Error(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	for k, v := range res.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(res.Status)
	w.Write(res.Body)
}

// invokeCentral sends an invocation to the centre. Its errors match
// spot.ErrUnavailable (nothing ran) or spot.ErrUnknownOutcome (it may have).
func (p *PoP) invokeCentral(ctx context.Context, inv invocation) (*invocationResult, error) {
	central, _ := p.opts.Network.Central()
	req, _ := json.Marshal(inv)
	ctx, cancel := context.WithTimeout(ctx, p.opts.SpotTimeout+30*time.Second)
	defer cancel()
	out, err := p.Mesh.Request(ctx, central.ID, "invoke", req)
	var re *mesh.RemoteError
	switch {
	case err == nil:
	case errors.Is(err, mesh.ErrUnreachable):
		// Never sent, or nobody there to run it.
		return nil, host.Errorf(spot.ErrUnavailable, "the central PoP %s, where this function runs, is unreachable; retry later", central.ID)
	case errors.As(err, &re):
		// The centre refused the invocation before running anything.
		return nil, host.Errorf(spot.ErrUnavailable, "central function: %v", err)
	default:
		return nil, host.Errorf(spot.ErrUnknownOutcome, "central function: no answer from the central PoP %s in time, so it may or may not have run: %v", central.ID, err)
	}
	var res invocationResult
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, fmt.Errorf("central function: bad reply: %w", err)
	}
	return &res, nil
}

// handleInvoke runs an invocation from another PoP at the centre, in the
// trace of the request that made it.
func (p *PoP) handleInvoke(ctx context.Context, _ string, data []byte) ([]byte, error) {
	var inv invocation
	if err := json.Unmarshal(data, &inv); err != nil {
		return nil, fmt.Errorf("malformed invocation: %w", err)
	}
	u, err := url.ParseRequestURI(inv.URI)
	if err != nil || !wasm.ValidHeaderName(inv.Method) || len(inv.Body) > maxInvokeBody {
		return nil, fmt.Errorf("malformed invocation: method %q, URI %q, %d bytes of body", inv.Method, inv.URI, len(inv.Body))
	}
	if inv.Header == nil {
		inv.Header = http.Header{}
	}
	req := &wasm.Request{ID: inv.ID, Method: inv.Method, URI: inv.URI, Path: u.Path, Query: u.RawQuery,
		Proto: "HTTP/1.1", Header: inv.Header, Body: inv.Body}
	// The invocation's own deadline is the caller's; the centre bounds it
	// by the function's wall time.
	ctx, span := obs.Tracer().Start(ctx, "invoke "+inv.App, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("verge.app", inv.App), attribute.String("verge.pop", p.opts.Self), attribute.String("url.path", req.Path)))
	resp := p.callCentral(ctx, inv.App, inv.Fn, req)
	span.SetAttributes(attribute.Int("http.response.status_code", resp.Status))
	span.End()
	return json.Marshal(invocationResult{Status: resp.Status, Header: resp.Header, Body: resp.Body})
}
