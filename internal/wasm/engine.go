// Package runtime runs Verge functions on wazero: it loads and validates
// modules, keeps pools of warm instances, enforces per-request limits and
// implements the host ABI (docs/abi.md).
package wasm

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/memalloc"
	"github.com/verge-edge/verge/internal/wasmbin"
)

// Request is an HTTP request as a function sees it. The body is read by the
// gateway, within the request body limit, before the guest runs, so that a
// slow client never holds an instance.
type Request struct {
	ID         string
	Method     string
	URI        string // path and query as received
	Path       string
	Query      string
	Proto      string
	Host       string
	RemoteAddr string
	Header     http.Header
	Body       []byte
	// Route is the route pattern that matched; for "/hello/*" the WAGI
	// SCRIPT_NAME is "/hello" and PATH_INFO the rest.
	Route string
	// Stream, when set, lets the guest send its response in pieces
	// (http_resp_flush): the client gets the head and what was written so
	// far at once, and every later write as it comes. Nil: the response is
	// buffered whole (direct calls, invocations, rooms).
	Stream Stream
	// Start is when the request reached the host, a clock reading the
	// caller already has (a reading costs ~0.1 µs on a VM); the wall-time
	// limit counts from it. Zero: from the call to Serve.
	Start time.Time
}

// Stream receives a response the guest sends in pieces. Its methods may
// block (a slow client): they are called outside the guest's slot.
type Stream interface {
	// Head sends the status and header; it is called once, first.
	Head(status int, h http.Header) error
	// Body sends part of the body and flushes it to the client.
	Body(p []byte) error
}

// Response is a function's complete response. Its Header may be shared
// with other responses of the same function: copy it, never modify it.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
	// CPU is the CPU time the guest used for it (see limited); Fresh says
	// that its instance was started for it rather than warm.
	CPU   time.Duration
	Fresh bool
	// Streamed: the head and part of the body already went to the client
	// through Request.Stream; Body is what remains to send.
	Streamed bool
}

// Options configure an Engine.
type Options struct {
	// CacheDir holds wazero's compilation cache; empty means the user cache
	// directory (e.g. ~/.cache/verge/wazero). "-" disables the on-disk cache.
	CacheDir string
	Logger   *slog.Logger
	// Allocator backs guest linear memories; nil means a pooled,
	// pre-faulted memalloc.Allocator: most of a fresh instance's cost is
	// getting and zeroing its memory.
	Allocator experimental.MemoryAllocator
	// Capabilities are the host functions guests can call beyond the
	// request and response (internal/host); a module importing a function
	// no capability defines fails to load.
	Capabilities []Capability
	// Prepare rewrites a module before compilation; nil means merging its
	// data segments (wasmbin.MergeDataSegments: a Go guest has tens of
	// thousands, each initialised separately). It must return its input
	// when it cannot improve it.
	Prepare func([]byte) []byte
	// IdleTimeout is how long an instance of a pooled function may stay
	// idle before it is closed; 0 means DefaultIdleTimeout.
	IdleTimeout time.Duration
}

// Engine compiles and runs functions. It is safe for concurrent use.
type Engine struct {
	cache     wazero.CompilationCache
	opts      Options
	log       *slog.Logger
	functions []HostFunction // of the "verge" module: core and capabilities
	runtimes  sharedRuntimes // by module bytes (shared.go)
}

// guestSlots bounds the guests executing at once, process-wide, to
// GOMAXPROCS-1 (at first use). Compiled guest code cannot be preempted by the
// Go scheduler, so guests holding every P would starve the timers that
// interrupt them, and the network with them.
var guestSlots = sync.OnceValue(func() *fairSlots {
	return newFairSlots(max(1, runtime.GOMAXPROCS(0)-1))
})

// GuestSlots is how many guests may execute at once in this process.
func GuestSlots() int { return int(guestSlots().max) }

// NewEngine returns an engine with an on-disk compilation cache.
func NewEngine(opts Options) (*Engine, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if opts.Allocator == nil {
		opts.Allocator = memalloc.New(memalloc.Config{})
	}
	if opts.Prepare == nil {
		opts.Prepare = mergeDataSegments
	}
	functions, err := functionTable(opts.Capabilities)
	if err != nil {
		return nil, err
	}
	e := &Engine{opts: opts, log: log, functions: functions}
	dir := opts.CacheDir
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		dir = filepath.Join(base, "verge", "wazero")
	}
	if dir != "-" {
		c, err := wazero.NewCompilationCacheWithDir(dir)
		if err != nil {
			return nil, fmt.Errorf("compilation cache at %s: %w (set another directory or \"-\" to disable it)", dir, err)
		}
		e.cache = c
	}
	return e, nil
}

func mergeDataSegments(b []byte) []byte {
	merged, _, err := wasmbin.MergeDataSegments(b)
	if err != nil {
		return b // wazero reports what is wrong with it
	}
	return merged
}

// Close releases the compilation cache. Functions must be closed first.
func (e *Engine) Close(ctx context.Context) error {
	if e.cache != nil {
		return e.cache.Close(ctx)
	}
	return nil
}

// newRuntime is a runtime configured for guests.
func (e *Engine) newRuntime(ctx context.Context) wazero.Runtime {
	cfg := wazero.NewRuntimeConfigCompiler().
		WithCoreFeatures(api.CoreFeaturesV2).
		// The per-function memory limit is enforced by guestMemory, which
		// needs every memory.grow to reach the allocator; see memory.go.
		WithMemoryLimitPages(65536)
	if e.cache != nil {
		cfg = cfg.WithCompilationCache(e.cache)
	}
	return wazero.NewRuntimeWithConfig(ctx, cfg)
}

// compile makes a runtime with the host modules fn's executor needs and
// compiles the instrumented module in it (shared.go).
func (e *Engine) compile(ctx context.Context, fn verge.Function, instrumented []byte) (*sharedRT, error) {
	rt := e.newRuntime(ctx)
	err := instantiateWASI(ctx, rt)
	if err == nil {
		err = instantiateYield(ctx, rt)
	}
	if err == nil && fn.Executor == verge.ExecutorVerge {
		err = e.instantiateABI(ctx, rt)
	}
	var compiled wazero.CompiledModule
	if err == nil {
		compiled, err = rt.CompileModule(ctx, instrumented)
	}
	if err != nil {
		rt.Close(ctx)
		return nil, err
	}
	return &sharedRT{rt: rt, compiled: compiled}, nil
}

// LoadError is a module that cannot be served: unreadable, not Wasm, or not
// fitting the executor's contract. It names the file.
type LoadError struct {
	Module string
	Reason string
	Err    error
}

func (e *LoadError) Error() string {
	return e.Module + ": " + e.Reason
}

func (e *LoadError) Unwrap() error { return e.Err }

// Function is a loaded, compiled function ready to serve requests.
type Function struct {
	Spec     verge.Function
	Limits   verge.Limits
	engine   *Engine
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	log      *slog.Logger
	pool     *pool     // verge executor, pooled isolation
	sem      *sema     // instances: limits.max_instances
	share    *share    // the app's account with the guest slots (fair.go)
	rts      *sharedRT // rt and compiled, shared with functions of the same bytes (shared.go)
	rtKey    sharedKey
	starts   atomic.Uint64
	spanName string // of the guest's span in a traced request, built once

	// strict is isolation = "strict" served by instances reset to the
	// snapshot after every request (snapshot.go); without a snapshot a
	// strict function has no pool and instantiates for every request.
	strict  bool
	snap    *snapshot
	globals []string // export names of the mutable globals (wasmbin.Info)
	// data are the module's data segments when they were stripped from the
	// compiled module (wasmbin.StripActiveData) and no snapshot holds them:
	// newInstance writes them into every new instance.
	data []wasmbin.DataSegment

	closeOnce sync.Once
	cfgOnce   sync.Once
	cfg       wazero.ModuleConfig
	envOnce   sync.Once
	envList   []string
	wagi      sync.Pool // of *wagiStreams
}

// Load reads, validates and compiles fn's module. Compilation happens here and
// only here: requests instantiate the compiled module.
func (e *Engine) Load(ctx context.Context, fn verge.Function) (*Function, error) {
	lerr := func(reason string, err error) error {
		return &LoadError{Module: fn.Module, Reason: reason, Err: err}
	}
	wasm, err := os.ReadFile(fn.Module)
	if err != nil {
		return nil, lerr(fmt.Sprintf("cannot read module: %v", err), err)
	}
	if reason := checkMagic(wasm); reason != "" {
		return nil, lerr(reason, nil)
	}
	// wazero sizes its tables from a module's declared counts before
	// reading them: a 15-byte module claiming 2^28 exports would keep the
	// compiler busy for minutes. Refuse declarations the bytes cannot back.
	if err := wasmbin.Precheck(wasm); err != nil {
		return nil, lerr("invalid WebAssembly: "+strings.TrimPrefix(err.Error(), "wasmbin: "), err)
	}
	if e.opts.Prepare != nil {
		wasm = e.opts.Prepare(wasm)
	}
	lim := fn.Limits.WithDefaults()
	f := &Function{Spec: fn, Limits: lim, engine: e, log: e.log.With("app", fn.App, "function", fn.Name), share: guestSlots().share(fn.App),
		spanName: "guest " + fn.Name}
	raw := runtimeKey(string(fn.Executor), wasm)
	rts, prep := e.runtimes.preparedFor(raw)
	if prep == nil {
		// Every guest is instrumented to yield to the host regularly; that
		// is how limits are enforced (see cputime.go).
		instrumented, info, ierr := wasmbin.Instrument(wasm)
		if ierr != nil {
			// Let wazero name what is wrong with a malformed module; only
			// a valid module it cannot instrument gets the
			// instrumentation error.
			rt := e.newRuntime(ctx)
			defer rt.Close(ctx)
			if _, err := rt.CompileModule(ctx, wasm); err != nil {
				return nil, lerr("invalid WebAssembly: "+strings.TrimPrefix(err.Error(), "invalid binary: "), err)
			}
			return nil, lerr("cannot prepare the module for execution limits: "+ierr.Error(), ierr)
		}
		var data []wasmbin.DataSegment
		if info.Snapshot {
			// Instances will come from a snapshot: the runtime need not
			// keep the data segments (megabytes for a Go guest) nor copy
			// them into every new instance; the first instance gets them
			// from us.
			if stripped, segs, ok := wasmbin.StripActiveData(instrumented); ok {
				instrumented, data = stripped, segs
			}
		}
		prep = &prepared{instrumented: instrumented, info: info, data: data}
		key := runtimeKey(string(fn.Executor), instrumented)
		if rts = e.runtimes.get(key); rts == nil {
			compiled, err := e.compile(ctx, fn, instrumented)
			if err != nil {
				return nil, lerr("invalid WebAssembly: "+strings.TrimPrefix(err.Error(), "invalid binary: "), err)
			}
			if rts = e.runtimes.add(key, compiled); rts != compiled {
				compiled.rt.Close(ctx) // another Load compiled the same bytes meanwhile
			}
		}
		e.runtimes.remember(raw, rts, prep)
	}
	info, data := prep.info, prep.data
	f.rts, f.rtKey = rts, rts.key
	f.rt, f.compiled = f.rts.rt, f.rts.compiled
	ok := false
	defer func() {
		if !ok {
			e.runtimes.release(ctx, f.rtKey, f.rts)
		}
	}()
	if reason := f.checkImports(); reason != "" {
		return nil, lerr(reason, nil)
	}
	if reason := f.checkExports(); reason != "" {
		return nil, lerr(reason, nil)
	}
	f.sem = newSema(lim.MaxInstances)
	f.globals = info.Globals
	f.data = data
	if fn.Executor == verge.ExecutorWAGI {
		// A command module restored to its state before _start for every
		// request, when it can be; otherwise instantiated for every one.
		if _, pooled := e.opts.Allocator.(*memalloc.Allocator); pooled && info.Snapshot {
			inst, err := f.newInstance(ctx)
			if err != nil {
				return nil, lerr("instantiation failed: "+err.Error(), err)
			}
			if err := f.takeSnapshot(ctx, inst); err != nil {
				f.log.Debug("no snapshot: every request instantiates the module", "reason", err.Error())
				inst.close(ctx)
			} else {
				f.data, f.strict = nil, true
				f.pool = newPool(f)
				f.pool.put(inst)
			}
		}
	} else if fn.Executor == verge.ExecutorVerge {
		// One instance now, so that a module whose _initialize traps fails
		// to load instead of failing its first request; it is also the one
		// the snapshot is taken of.
		inst, err := f.newInstance(ctx)
		if err != nil {
			return nil, lerr("initialisation failed: "+AsError(err).Msg, err)
		}
		why := info.NoSnapshot
		if _, pooled := e.opts.Allocator.(*memalloc.Allocator); !pooled {
			why = "the engine's memory allocator is not memalloc's"
		}
		if why == "" {
			if err := f.takeSnapshot(ctx, inst); err != nil {
				why = err.Error()
			}
		}
		if why != "" {
			f.log.Debug("no snapshot: every new instance runs _initialize", "reason", why)
		} else {
			f.data = nil // in the snapshot now
		}
		f.strict = fn.Isolation == verge.IsolationStrict
		switch {
		case f.strict && f.snap == nil:
			inst.close(ctx) // a fresh instance per request, initialised each time
		case f.snap != nil:
			// Instances come from the snapshot in microseconds: keep
			// none idle, so that an app deployed and not yet hit holds
			// no instance (a PoP hosts thousands; see RATIONALE.md).
			inst.close(ctx)
			f.pool = newPool(f)
		default:
			f.pool = newPool(f)
			f.pool.put(inst)
		}
	}
	ok = true
	return f, nil
}

func checkMagic(b []byte) string {
	switch {
	case len(b) == 0:
		return "module is empty (0 bytes); did its build fail?"
	case len(b) >= 4 && string(b[:4]) == "\x00asm":
		if len(b) < 8 {
			return "truncated WebAssembly header"
		}
		if b[4] != 1 || b[5] != 0 || b[6] != 0 || b[7] != 0 {
			return fmt.Sprintf("unsupported WebAssembly version % x (components are not supported; expected a core module, version 1)", b[4:8])
		}
		return ""
	case bytes.HasPrefix(bytes.TrimSpace(b), []byte("(module")):
		return "this is WebAssembly text (.wat), not a binary module; compile it with wat2wasm"
	default:
		return fmt.Sprintf("not a WebAssembly module: expected the magic bytes 00 61 73 6d, found % x", b[:min(4, len(b))])
	}
}

// checkImports names the first import Verge cannot satisfy, with its
// signature, so that a module built against the wrong SDK fails at load.
func (f *Function) checkImports() string {
	provided := map[string]api.Module{}
	allowed := []string{wasi_snapshot_preview1.ModuleName, wasmbin.YieldModule}
	if f.Spec.Executor == verge.ExecutorVerge {
		allowed = append(allowed, ABIModule)
	}
	for _, name := range allowed {
		provided[name] = f.rt.Module(name)
	}
	for _, imp := range f.compiled.ImportedFunctions() {
		mod, name, _ := imp.Import()
		host := provided[mod]
		sig := signature(imp)
		if host == nil {
			hint := "Verge provides " + strings.Join(allowed, " and ")
			if mod == ABIModule {
				hint = "the verge host ABI is only available to executor = \"verge\""
			}
			return fmt.Sprintf("imports unknown host function %s.%s %s; %s (see docs/abi.md)", mod, name, sig, hint)
		}
		have, found := host.ExportedFunctionDefinitions()[name]
		if !found {
			return fmt.Sprintf("imports unknown host function %s.%s %s; module %q has no such function (see docs/abi.md)", mod, name, sig, mod)
		}
		if got := signature(have); got != sig {
			return fmt.Sprintf("imports %s.%s with signature %s, but the host defines %s", mod, name, sig, got)
		}
	}
	for _, m := range f.compiled.ImportedMemories() {
		mod, name, _ := m.Import()
		return fmt.Sprintf("imports memory %s.%s; Verge modules must define their own memory", mod, name)
	}
	return ""
}

func (f *Function) checkExports() string {
	exp := f.compiled.ExportedFunctions()
	mems := f.compiled.ExportedMemories()
	if len(mems) == 0 {
		return "exports no memory; Verge needs the module's linear memory exported as \"memory\""
	}
	for _, m := range mems {
		if uint64(m.Min())*65536 > f.Limits.Memory {
			return fmt.Sprintf("needs %d bytes of memory at start, over the function's memory limit of %d bytes (limits.memory)", uint64(m.Min())*65536, f.Limits.Memory)
		}
	}
	switch f.Spec.Executor {
	case verge.ExecutorWAGI:
		if _, ok := exp["_start"]; !ok {
			return "exports no _start: the wagi executor runs WASI command modules (a main function); for a reactor (-buildmode=c-shared), use executor = \"verge\""
		}
	case verge.ExecutorVerge:
		h, ok := exp[HandleExport]
		if !ok {
			return "exports no " + HandleExport + ": the verge executor needs a reactor module built with the Verge SDK (see docs/abi.md); for a WASI command module use executor = \"wagi\""
		}
		if sig := signature(h); sig != "(i32, i32) -> i32" {
			return fmt.Sprintf("exports %s with signature %s; expected (i32, i32) -> i32", HandleExport, sig)
		}
	}
	return ""
}

func signature(d api.FunctionDefinition) string {
	name := func(ts []api.ValueType) string {
		s := make([]string, len(ts))
		for i, t := range ts {
			s[i] = api.ValueTypeName(t)
		}
		return strings.Join(s, ", ")
	}
	return "(" + name(d.ParamTypes()) + ") -> " + func() string {
		if len(d.ResultTypes()) == 0 {
			return "()"
		}
		return name(d.ResultTypes())
	}()
}

// Close stops the function. Requests in flight must have finished: the
// gateway drains a version before closing it.
// SpanName names the guest's span in a traced request.
func (f *Function) SpanName() string {
	if f.spanName == "" { // a Function not made by Load (tests)
		return "guest " + f.Spec.Name
	}
	return f.spanName
}

func (f *Function) Close(ctx context.Context) error {
	var err error
	f.closeOnce.Do(func() {
		if f.pool != nil {
			f.pool.close(ctx)
		}
		err = f.engine.runtimes.release(ctx, f.rtKey, f.rts)
		if f.snap != nil {
			f.snap.mem.Close()
		}
	})
	return err
}

// Serve runs one request through the function under its limits.
func (f *Function) Serve(ctx context.Context, req *Request) (*Response, error) {
	if int64(len(req.Body)) > f.Limits.RequestBody {
		return nil, limitError(KindRequestBody, http.StatusRequestEntityTooLarge,
			"request body of %d bytes exceeds the function's limit of %d bytes (limits.request_body)", len(req.Body), f.Limits.RequestBody)
	}
	// The wall time is a deadline checked where the request waits and at
	// the guest's yield points, not a context timer: cheaper on the warm path.
	start := req.Start
	if start.IsZero() {
		start = time.Now()
	}
	deadline := start.Add(f.Limits.WallTime)
	// The semaphore bounds live instances; waiting for one counts against
	// the request's wall time.
	if !f.sem.tryAcquire() {
		t := time.NewTimer(f.queueWait())
		err := f.sem.acquire(ctx, t.C)
		t.Stop()
		switch {
		case err == errExpired:
			return nil, limitError(KindConcurrency, http.StatusServiceUnavailable,
				"all %d instances of function %q are busy (limits.max_instances)", f.Limits.MaxInstances, f.Spec.Name)
		case err != nil:
			return nil, f.ctxError(ctx, context.Cause(ctx))
		}
	}
	defer f.sem.release()
	if f.Spec.Executor == verge.ExecutorWAGI {
		return f.serveWAGI(ctx, deadline, req)
	}
	return f.serveVerge(ctx, deadline, req)
}

// queueWait is how long a request waits for a free instance before it is
// refused: a tenth of the wall time, at most one second, so that a burst
// queues briefly but a function that is saturated sheds load quickly.
func (f *Function) queueWait() time.Duration {
	return min(f.Limits.WallTime/10, time.Second)
}

func (f *Function) ctxError(ctx context.Context, cause error) error {
	switch cause {
	case errCPUTime:
		return limitError(KindCPUTime, http.StatusInternalServerError,
			"the request used more than %v of CPU time (limits.cpu_time)", f.Limits.CPUTime)
	case errWallTime:
		return limitError(KindWallTime, http.StatusGatewayTimeout,
			"the request took more than %v (limits.wall_time)", f.Limits.WallTime)
	}
	return &Error{Kind: KindUnavailable, Status: 499, Msg: "the client went away", Err: ctx.Err()}
}

// runError classifies an error returned by guest code.
func (f *Function) runError(ctx context.Context, mem *guestMemory, err error) error {
	var st *stopped
	if errors.As(err, &st) {
		return f.ctxError(ctx, st.cause)
	}
	if mem.exceeded.Load() {
		return limitError(KindMemory, http.StatusInternalServerError,
			"the guest tried to grow its memory past the function's limit of %d bytes (limits.memory)", f.Limits.Memory)
	}
	if ctx.Err() != nil {
		return f.ctxError(ctx, context.Cause(ctx))
	}
	msg := err.Error()
	if i := strings.Index(msg, "\nwasm stack trace:"); i >= 0 {
		msg = msg[:i]
	}
	return &Error{Kind: KindTrap, Status: http.StatusInternalServerError, Msg: "the guest trapped: " + msg, Err: err}
}

// moduleConfig is the base WASI configuration of every instance, built once
// per function: each With call copies the configuration.
func (f *Function) moduleConfig() wazero.ModuleConfig {
	f.cfgOnce.Do(func() { f.cfg = f.buildModuleConfig() })
	return f.cfg
}

// buildModuleConfig: a real random source (wazero's default is
// deterministic) and the host clocks. The environment is served per call
// (see wasi.go).
func (f *Function) buildModuleConfig() wazero.ModuleConfig {
	cfg := wazero.NewModuleConfig().
		WithName("").
		WithRandSource(rand.Reader).
		WithSysWalltime().
		WithSysNanotime().
		WithSysNanosleep().
		WithStartFunctions()
	return cfg
}

// env is the function's environment from the manifest, sorted.
func (f *Function) env() []string {
	f.envOnce.Do(func() {
		for k, v := range f.Spec.Env {
			f.envList = append(f.envList, k+"="+v)
		}
		slices.Sort(f.envList)
	})
	return f.envList
}

func (f *Function) newMemory() *guestMemory {
	return &guestMemory{limit: f.Limits.Memory, inner: f.engine.opts.Allocator}
}

// withMemory makes the next instantiation under ctx allocate through mem.
func withMemory(ctx context.Context, mem *guestMemory) context.Context {
	return experimental.WithMemoryAllocator(ctx, mem)
}
