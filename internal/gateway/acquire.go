package gateway

import "github.com/verge-edge/verge/internal/wasm"

// Acquire returns the live version of function fn, which cannot be closed
// until release is called (a version swap waits for it), as a request
// holds it while it runs. Rooms hold it for one event at a time.
func (g *Gateway) Acquire(fn string) (f *wasm.Function, release func(), ok bool) {
	for {
		t := g.table.Load()
		v := t.versions[fn]
		if v == nil {
			return nil, nil, false
		}
		v.mu.RLock()
		if !v.closed {
			return v.fn, v.mu.RUnlock, true
		}
		v.mu.RUnlock()
	}
}

// NewRequestID returns a request id of this gateway's series.
func (g *Gateway) NewRequestID() string { return g.requestID() }
