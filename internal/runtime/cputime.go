package runtime

import (
	"context"
	"errors"
	goruntime "runtime"
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
	cs       *callState    // the request's state for the host ABI; nil outside requests
	env      []string      // the guest's environment, "KEY=VALUE"
	limit    time.Duration // CPU time
	spent    time.Duration // CPU time of the segments before this one (see blocking)
	cpuBase  time.Duration // thread CPU clock at this segment's start, estimated at its first yield
	cpuKnown bool
	start    time.Time // this segment's start
	deadline time.Time // zero: none
	cause    error     // why the guest was stopped
}

type runKey struct{}

func runOf(ctx context.Context) *run {
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
	// The thread clock is a system call (~1 µs on a VM), so the warm path
	// never reads it: most requests finish before their first yield. At the
	// first yield the start is estimated by charging all wall time so far as
	// CPU time (an upper bound); CPU time never exceeds wall time, so later
	// the clock is read only once the wall time could allow the limit.
	elapsed := now.Sub(r.start)
	if !r.cpuKnown {
		r.cpuBase, r.cpuKnown = ThreadCPUTime()-elapsed, true
	}
	if r.spent+elapsed >= r.limit && r.spent+ThreadCPUTime()-r.cpuBase >= r.limit {
		r.cause = errCPUTime
		return true
	}
	return false
}

// pause ends a segment of guest execution on this thread before the
// goroutine blocks, charging its CPU time (or its wall time, an upper bound,
// when the clock was never read); resume starts the next one.
func (r *run) pause() {
	if r.cpuKnown {
		r.spent += ThreadCPUTime() - r.cpuBase
	} else {
		r.spent += time.Since(r.start)
	}
}

func (r *run) resume() {
	r.start, r.cpuKnown = time.Now(), false
}

// limited runs fn, which executes guest code, on a locked OS thread (so the
// thread's CPU clock is the guest's) with at most limit of CPU time, until
// deadline (zero: none) or ctx's end. cs is what host ABI calls see, env the
// guest's environment variables. When the
// guest is stopped, the error is the cause (errCPUTime, errWallTime or the
// context's), whatever trap it surfaced as.
func limited(ctx context.Context, limit time.Duration, deadline time.Time, cs *callState, env []string, fn func(context.Context) error) error {
	slots := guestSlots()
	select {
	case slots <- struct{}{}:
	default:
		var expired <-chan time.Time
		if !deadline.IsZero() {
			t := time.NewTimer(time.Until(deadline))
			defer t.Stop()
			expired = t.C
		}
		select {
		case slots <- struct{}{}:
		case <-expired:
			return &stopped{cause: errWallTime, err: errWallTime}
		case <-ctx.Done():
			return &stopped{cause: context.Cause(ctx), err: ctx.Err()}
		}
	}
	defer func() { <-slots }()
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	r := &run{ctx: ctx, cs: cs, env: env, limit: limit, start: time.Now(), deadline: deadline}
	err := fn(context.WithValue(ctx, runKey{}, r))
	if err != nil && r.cause != nil {
		return &stopped{cause: r.cause, err: err}
	}
	return err
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
	<-slots
	goruntime.UnlockOSThread()
	defer func() {
		slots <- struct{}{}
		goruntime.LockOSThread()
		if r != nil {
			r.resume()
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
			r, _ := ctx.Value(runKey{}).(*run)
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
