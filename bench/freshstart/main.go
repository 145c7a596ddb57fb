// Command freshstart measures what a fresh Wasm instance costs on wazero:
// InstantiateModule without running _start/_initialize, then Close, for a
// tiny WAT module, a C module and a Go module, each with stock wazero, with
// the pooled allocator of internal/memalloc, and with that allocator plus
// data segments merged by internal/wasmbin. It also reports, labelled
// separately, the cost including _start/_initialize.
//
//	go run ./bench/freshstart [-c module.wasm] [-go module.wasm] [-benchtime 1s]
//
// The JSON result goes to stdout, a one-line summary to stderr.
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
	"golang.org/x/sys/unix"

	"github.com/verge-edge/verge/internal/memalloc"
	"github.com/verge-edge/verge/internal/wasmbin"
)

// Goals from the issue, in CPU µs per fresh instance (median).
const (
	goalTinyUS = 20
	goalGoUS   = 500
)

type moduleInfo struct {
	Path           string `json:"path,omitempty"`
	Source         string `json:"source,omitempty"` // how it was obtained
	Bytes          int    `json:"bytes,omitempty"`
	MergedBytes    int    `json:"merged_bytes,omitempty"`
	Segments       int    `json:"data_segments,omitempty"`
	MergedSegments int    `json:"merged_data_segments,omitempty"`
	Missing        string `json:"missing,omitempty"` // why the module is not measured
}

type result struct {
	Module  string `json:"module"`
	Variant string `json:"variant"` // stock, memalloc, memalloc+merged
	// Mode is "fresh" (instantiate without start functions, then close) or
	// "with_start" (instantiate running _start or _initialize, then close).
	Mode       string  `json:"mode"`
	N          int     `json:"n"`
	CPUP50     float64 `json:"cpu_us_p50"`
	CPUP90     float64 `json:"cpu_us_p90"`
	WallP50    float64 `json:"wall_us_p50"`
	WallP90    float64 `json:"wall_us_p90"`
	ProcCPUAvg float64 `json:"process_cpu_us_mean"` // all threads, GC included
	AllocBytes float64 `json:"go_heap_bytes_per_op"`
	// Pool counters over warm-up and measurement (memalloc variants only).
	Pool  *memalloc.Stats `json:"pool,omitempty"`
	Error string          `json:"error,omitempty"`
}

type report struct {
	Go        string                `json:"go"`
	Wazero    string                `json:"wazero"`
	GOOS      string                `json:"goos"`
	GOARCH    string                `json:"goarch"`
	CPUs      int                   `json:"cpus"`
	BenchTime string                `json:"benchtime"`
	Modules   map[string]moduleInfo `json:"modules"`
	Results   []result              `json:"results"`
	Summary   string                `json:"summary"`
}

func main() {
	cPath := flag.String("c", "", "C module (wasm32-wasi); default: build testdata/chello with clang if /usr/bin/clang exists")
	goPath := flag.String("go", "", "Go module (wasip1); default: build testdata/gohello with go build")
	benchTime := flag.Duration("benchtime", time.Second, "measuring time per case (after a warm-up of a quarter of it)")
	maxN := flag.Int("maxn", 20000, "maximum iterations per case")
	only := flag.String("modules", "tiny,c,go", "comma-separated modules to measure")
	variants := flag.String("variants", "stock,memalloc,memalloc+merged", "comma-separated variants to measure")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the measurements to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "freshstart:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(strings.Split(*only, ","), strings.Split(*variants, ","), *cPath, *goPath, *benchTime, *maxN); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "freshstart:", err)
		os.Exit(1)
	}
}

func run(only, variants []string, cPath, goPath string, benchTime time.Duration, maxN int) error {
	dir, err := os.MkdirTemp("", "freshstart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	src := sourceDir()

	rep := report{
		Go: runtime.Version(), Wazero: wazeroVersion(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH,
		CPUs: runtime.NumCPU(), BenchTime: benchTime.String(), Modules: map[string]moduleInfo{},
	}
	mods := map[string][]byte{}
	load := func(name, path, how string) {
		b, err := os.ReadFile(path)
		if err != nil {
			rep.Modules[name] = moduleInfo{Missing: err.Error()}
			return
		}
		rep.Modules[name] = moduleInfo{Path: path, Source: how, Bytes: len(b)}
		mods[name] = b
	}
	load("tiny", filepath.Join(src, "testdata", "tiny.wasm"), "committed testdata/tiny.wasm (from tiny.wat)")
	switch {
	case cPath != "":
		load("c", cPath, "-c flag")
	default:
		out := filepath.Join(dir, "chello.wasm")
		if _, err := os.Stat("/usr/bin/clang"); err != nil {
			rep.Modules["c"] = moduleInfo{Missing: "no -c flag and /usr/bin/clang not found"}
		} else if err := build(exec.Command("/usr/bin/clang", "--target=wasm32-wasi", "-O2", "-o", out, filepath.Join(src, "testdata", "chello", "hello.c"))); err != nil {
			rep.Modules["c"] = moduleInfo{Missing: err.Error()}
		} else {
			load("c", out, "clang --target=wasm32-wasi -O2 testdata/chello/hello.c")
		}
	}
	switch {
	case goPath != "":
		load("go", goPath, "-go flag")
	default:
		out := filepath.Join(dir, "gohello.wasm")
		cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", out, ".")
		cmd.Dir = filepath.Join(src, "testdata", "gohello")
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		if err := build(cmd); err != nil {
			rep.Modules["go"] = moduleInfo{Missing: err.Error()}
		} else {
			load("go", out, "GOOS=wasip1 GOARCH=wasm go build testdata/gohello")
		}
	}

	ctx := context.Background()
	cache := wazero.NewCompilationCache()
	defer cache.Close(ctx)
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCompilationCache(cache))
	defer r.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, r)

	for _, name := range []string{"tiny", "c", "go"} {
		bin, ok := mods[name]
		if !ok || !slices.Contains(only, name) {
			continue
		}
		merged, st, err := wasmbin.MergeDataSegments(bin)
		info := rep.Modules[name]
		if err != nil {
			merged = bin
			info.Missing = "merge failed: " + err.Error()
		}
		info.Segments, info.MergedSegments, info.MergedBytes = st.SegmentsIn, st.SegmentsOut, len(merged)
		rep.Modules[name] = info

		plain, err := r.CompileModule(ctx, bin)
		if err != nil {
			return fmt.Errorf("compile %s: %w", name, err)
		}
		mergedCM, err := r.CompileModule(ctx, merged)
		if err != nil {
			return fmt.Errorf("compile merged %s: %w", name, err)
		}
		modes := []string{"fresh"}
		if hasStart(plain) {
			modes = append(modes, "with_start")
		}
		for _, mode := range modes {
			for _, v := range []struct {
				name   string
				cm     wazero.CompiledModule
				pooled bool
			}{{"stock", plain, false}, {"memalloc", plain, true}, {"memalloc+merged", mergedCM, true}} {
				if !slices.Contains(variants, v.name) {
					continue
				}
				res := measure(ctx, r, v.cm, v.pooled, mode == "with_start", benchTime, maxN)
				res.Module, res.Variant, res.Mode = name, v.name, mode
				rep.Results = append(rep.Results, res)
				fmt.Fprintf(os.Stderr, "%-5s %-16s %-10s n=%-6d cpu p50 %8.1f µs p90 %8.1f µs  wall p50 %8.1f µs  proc %8.1f µs %s\n",
					name, v.name, mode, res.N, res.CPUP50, res.CPUP90, res.WallP50, res.ProcCPUAvg, res.Error)
			}
		}
	}
	rep.Summary = summary(rep)
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, rep.Summary)
	return nil
}

func hasStart(cm wazero.CompiledModule) bool {
	for name, f := range cm.ExportedFunctions() {
		if (name == "_start" || name == "_initialize") && len(f.ParamTypes()) == 0 {
			return true
		}
	}
	return false
}

// measure instantiates cm in a loop on one locked OS thread. Per-iteration
// CPU time is that thread's (CLOCK_THREAD_CPUTIME_ID): work wazero does on
// the caller's behalf. Garbage collection runs on other threads, so the
// process CPU time over the whole loop is reported too.
func measure(ctx context.Context, r wazero.Runtime, cm wazero.CompiledModule, pooled, withStart bool, benchTime time.Duration, maxN int) result {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	var alloc *memalloc.Allocator
	if pooled {
		alloc = memalloc.New(memalloc.Config{})
		defer alloc.Close()
		ctx = experimental.WithMemoryAllocator(ctx, alloc)
	}
	cfg := wazero.NewModuleConfig().WithName("").WithRandSource(rand.Reader).
		WithSysWalltime().WithSysNanotime().WithStartFunctions()
	var start api.Function
	_, isReactor := cm.ExportedFunctions()["_initialize"]
	if withStart && !isReactor {
		cfg = cfg.WithStartFunctions("_start")
	}
	once := func() error {
		mod, err := r.InstantiateModule(ctx, cm, cfg)
		if err != nil {
			var exit *sys.ExitError
			if errors.As(err, &exit) && exit.ExitCode() == 0 {
				return nil // _start returned through proc_exit(0); the module is closed
			}
			return err
		}
		if withStart && isReactor {
			start = mod.ExportedFunction("_initialize")
			if _, err := start.Call(ctx); err != nil {
				mod.Close(ctx)
				return err
			}
		}
		return mod.Close(ctx)
	}

	var res result
	// Warm up: fill pools, compile paths, settle the heap.
	warm := time.Now().Add(benchTime / 4)
	for i := 0; i < 10 || time.Now().Before(warm); i++ {
		if err := once(); err != nil {
			res.Error = err.Error()
			return res
		}
	}
	runtime.GC()
	var cpu, wall []float64
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	p0 := procCPU()
	deadline := time.Now().Add(benchTime)
	for i := 0; i < maxN && (i < 20 || time.Now().Before(deadline)); i++ {
		c0, w0 := threadCPU(), time.Now()
		if err := once(); err != nil {
			res.Error = err.Error()
			break
		}
		cpu = append(cpu, float64(threadCPU()-c0)/1e3)
		wall = append(wall, float64(time.Since(w0).Nanoseconds())/1e3)
	}
	p1 := procCPU()
	runtime.ReadMemStats(&ms1)
	res.N = len(cpu)
	if res.N == 0 {
		return res
	}
	res.CPUP50, res.CPUP90 = percentile(cpu, 0.5), percentile(cpu, 0.9)
	res.WallP50, res.WallP90 = percentile(wall, 0.5), percentile(wall, 0.9)
	res.ProcCPUAvg = float64(p1-p0) / 1e3 / float64(res.N)
	res.AllocBytes = float64(ms1.TotalAlloc-ms0.TotalAlloc) / float64(res.N)
	if alloc != nil {
		st := alloc.Stats()
		res.Pool = &st
	}
	return res
}

func threadCPU() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		panic(err) // Linux always has it; without it every number would be wrong
	}
	return ts.Nano()
}

func procCPU() int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func percentile(v []float64, p float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[int(p*float64(len(s)-1)+0.5)]
}

func summary(rep report) string {
	get := func(mod, variant, mode string) (float64, bool) {
		for _, r := range rep.Results {
			if r.Module == mod && r.Variant == variant && r.Mode == mode && r.N > 0 && r.Error == "" {
				return r.CPUP50, true
			}
		}
		return 0, false
	}
	var parts []string
	for _, mod := range []string{"tiny", "c", "go"} {
		if m := rep.Modules[mod]; m.Missing != "" && m.Bytes == 0 {
			parts = append(parts, mod+" missing")
			continue
		}
		if _, ok := get(mod, "stock", "fresh"); !ok {
			continue // not measured (-modules)
		}
		var vs []string
		for _, v := range []string{"stock", "memalloc", "memalloc+merged"} {
			if x, ok := get(mod, v, "fresh"); ok {
				vs = append(vs, fmt.Sprintf("%.1f", x))
			}
		}
		parts = append(parts, fmt.Sprintf("%s %s", mod, strings.Join(vs, "/")))
	}
	verdict := func(mod string, goal float64) string {
		x, ok := get(mod, "memalloc+merged", "fresh")
		switch {
		case !ok:
			return mod + " n/a"
		case x <= goal:
			return fmt.Sprintf("%s %.1f<=%.0f ok", mod, x, goal)
		default:
			return fmt.Sprintf("%s %.1f>%.0f MISSED", mod, x, goal)
		}
	}
	s := "freshstart: median CPU µs per fresh instance (stock/memalloc/memalloc+merged): " + strings.Join(parts, "; ") +
		"; goals: " + verdict("tiny", goalTinyUS) + ", " + verdict("go", goalGoUS)
	if x, ok := get("go", "memalloc+merged", "with_start"); ok {
		s += fmt.Sprintf("; go incl. _start %.1f", x)
	}
	return s
}

func build(cmd *exec.Cmd) error {
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// sourceDir finds bench/freshstart for its testdata, under go run and as a
// built binary run from the repository root.
func sourceDir() string {
	if _, file, _, ok := runtime.Caller(0); ok {
		if d := filepath.Dir(file); exists(filepath.Join(d, "testdata", "tiny.wasm")) {
			return d
		}
	}
	return filepath.Join("bench", "freshstart")
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func wazeroVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/tetratelabs/wazero" {
				return d.Version
			}
		}
	}
	return "unknown"
}
