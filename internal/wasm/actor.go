package wasm

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// An Actor is an instance of a verge-executor function dedicated to one
// user between NewActor and Close: a live room. Its linear memory and
// globals belong to that user alone, so guest code may keep state in them
// between calls; events call exports other than verge_handle (Call). An
// actor runs one call at a time. An instance that traps, or is stopped by
// a limit, is discarded and the next call starts a fresh one (the guest's
// in-memory state is lost, its durable state is not).
type Actor struct {
	f       *Function
	inst    *instance
	exports map[string]api.Function
	served  int // events the instance has run (0: the next is its first)
}

// NewActor starts a fresh instance of f for one user (never one that served
// another: pooled instances keep what earlier requests left in memory).
func (f *Function) NewActor(ctx context.Context) (*Actor, error) {
	inst, err := f.newInstance(ctx)
	if err != nil {
		return nil, err
	}
	return &Actor{f: f, inst: inst, exports: map[string]api.Function{}}, nil
}

// Function is the function the actor is an instance of.
func (a *Actor) Function() *Function { return a.f }

// HasExport reports whether f's module exports the function name.
func (f *Function) HasExport(name string) bool {
	_, ok := f.compiled.ExportedFunctions()[name]
	return ok
}

// MemorySize is the actor's linear memory in bytes (0 when it has none).
func (a *Actor) MemorySize() uint64 {
	if a.inst == nil {
		return 0
	}
	return a.inst.mem.size.Load()
}

// Call calls the export with args under the function's limits; req is what
// the core ABI shows the guest (http_req_head, body_read on handle 1), and
// the response is what it built with http_resp_head and body_write. rc is
// the export's first result (0 if it has none). ctx reaches the host
// functions the guest calls (capabilities find their state in it).
func (a *Actor) Call(ctx context.Context, export string, args []uint64, req *Request) (resp *Response, rc uint32, err error) {
	if a.inst == nil {
		if a.inst, err = a.f.newInstance(ctx); err != nil {
			return nil, 0, err
		}
		a.served = 0
		clear(a.exports)
	}
	inst := a.inst
	fn := a.exports[export]
	if fn == nil {
		if fn = inst.mod.ExportedFunction(export); fn == nil {
			return nil, 0, &Error{Kind: KindGuestError, Status: http.StatusInternalServerError, Msg: fmt.Sprintf("the module exports no %s", export)}
		}
		a.exports[export] = fn
	}
	if req == nil {
		req = &Request{}
	}
	cs := &inst.cs
	cs.reset(req, a.f.Spec.App, a.f.Limits.ResponseBody, a.f.log)
	var results []uint64
	fresh := a.served == 0
	a.served++
	cpu, err := limited(ctx, a.f.share, a.f.Limits.CPUTime, time.Now().Add(a.f.Limits.WallTime), cs, a.f.env(), func(ctx context.Context) error {
		var err error
		results, err = fn.Call(ctx, args...)
		return err
	})
	resp = &Response{Status: cs.status, Header: cs.header, Body: cs.body, CPU: cpu, Fresh: fresh}
	overflow := cs.overflow
	cs.reset(nil, "", 0, nil)
	if err != nil {
		a.inst = nil
		inst.close(ctx)
		return nil, 0, withCPU(a.f.runError(ctx, inst.mem, err), cpu)
	}
	if len(results) > 0 {
		rc = uint32(results[0])
	}
	if inst.mem.size.Load() > a.f.Limits.MemoryHighWater {
		// Too large to keep: the next call starts afresh.
		a.inst = nil
		inst.close(ctx)
	}
	if overflow {
		return nil, rc, limitError(KindResponseBody, http.StatusInternalServerError,
			"the response body exceeds the function's limit of %d bytes (limits.response_body)", a.f.Limits.ResponseBody)
	}
	if resp.Status == 0 {
		resp.Status = http.StatusOK
	}
	return resp, rc, nil
}

// Close frees the actor's instance.
func (a *Actor) Close() {
	if a.inst != nil {
		a.inst.close(context.Background())
		a.inst = nil
	}
}
