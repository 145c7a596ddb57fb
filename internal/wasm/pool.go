package wasm

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/verge-edge/verge"
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
	run    run // reused by every request
	// callHandle is callHandler as a func value made once, not per request.
	callHandle func(context.Context) error
	served     int
	idle       time.Time // when it was put back in the pool
	// globals are the instance's mutable globals, for snapshots
	// (Function.globals); taint is the last of them.
	globals []api.MutableGlobal
	taint   api.Global
	// streams are a command module's (WAGI) standard streams.
	streams *wagiStreams
}

func (i *instance) close(ctx context.Context) {
	_ = i.mod.Close(context.WithoutCancel(ctx))
}

// newInstance instantiates the compiled module and runs _initialize (the
// reactor's runtime start) under the request limits, so that a guest whose
// initialisation loops or allocates without end is stopped too.
func (f *Function) newInstance(ctx context.Context) (*instance, error) {
	if f.snap != nil {
		return f.instanceFromSnapshot(ctx)
	}
	f.starts.Add(1)
	ctx = context.WithoutCancel(ctx)
	mem := f.newMemory()
	cfg, streams := f.instanceConfig()
	var mod api.Module
	_, err := limited(ctx, f.share, max(f.Limits.CPUTime, initCPUTime), time.Now().Add(f.Limits.WallTime), nil, f.env(), func(ctx context.Context) error {
		var err error
		mod, err = f.rt.InstantiateModule(withMemory(ctx, mem), f.compiled, cfg)
		if err != nil {
			return err
		}
		m := mod.Memory()
		for i, d := range f.data {
			if m == nil || !m.Write(d.Offset, d.Data) {
				return fmt.Errorf("data[%d]: out of bounds memory access", i)
			}
		}
		if init := mod.ExportedFunction("_initialize"); init != nil && streams == nil {
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
	inst := f.bind(mod, mem)
	inst.streams = streams
	return inst, nil
}

// instanceConfig is the configuration of a new instance: the function's,
// or for a command module (WAGI), one naming streams of the instance's own,
// without start function: the host runs _start for each request.
func (f *Function) instanceConfig() (wazero.ModuleConfig, *wagiStreams) {
	if f.Spec.Executor != verge.ExecutorWAGI {
		return f.moduleConfig(), nil
	}
	w := f.newWAGIStreams()
	w.cfg = w.cfg.WithStartFunctions()
	return w.cfg, w
}

// callHandler runs verge_handle for the request in inst.cs, or a command
// module's _start.
func (inst *instance) callHandler(ctx context.Context) error {
	if inst.streams != nil {
		return inst.handle.CallWithStack(ctx, nil)
	}
	inst.stack[0], inst.stack[1] = handleRequest, handleResponse
	return inst.handle.CallWithStack(ctx, inst.stack[:])
}

// initCPUTime is the CPU budget of a reactor's _initialize: a Go guest's
// runtime start costs a few milliseconds, more than a request's default.
const initCPUTime = 2 * time.Second

// DefaultIdleTimeout is how long an instance may stay idle in its pool
// before it is closed (Options.IdleTimeout).
const DefaultIdleTimeout = 30 * time.Second

// pool keeps initialised instances of a pooled verge-executor function.
//
// Idle instances are a stack: the instance put back last is taken first, so
// a lightly loaded function keeps running on one instance whose memory and
// the code's data are still in the CPU caches, and the instances at the
// bottom are the ones that have been idle longest. Those are closed after
// the idle timeout, down to none: an idle function costs no instance memory,
// and its next request instantiates one.
type pool struct {
	f       *Function
	target  int // instances WarmUp makes ready
	timeout time.Duration

	mu     sync.Mutex
	idle   []*instance // a stack; idle[len-1] was put back last
	closed bool
	timer  *time.Timer // armed while some instance is idle
	wg     sync.WaitGroup
}

func newPool(f *Function) *pool {
	timeout := f.engine.opts.IdleTimeout
	if timeout == 0 {
		timeout = DefaultIdleTimeout
	}
	return &pool{
		f:       f,
		target:  min(f.Limits.MaxInstances, 2*runtime.GOMAXPROCS(0)),
		timeout: timeout,
	}
}

// warm creates instances until n are idle.
func (p *pool) warm(ctx context.Context, n int) error {
	for p.idleCount() < n {
		inst, err := p.f.newInstance(ctx)
		if err != nil {
			return err
		}
		if !p.put(inst) {
			return nil
		}
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
	st := FunctionStats{Busy: int(f.sem.n.Load()), Starts: f.starts.Load()}
	if f.pool != nil {
		st.Idle = f.pool.idleCount()
	}
	return st
}

// Warm fills the pool to its target now: a version about to take traffic
// from another should not make its first requests wait for instances (the
// pool gives back what stays idle, see pool.timeout).
func (f *Function) Warm(ctx context.Context) error {
	if f.pool == nil {
		return nil
	}
	return f.pool.warm(ctx, f.pool.target)
}

// WarmUp fills the pool in the background so that the first burst of
// requests finds instances ready; they are closed again if no request comes
// within the idle timeout.
func (f *Function) WarmUp() {
	if f.pool != nil {
		f.pool.refill()
	}
}

func (p *pool) refill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
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

func (p *pool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// take returns the instance put back last, or nil.
func (p *pool) take() *instance {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.idle)
	if n == 0 {
		return nil
	}
	inst := p.idle[n-1]
	p.idle[n-1] = nil
	p.idle = p.idle[:n-1]
	return inst
}

func (p *pool) get(ctx context.Context) (*instance, error) {
	if inst := p.take(); inst != nil {
		return inst, nil
	}
	return p.f.newInstance(ctx)
}

// put makes inst idle, or closes it if the pool is closed or full; it
// reports whether inst was kept.
func (p *pool) put(inst *instance) bool { return p.putAt(inst, time.Now()) }

// putAt is put for an instance idle since now.
func (p *pool) putAt(inst *instance, now time.Time) bool {
	inst.idle = now
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.f.Limits.MaxInstances {
		p.mu.Unlock()
		inst.close(context.Background())
		return false
	}
	p.idle = append(p.idle, inst)
	if p.timer == nil {
		p.timer = time.AfterFunc(p.timeout, p.shrink)
	}
	p.mu.Unlock()
	return true
}

// shrink closes the instances idle for longer than the timeout and, while
// some remain idle, runs again when the oldest of them times out.
func (p *pool) shrink() {
	now := time.Now()
	var expired []*instance
	p.mu.Lock()
	p.timer = nil
	n := 0
	for n < len(p.idle) && now.Sub(p.idle[n].idle) >= p.timeout {
		n++
	}
	expired = append(expired, p.idle[:n]...)
	rest := copy(p.idle, p.idle[n:])
	clear(p.idle[rest:])
	p.idle = p.idle[:rest]
	if len(p.idle) > 0 && !p.closed {
		p.timer = time.AfterFunc(p.timeout-now.Sub(p.idle[0].idle), p.shrink)
	}
	p.mu.Unlock()
	for _, inst := range expired {
		inst.close(context.Background())
	}
}

// renew makes inst a fresh instance again, restored from the snapshot, or
// discards it when that is not possible (no snapshot, its memory grew, it
// changed its files, it exited).
func (p *pool) renew(inst *instance) {
	if p.f.snap != nil && p.f.restore(inst) == nil {
		if inst.run.end.IsZero() {
			p.put(inst)
		} else {
			p.putAt(inst, inst.run.end) // idle since its run ended
		}
		return
	}
	p.discard(inst)
}

// discard drops an instance that trapped, timed out, served its quota or grew
// too large, and starts a replacement in the background.
func (p *pool) discard(inst *instance) {
	inst.close(context.Background())
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if inst, err := p.f.newInstance(context.Background()); err == nil {
			p.put(inst)
		}
	}()
}

func (p *pool) close(ctx context.Context) {
	p.mu.Lock()
	p.closed = true
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	p.mu.Unlock()
	p.wg.Wait()
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, inst := range idle {
		inst.close(ctx)
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
	r := &inst.run
	r.call, r.env, r.limit, r.deadline, r.share = cs, f.env(), f.Limits.CPUTime, deadline, f.share
	fresh := inst.served == 0
	cpu, err := limitedRun(ctx, r, inst.callHandle)
	r.call = nil
	inst.served++
	rc := uint32(inst.stack[0])
	healthy := err == nil && inst.served < f.Limits.RecycleAfter && inst.mem.size.Load() <= f.Limits.MemoryHighWater
	resp := &Response{Status: cs.status, Header: cs.header, Body: cs.body, CPU: cpu, Fresh: fresh, Streamed: cs.streaming}
	overflow := cs.overflow
	cs.reset(nil, "", 0, nil)
	if err != nil {
		err = withCPU(f.runError(ctx, inst.mem, err), cpu) // before the instance is reset
	}
	switch {
	case f.pool == nil:
		inst.close(ctx)
	case healthy && !f.strict:
		f.pool.putAt(inst, r.end)
	default:
		// A strict instance is reset for every request; a pooled one that
		// is due for replacement too, when it can be.
		f.pool.renew(inst)
	}
	if err != nil {
		return nil, err
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
