package wasm

import (
	"context"
	"errors"
	"runtime"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"golang.org/x/sys/unix"

	"github.com/verge-edge/verge/internal/wasmbin"
)

// ThreadCPUTime is the CPU time consumed so far by the calling OS thread.
func ThreadCPUTime() time.Duration {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// run is one stretch of guest execution under limits. Guests are
// instrumented (wasmbin.InstrumentYield) to call the host's yield function
// every few thousand loop iterations or calls; yield asks run whether to stop.
// Nothing outside the guest's own thread is involved: compiled guest code
// cannot be preempted, so a timer or watchdog goroutine might never get to
// run while guests occupy the Ps, and a guest in a loop would block the
// garbage collector. See RATIONALE.md.
type run struct {
	ctx      context.Context
	call     *Call         // the request's state for the host ABI; nil outside requests
	env      []string      // the guest's environment, "KEY=VALUE"
	limit    time.Duration // CPU time
	spent    time.Duration // measured CPU time of the segments before this one (see blocking)
	cpuBase  time.Duration // thread CPU clock when this segment's measurement began
	cpuWall  time.Time     // wall clock at the same moment
	cpuKnown bool          // false until the clock is first read in the request's first segment
	deadline time.Time     // zero: none
	cause    error         // why the guest was stopped
	rc       runCtx        // the context guest code runs under
	share    *share        // the app's account with the guest slots (fair.go); nil: none
	held     time.Time     // when the run last took or kept its guest slot
	charged  time.Duration // CPU time already charged to share
	end      time.Time     // when the last run ended (pool.put's idle time: one clock reading less)
	long     bool          // the run has held its slot past FairSlice: CPU-bound (fair.go, yieldP)
}

type runKey struct{}

// runCtx is the request's context carrying its run, so that host functions
// find the run without a context.WithValue allocation per request: a
// pooled instance keeps its run, and the run its runCtx.
type runCtx struct {
	context.Context
	r *run
}

func (c *runCtx) Value(key any) any {
	if key == (runKey{}) {
		return c.r
	}
	return c.Context.Value(key)
}

func runOf(ctx context.Context) *run {
	if c, ok := ctx.(*runCtx); ok {
		return c.r
	}
	r, _ := ctx.Value(runKey{}).(*run)
	return r
}

// stop reports whether the guest must stop, recording why.
func (r *run) stop() bool {
	if r.cause != nil {
		return true
	}
	select {
	case <-r.ctx.Done():
		r.cause = context.Cause(r.ctx)
		return true
	default:
	}
	now := time.Now()
	if !r.deadline.IsZero() && !now.Before(r.deadline) {
		r.cause = errWallTime
		return true
	}
	if r.share != nil && now.Sub(r.held) >= FairSlice {
		r.long = true
		now = r.cede(now)
	}
	if r.long && shortRunsActive(now) {
		// Let the serving path (and short runs) have this P first; the
		// goroutine stays on its locked thread, whose clock stops meanwhile.
		runtime.Gosched()
	}
	// The thread clock is a system call (~1.5 µs on a VM), so a request's
	// warm path never reads it: most requests finish before their first
	// yield. Measurement begins at that first yield; the stretch before it
	// (at most one yield interval of guest code) is not charged. Wall time
	// is never charged as CPU time: on a busy machine a descheduled thread
	// would be stopped for time it did not run. Once measuring, the clock is
	// read only when the wall time since could already exceed the limit,
	// since CPU time never exceeds wall time.
	if !r.cpuKnown {
		r.cpuBase, r.cpuWall, r.cpuKnown = ThreadCPUTime(), now, true
		return false
	}
	if r.spent+now.Sub(r.cpuWall) >= r.limit && r.spent+ThreadCPUTime()-r.cpuBase >= r.limit {
		r.cause = errCPUTime
		return true
	}
	return false
}

// pause ends a segment of guest execution on this thread before the
// goroutine blocks, charging its measured CPU time; resume starts the next
// one. Both read the thread clock: they surround a wait that costs far more.
func (r *run) pause() {
	if r.cpuKnown {
		r.spent += ThreadCPUTime() - r.cpuBase
	}
}

// cede gives the guest slot to a waiting run of an app with less recent
// CPU time per weight, if there is one, and waits for a slot again
// (fair.go). It returns the time.
func (r *run) cede(now time.Time) time.Time {
	slots := guestSlots()
	if slots.waiting.Load() > 0 {
		if ch := slots.cede(r.share, now); ch != nil {
			r.pause()
			r.share.charge(r.spent - r.charged)
			r.charged = r.spent
			runtime.UnlockOSThread()
			<-ch
			runtime.LockOSThread()
			r.resume()
			now = time.Now()
		}
	}
	r.held = now
	return now
}

func (r *run) resume() {
	r.cpuBase, r.cpuWall, r.cpuKnown = ThreadCPUTime(), time.Now(), true
}

// limited runs fn, which executes guest code, on a locked OS thread (so the
// thread's CPU clock is the guest's) with at most limit of CPU time, until
// deadline (zero: none) or ctx's end. call is what host ABI calls see, env the
// guest's environment variables. When the
// guest is stopped, the error is the cause (errCPUTime, errWallTime or the
// context's), whatever trap it surfaced as. cpu is the CPU time the guest
// used: the thread's clock once measuring began (see stop), the wall time in
// the guest for a request too short to have been measured.
func limited(ctx context.Context, sh *share, limit time.Duration, deadline time.Time, call *Call, env []string, fn func(context.Context) error) (cpu time.Duration, err error) {
	return limitedRun(ctx, &run{call: call, env: env, limit: limit, deadline: deadline, share: sh}, fn)
}

// limitedRun is limited with the run's call, environment, limit, deadline
// and share set by the caller, which may reuse r from request to request.
func limitedRun(ctx context.Context, r *run, fn func(context.Context) error) (cpu time.Duration, err error) {
	deadline := r.deadline
	slots := guestSlots()
	if !slots.tryAcquire() {
		var expired <-chan time.Time
		if !deadline.IsZero() {
			t := time.NewTimer(time.Until(deadline))
			defer t.Stop()
			expired = t.C
		}
		switch err := slots.acquire(ctx, expired, r.share); {
		case err == errExpired:
			return 0, &stopped{cause: errWallTime, err: errWallTime}
		case err != nil:
			return 0, &stopped{cause: context.Cause(ctx), err: ctx.Err()}
		}
	}
	defer slots.release()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r.ctx, r.spent, r.cpuKnown, r.cause, r.charged, r.long = ctx, 0, false, nil, 0, false
	r.rc = runCtx{Context: ctx, r: r}
	start := time.Now()
	r.held = start
	err = fn(&r.rc)
	r.end = time.Now()
	if r.cpuKnown {
		cpu = r.spent + ThreadCPUTime() - r.cpuBase
	} else {
		cpu = r.end.Sub(start)
	}
	r.share.charge(cpu - r.charged)
	if !r.long {
		noteShortRun(r.end)
	}
	// Keep nothing of the request, yet stay a valid parent: a context a
	// host call derived may end after the request (its timer fires).
	r.rc.Context = context.Background()
	if err != nil && r.cause != nil {
		return cpu, &stopped{cause: r.cause, err: err}
	}
	return cpu, err
}

// blocking runs fn, a host call's wait for I/O (a durable write), without
// holding a guest slot: a slot stands for a P executing guest code, and
// holding it while blocked would stall every other guest behind one fsync.
// fn's context carries the request's deadline.
func blocking(ctx context.Context, fn func(context.Context)) {
	r := runOf(ctx)
	if r != nil && !r.deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadlineCause(ctx, r.deadline, errWallTime)
		defer cancel()
	}
	// The goroutine also leaves its locked thread: a locked goroutine that
	// blocks parks its thread, and waking it means handing the P over to
	// that very thread, a pair of futex calls per wait. CPU accounting
	// continues on whatever thread it resumes on.
	slots := guestSlots()
	if r != nil {
		r.pause()
	}
	slots.release()
	runtime.UnlockOSThread()
	defer func() {
		var sh *share
		if r != nil {
			sh = r.share
		}
		slots.acquire(context.Background(), nil, sh)
		runtime.LockOSThread()
		if r != nil {
			r.resume()
			r.held = time.Now()
		}
	}()
	fn(ctx)
}

// stopped is a guest stopped by a limit; it matches its cause with errors.Is.
type stopped struct {
	cause, err error
}

func (e *stopped) Error() string   { return e.cause.Error() + " (" + e.err.Error() + ")" }
func (e *stopped) Unwrap() []error { return []error{e.cause, e.err} }

// instantiateYield registers the verge_rt module with the yield function
// every instrumented guest imports.
func instantiateYield(ctx context.Context, r wazero.Runtime) error {
	_, err := r.NewHostModuleBuilder(wasmbin.YieldModule).
		NewFunctionBuilder().
		WithGoFunction(api.GoFunc(func(ctx context.Context, stack []uint64) {
			r := runOf(ctx)
			if r != nil && r.stop() {
				stack[0] = 1
				return
			}
			stack[0] = 0
		}), nil, []api.ValueType{api.ValueTypeI32}).
		Export(wasmbin.YieldName).
		Instantiate(ctx)
	return err
}

var (
	errCPUTime  = errors.New("cpu time limit exceeded")
	errWallTime = errors.New("wall time limit exceeded")
)
