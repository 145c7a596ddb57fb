package wasmbin

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// instantiate runs wasm with env.add and verge_rt.yield provided; yields
// counts the calls to yield.
func instantiate(t testing.TB, wasm []byte, yields *int) api.Module {
	t.Helper()
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCoreFeatures(api.CoreFeaturesV2))
	t.Cleanup(func() { r.Close(ctx) })
	if _, err := r.NewHostModuleBuilder("env").NewFunctionBuilder().
		WithFunc(func(a, b int32) int32 { return a + b }).Export("add").Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r.NewHostModuleBuilder(YieldModule).NewFunctionBuilder().
		WithFunc(func() int32 { *yields++; return 0 }).Export(YieldName).Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	m, err := r.Instantiate(ctx, wasm)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func call(t testing.TB, m api.Module, name string, args ...uint64) uint64 {
	t.Helper()
	res, err := m.ExportedFunction(name).Call(context.Background(), args...)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return res[0]
}

func TestInstrumentYieldPreservesBehaviour(t *testing.T) {
	t.Parallel()
	orig, err := os.ReadFile(filepath.Join("testdata", "instrument.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	inst, err := InstrumentYield(orig)
	if err != nil {
		t.Fatal(err)
	}
	var y0, y1 int
	a, b := instantiate(t, orig, &y0), instantiate(t, inst, &y1)
	for _, c := range []struct {
		name string
		args []uint64
	}{{"started", nil}, {"indirect", []uint64{0}}, {"indirect", []uint64{1}}, {"indirect", []uint64{2}}, {"indirect", []uint64{3}}, {"sum", []uint64{1000}}, {"fref_is_null", nil}} {
		if x, y := call(t, a, c.name, c.args...), call(t, b, c.name, c.args...); x != y {
			t.Fatalf("%s%v: %d before instrumentation, %d after", c.name, c.args, x, y)
		}
	}
	if call(t, b, "started") != 1 || call(t, b, "indirect", 1) != 14 || call(t, b, "sum", 1000) != 499500 {
		t.Fatal("instrumented module computes wrong values")
	}
	// A million loop iterations reach the host once per Fuel steps.
	y1 = 0
	call(t, b, "sum", 1_000_000)
	if want := 1_000_000 / Fuel; y1 < want || y1 > want+2 {
		t.Fatalf("%d yields for 1e6 iterations, want about %d", y1, want)
	}
	// The name section still names the right functions.
	if n := b.ExportedFunction("sum").Definition().Name(); n != "sumfn" {
		t.Fatalf("after instrumentation the function exported as sum is named %q, want sumfn", n)
	}
}

func TestInstrumentYieldStopsLoops(t *testing.T) {
	t.Parallel()
	orig, _ := os.ReadFile(filepath.Join("testdata", "instrument.wasm"))
	inst, err := InstrumentYield(orig)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	r.NewHostModuleBuilder("env").NewFunctionBuilder().WithFunc(func(a, b int32) int32 { return a + b }).Export("add").Instantiate(ctx)
	calls := 0
	r.NewHostModuleBuilder(YieldModule).NewFunctionBuilder().
		WithFunc(func() int32 { calls++; return int32(calls / 3) }).Export(YieldName).Instantiate(ctx)
	m, err := r.Instantiate(ctx, inst)
	if err != nil {
		t.Fatal(err)
	}
	// yield answers 1 on its third call: the guest must trap there, not
	// run its 2^31 iterations.
	if _, err := m.ExportedFunction("sum").Call(ctx, 1<<31-1); err == nil || calls != 3 {
		t.Fatalf("err %v after %d yields; want a trap at the third", err, calls)
	}
}

func TestInstrumentYieldRejectsMalformed(t *testing.T) {
	t.Parallel()
	orig, _ := os.ReadFile(filepath.Join("testdata", "instrument.wasm"))
	for i := 8; i < len(orig); i += 7 {
		InstrumentYield(orig[:i]) // must not panic
	}
	if _, err := InstrumentYield([]byte("not wasm")); err == nil {
		t.Fatal("instrumented garbage")
	}
}

// FuzzInstrumentYield follows the engine's order (Precheck, InstrumentYield,
// compile): instrumentation never panics, a module wazero accepts stays
// acceptable after instrumentation, and compiling a module that passed
// Precheck allocates a bounded amount. Without the Precheck gate the fuzzer
// finds inputs that make wazero v1.12 allocate gigabytes from a declared
// count (the worker then dies of it); with it, such an input is a Precheck gap
// and fails here with its size.
func FuzzInstrumentYield(f *testing.F) {
	for _, name := range []string{"instrument.wasm", "merge.wasm", "renumber.wasm", "env.wasm", "nonconst.wasm"} {
		if b, err := os.ReadFile(filepath.Join("testdata", name)); err == nil {
			f.Add(b)
		}
	}
	for _, name := range []string{"wasm/testdata/loop.wasm", "host/testdata/wild.wasm", "wasm/testdata/fib.wasm", "wasm/testdata/start_section.wasm"} {
		b, err := os.ReadFile(filepath.Join("..", name))
		if err != nil {
			f.Fatal(err) // a seed that moved away must not go missing silently
		}
		f.Add(b)
	}
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCoreFeatures(api.CoreFeaturesV2))
	defer r.Close(ctx)
	f.Fuzz(func(t *testing.T, wasm []byte) {
		out, err := InstrumentYield(wasm) // must not panic, whatever the bytes
		if err != nil || Precheck(wasm) != nil {
			return
		}
		var before, after goruntime.MemStats
		goruntime.ReadMemStats(&before)
		cm, err := r.CompileModule(ctx, wasm)
		goruntime.ReadMemStats(&after)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > maxCompileAlloc(len(wasm)) {
			t.Fatalf("compiling %d bytes that passed Precheck allocated %d MiB", len(wasm), alloc>>20)
		}
		if err != nil {
			return
		}
		cm.Close(ctx)
		cm2, err := r.CompileModule(ctx, out)
		if err != nil {
			t.Fatalf("valid module invalid after instrumentation: %v", err)
		}
		cm2.Close(ctx)
	})
}

// maxCompileAlloc is a generous bound on what compiling n bytes may allocate:
// wazero's compiler allocates a few MiB up front and then in proportion to the
// code. The hostile inputs Precheck exists for allocate gigabytes.
func maxCompileAlloc(n int) uint64 { return 64<<20 + uint64(n)*16<<10 }

func TestInstrumentSnapshot(t *testing.T) {
	t.Parallel()
	orig, err := os.ReadFile(filepath.Join("testdata", "snapshot.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	out, info, err := Instrument(orig)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Snapshot || info.NoSnapshot != "" {
		t.Fatalf("snapshot refused: %q", info.NoSnapshot)
	}
	// the two mutable globals (0 and 2), then fuel (3) and taint (4)
	want := []string{GlobalExportPrefix + "0", GlobalExportPrefix + "2", GlobalExportPrefix + "3", GlobalExportPrefix + "4"}
	if fmt.Sprint(info.Globals) != fmt.Sprint(want) {
		t.Fatalf("global exports %q, want %q", info.Globals, want)
	}
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCoreFeatures(api.CoreFeaturesV2))
	defer r.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	r.NewHostModuleBuilder(YieldModule).NewFunctionBuilder().WithFunc(func() int32 { return 0 }).Export(YieldName).Instantiate(ctx)
	m, err := r.Instantiate(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	counter := m.ExportedGlobal(GlobalExportPrefix + "0").(api.MutableGlobal)
	if call(t, m, "bump") != 8 || counter.Get() != 8 {
		t.Fatalf("the exported global reads %d after bump, want 8", counter.Get())
	}
	counter.Set(41)
	if call(t, m, "bump") != 42 {
		t.Fatal("setting the exported global did not change the guest's")
	}
	taint := m.ExportedGlobal(info.Globals[3])
	call(t, m, "rand")
	if taint.Get() != 0 {
		t.Fatal("random_get tainted the instance")
	}
	call(t, m, "close")
	if taint.Get() != 1 {
		t.Fatal("fd_close did not taint the instance")
	}

	ts, _ := os.ReadFile(filepath.Join("testdata", "tableset.wasm"))
	if _, info, err := Instrument(ts); err != nil || info.Snapshot || !strings.Contains(info.NoSnapshot, "table") {
		t.Fatalf("a module with table.set: %v, snapshot %v (%q)", err, info.Snapshot, info.NoSnapshot)
	}
}

// A module stripped of its data and given its segments back by hand has the
// original's memory.
func TestStripActiveData(t *testing.T) {
	t.Parallel()
	merged, err := os.ReadFile(filepath.Join("testdata", "active.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	stripped, segs, ok := StripActiveData(merged)
	if !ok || len(segs) == 0 || len(stripped) >= len(merged) {
		t.Fatalf("ok %v, %d segments, %d -> %d bytes", ok, len(segs), len(merged), len(stripped))
	}
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	a, err := r.InstantiateWithConfig(ctx, merged, wazero.NewModuleConfig().WithName("a"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.InstantiateWithConfig(ctx, stripped, wazero.NewModuleConfig().WithName("b"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range segs {
		if !b.Memory().Write(s.Offset, s.Data) {
			t.Fatalf("segment at %d (%d bytes) out of bounds", s.Offset, len(s.Data))
		}
	}
	am, _ := a.Memory().Read(0, a.Memory().Size())
	bm, _ := b.Memory().Read(0, b.Memory().Size())
	if !bytes.Equal(am, bm) {
		t.Fatal("memories differ")
	}
	// A module with passive segments keeps its data.
	withPassive, _ := os.ReadFile(filepath.Join("testdata", "merge.wasm"))
	if out, _, ok := StripActiveData(withPassive); ok || !bytes.Equal(out, withPassive) {
		t.Fatal("stripped a module with passive segments")
	}
}
