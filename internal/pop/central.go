package pop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/crdt"
	"github.com/verge-edge/verge/internal/mesh"
	"github.com/verge-edge/verge/internal/spot"
	"github.com/verge-edge/verge/internal/stock"
	"github.com/verge-edge/verge/internal/wasm"
)

// spotPrefix is the NATS subject prefix the centre's SPOT engine answers on.
const spotPrefix = "verge.spot"

// startSpot starts the SPOT engine at the centre (JetStream on the centre's
// embedded server, fsync on every write) or its client at an edge PoP (one
// request per operation over the link to the centre), and the stock layer.
func (p *PoP) startSpot(ctx context.Context) error {
	self, _ := p.opts.Network.PoP(p.opts.Self)
	central, _ := p.opts.Network.Central()
	if self.Central {
		js, err := p.openEngine(ctx)
		if err != nil {
			return err
		}
		stop, err := spot.Serve(p.Mesh.Local(), spotPrefix, js)
		if err != nil {
			return err
		}
		p.stopSpot = stop
		p.Spot = js
	} else {
		nc, _ := p.Mesh.Conn(central.ID)
		p.Spot = spot.NewClient(nc, spotPrefix, p.opts.SpotTimeout)
	}
	var apps []*verge.Manifest
	if p.opts.App != nil {
		apps = append(apps, p.opts.App)
	}
	var err error
	p.Stock, err = stock.New(stock.Options{Central: p.Spot, Store: p.Data.Store(), Apps: apps, AtCentre: self.Central, Logger: p.log})
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

// facade is the SPOT as functions and the admin API see it: takes of
// declared stocks go through the hybrid threshold.
type facade struct{ p *PoP }

func (f facade) Claim(ctx context.Context, app, ns, key, owner string) (spot.Claim, error) {
	return f.p.Spot.Claim(ctx, app, ns, key, owner)
}
func (f facade) Release(ctx context.Context, app, ns, key, owner string) (bool, error) {
	return f.p.Spot.Release(ctx, app, ns, key, owner)
}
func (f facade) Take(ctx context.Context, app, counter string, n int64) (spot.Take, error) {
	t, err := f.p.Stock.Take(ctx, app, counter, n)
	return t.Take, err
}
func (f facade) Restock(ctx context.Context, app, counter string, n int64) (int64, error) {
	return f.p.Stock.Restock(ctx, app, counter, n)
}
func (f facade) Counter(ctx context.Context, app, counter string) (int64, error) {
	return f.p.Stock.Counter(ctx, app, counter)
}
func (f facade) GetDoc(ctx context.Context, app, key string) ([]byte, uint64, error) {
	return f.p.Spot.GetDoc(ctx, app, key)
}
func (f facade) UpdateDoc(ctx context.Context, app, key string, rev uint64, ops []crdt.Op) ([]byte, uint64, error) {
	return f.p.Spot.UpdateDoc(ctx, app, key, rev, ops)
}

// ---- central functions ----

// invocation is a request to a central function, carried over the mesh.
type invocation struct {
	Fn     string      `json:"fn,omitempty"` // "": route by path
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
		if fn.Kind != "central" {
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
		if fn.Kind != "central" {
			c.Functions = append(c.Functions, fn)
		}
	}
	return &c
}

// maxInvokeBody bounds what a central-function invocation carries each way.
const maxInvokeBody = 4 << 20

// forwardCentral runs a request for a central function at the centre: one
// request over the link to it, one reply.
func (p *PoP) forwardCentral(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxInvokeBody+1))
	if err != nil || len(body) > maxInvokeBody {
		writeJSONError(w, http.StatusRequestEntityTooLarge, "request_body", fmt.Sprintf("a request to a central function carries at most %d bytes", maxInvokeBody))
		return
	}
	res, err := p.invokeCentral(r.Context(), invocation{Method: r.Method, URI: r.URL.RequestURI(), Header: r.Header, Body: body})
	var se *statusError
	switch {
	case errors.As(err, &se) && se.status == wasm.StatusUnknown:
		writeJSONError(w, http.StatusGatewayTimeout, "unknown_outcome", err.Error())
		return
	case err != nil:
		w.Header().Set("Retry-After", "1")
		writeJSONError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	for k, v := range res.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(res.Status)
	w.Write(res.Body)
}

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
		return nil, &statusError{wasm.StatusUnavailable, fmt.Errorf("the central PoP %s, where this function runs, is unreachable; retry later", central.ID)}
	case errors.As(err, &re):
		// The centre refused the invocation before running anything.
		return nil, &statusError{wasm.StatusUnavailable, fmt.Errorf("central function: %w", err)}
	default:
		return nil, &statusError{wasm.StatusUnknown, fmt.Errorf("central function: no answer from the central PoP %s in time, so it may or may not have run: %w", central.ID, err)}
	}
	var res invocationResult
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, fmt.Errorf("central function: bad reply: %w", err)
	}
	return &res, nil
}

// handleInvoke runs an invocation at the centre through the app's gateway.
func (p *PoP) handleInvoke(_ string, data []byte) ([]byte, error) {
	if p.app == nil {
		return nil, errors.New("this PoP serves no app")
	}
	var inv invocation
	if err := json.Unmarshal(data, &inv); err != nil {
		return nil, fmt.Errorf("malformed invocation: %w", err)
	}
	req, err := http.NewRequest(inv.Method, inv.URI, bytes.NewReader(inv.Body))
	if err != nil {
		return nil, fmt.Errorf("malformed invocation: %w", err)
	}
	fn, ok := centralRoute(p.opts.App, req.URL.Path)
	if !ok || (inv.Fn != "" && inv.Fn != fn.Name) {
		return json.Marshal(invocationResult{Status: http.StatusNotFound,
			Body: []byte(fmt.Sprintf(`{"error":"no central function %q serves %s","kind":"not_found"}`, inv.Fn, req.URL.Path))})
	}
	req.Header = inv.Header
	if req.Header == nil {
		req.Header = http.Header{}
	}
	req.RequestURI = inv.URI
	rec := &recorder{header: http.Header{}, status: http.StatusOK}
	p.app.Gateway.ServeHTTP(rec, req)
	return json.Marshal(invocationResult{Status: rec.status, Header: rec.header, Body: rec.body.Bytes()})
}

// recorder is a minimal http.ResponseWriter that keeps the response.
type recorder struct {
	header http.Header
	status int
	wrote  bool
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	if r.body.Len()+len(b) > maxInvokeBody {
		return 0, errors.New("central function response too large")
	}
	return r.body.Write(b)
}

func writeJSONError(w http.ResponseWriter, status int, kind, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]string{"error": msg, "kind": kind})
	w.Write(append(b, '\n'))
}
