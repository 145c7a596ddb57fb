package pop

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/verge-edge/verge/crdt"
	"github.com/verge-edge/verge/internal/spot"
	"github.com/verge-edge/verge/internal/wasm"
)

// statusError gives a guest the ABI status of an error.
type statusError struct {
	status uint32
	err    error
}

func (e *statusError) Error() string  { return e.err.Error() }
func (e *statusError) Unwrap() error  { return e.err }
func (e *statusError) Status() uint32 { return e.status }

func spotStatus(err error) error {
	var ce *spot.ConflictError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ce):
		return wasm.SpotConflict(ce.Current, err)
	case errors.Is(err, spot.ErrInvalid):
		return &statusError{wasm.StatusInvalid, err}
	case errors.Is(err, spot.ErrUnknownOutcome): // it also matches ErrUnavailable
		return &statusError{wasm.StatusUnknown, err}
	case errors.Is(err, spot.ErrUnavailable):
		return &statusError{wasm.StatusUnavailable, err}
	}
	return err
}

// runtimeSpot serves the spot_* host calls from the PoP's SPOT facade.
type runtimeSpot struct{ f facade }

func (s runtimeSpot) Claim(ctx context.Context, app, ns, key, owner string) (bool, string, error) {
	c, err := s.f.Claim(ctx, app, ns, key, owner)
	return c.Claimed, c.Owner, spotStatus(err)
}

func (s runtimeSpot) Release(ctx context.Context, app, ns, key, owner string) (bool, error) {
	ok, err := s.f.Release(ctx, app, ns, key, owner)
	return ok, spotStatus(err)
}

func (s runtimeSpot) Take(ctx context.Context, app, counter string, n int64) (bool, int64, error) {
	t, err := s.f.Take(ctx, app, counter, n)
	return t.OK, t.Remaining, spotStatus(err)
}

func (s runtimeSpot) Restock(ctx context.Context, app, counter string, n int64) (int64, error) {
	r, err := s.f.Restock(ctx, app, counter, n)
	return r, spotStatus(err)
}

func (s runtimeSpot) Counter(ctx context.Context, app, counter string) (int64, error) {
	r, err := s.f.Counter(ctx, app, counter)
	return r, spotStatus(err)
}

func (s runtimeSpot) GetDoc(ctx context.Context, app, key string) ([]byte, uint64, error) {
	d, rev, err := s.f.GetDoc(ctx, app, key)
	return d, rev, spotStatus(err)
}

func (s runtimeSpot) UpdateDoc(ctx context.Context, app, key string, rev uint64, ops []crdt.Op) ([]byte, uint64, error) {
	d, r, err := s.f.UpdateDoc(ctx, app, key, rev, ops)
	return d, r, spotStatus(err)
}

// invoker runs central functions for edge functions: over the mesh, or
// directly at the centre.
type invoker struct{ p *PoP }

func (iv invoker) Invoke(ctx context.Context, app, fn string, req *wasm.Request) (*wasm.Response, error) {
	uri := req.URI
	if uri == "" {
		uri = req.Path
		if req.Query != "" {
			uri += "?" + req.Query
		}
	}
	inv := invocation{Fn: fn, Method: req.Method, URI: uri, Header: req.Header, Body: req.Body}
	var res *invocationResult
	var err error
	if iv.p.central() {
		var out []byte
		if out, err = iv.p.handleInvoke("", mustJSON(inv)); err == nil {
			res = new(invocationResult)
			err = json.Unmarshal(out, res)
		}
	} else {
		res, err = iv.p.invokeCentral(ctx, inv) // a *statusError
	}
	if err != nil {
		return nil, err
	}
	return &wasm.Response{Status: res.Status, Header: res.Header, Body: res.Body}, nil
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
