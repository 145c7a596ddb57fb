package wasm

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// KindGuestError is a verge_handle that returned a non-zero code.
const KindGuestError = "guest_error"

// instance is one initialised module instance of a verge-executor function.
// It serves one request at a time.
type instance struct {
	mod    api.Module
	handle api.Function
	mem    *guestMemory
	cs     Call
	stack  [2]uint64
	served int
}

func (i *instance) close(ctx context.Context) {
	_ = i.mod.Close(context.WithoutCancel(ctx))
}

// newInstance instantiates the compiled module and runs _initialize (the
// reactor's runtime start) under the request limits, so that a guest whose
// initialisation loops or allocates without end is stopped too.
func (f *Function) newInstance(ctx context.Context) (*instance, error) {
	f.starts.Add(1)
	ctx = context.WithoutCancel(ctx)
	mem := f.newMemory()
	var mod api.Module
	_, err := limited(ctx, max(f.Limits.CPUTime, initCPUTime), time.Now().Add(f.Limits.WallTime), nil, f.env(), func(ctx context.Context) error {
		var err error
		mod, err = f.rt.InstantiateModule(withMemory(ctx, mem), f.compiled, f.moduleConfig())
		if err != nil {
			return err
		}
		if init := mod.ExportedFunction("_initialize"); init != nil {
			_, err = init.Call(ctx)
		}
		return err
	})
	if err != nil {
		if mod != nil {
			mod.Close(context.Background())
		}
		return nil, f.runError(ctx, mem, err)
	}
	return &instance{mod: mod, handle: mod.ExportedFunction(HandleExport), mem: mem}, nil
}

// initCPUTime is the CPU budget of a reactor's _initialize: a Go guest's
// runtime start costs a few milliseconds, more than a request's default.
const initCPUTime = 2 * time.Second

// pool keeps initialised instances of a pooled verge-executor function.
type pool struct {
	f      *Function
	idle   chan *instance
	target int // instances kept warm
	closed atomic.Bool
	wg     sync.WaitGroup
}

func newPool(f *Function) *pool {
	return &pool{
		f:      f,
		idle:   make(chan *instance, f.Limits.MaxInstances),
		target: min(f.Limits.MaxInstances, 2*runtime.GOMAXPROCS(0)),
	}
}

// warm creates instances until n are idle.
func (p *pool) warm(ctx context.Context, n int) error {
	for len(p.idle) < n && !p.closed.Load() {
		inst, err := p.f.newInstance(ctx)
		if err != nil {
			return err
		}
		p.put(inst)
	}
	return nil
}

// FunctionStats are what a function's instances are doing.
type FunctionStats struct {
	Idle   int    // warm in the pool
	Busy   int    // serving a request
	Starts uint64 // instances started since the function was loaded
}

// Stats returns the function's instance figures.
func (f *Function) Stats() FunctionStats {
	st := FunctionStats{Busy: len(f.sem), Starts: f.starts.Load()}
	if f.pool != nil {
		st.Idle = len(f.pool.idle)
	}
	return st
}

// Warm fills the pool to its target now: a version about to take traffic
// from another should not make its first requests wait for instances.
func (f *Function) Warm(ctx context.Context) error {
	if f.pool == nil {
		return nil
	}
	return f.pool.warm(ctx, f.pool.target)
}

// WarmUp fills the pool in the background so that the first burst of
// requests finds instances ready.
func (f *Function) WarmUp() {
	if f.pool != nil {
		f.pool.refill()
	}
}

func (p *pool) refill() {
	if p.closed.Load() {
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if err := p.warm(context.Background(), p.target); err != nil {
			p.f.log.Warn("could not keep instances warm", "err", err)
		}
	}()
}

func (p *pool) get(ctx context.Context) (*instance, error) {
	select {
	case inst := <-p.idle:
		return inst, nil
	default:
		return p.f.newInstance(ctx)
	}
}

func (p *pool) put(inst *instance) {
	if p.closed.Load() {
		inst.close(context.Background())
		return
	}
	select {
	case p.idle <- inst:
	default:
		inst.close(context.Background())
	}
}

// discard drops an instance that trapped, timed out, served its quota or grew
// too large, and starts a replacement in the background.
func (p *pool) discard(inst *instance) {
	inst.close(context.Background())
	p.refill()
}

func (p *pool) close(ctx context.Context) {
	p.closed.Store(true)
	p.wg.Wait()
	for {
		select {
		case inst := <-p.idle:
			inst.close(ctx)
		default:
			return
		}
	}
}

func (f *Function) serveVerge(ctx context.Context, deadline time.Time, req *Request) (*Response, error) {
	var inst *instance
	var err error
	if f.pool != nil {
		inst, err = f.pool.get(ctx)
	} else {
		inst, err = f.newInstance(ctx)
	}
	if err != nil {
		return nil, err
	}
	cs := &inst.cs
	cs.reset(req, f.Spec.App, f.Limits.ResponseBody, f.log)
	fresh := inst.served == 0
	cpu, err := limited(ctx, f.Limits.CPUTime, deadline, cs, f.env(), func(ctx context.Context) error {
		inst.stack[0], inst.stack[1] = handleRequest, handleResponse
		return inst.handle.CallWithStack(ctx, inst.stack[:])
	})
	inst.served++
	rc := uint32(inst.stack[0])
	healthy := err == nil && inst.served < f.Limits.RecycleAfter && inst.mem.size.Load() <= f.Limits.MemoryHighWater
	resp := &Response{Status: cs.status, Header: cs.header, Body: cs.body, CPU: cpu, Fresh: fresh}
	overflow := cs.overflow
	cs.reset(nil, "", 0, nil)
	switch {
	case f.pool == nil:
		inst.close(ctx)
	case healthy:
		f.pool.put(inst)
	default:
		f.pool.discard(inst)
	}
	if err != nil {
		return nil, withCPU(f.runError(ctx, inst.mem, err), cpu)
	}
	if overflow {
		return nil, withCPU(limitError(KindResponseBody, http.StatusInternalServerError,
			"the response body exceeds the function's limit of %d bytes (limits.response_body)", f.Limits.ResponseBody), cpu)
	}
	if rc != 0 {
		return nil, withCPU(&Error{Kind: KindGuestError, Status: http.StatusInternalServerError, Msg: fmt.Sprintf("%s returned error code %d", HandleExport, rc)}, cpu)
	}
	if resp.Status == 0 {
		resp.Status = http.StatusOK
	}
	return resp, nil
}
