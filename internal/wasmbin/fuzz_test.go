package wasmbin

import (
	"bytes"
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
)

// FuzzMergeDataSegments checks that MergeDataSegments and Precheck never
// panic, that
// wazero accepts every module it returns whenever it accepted the input, and
// that instantiating the result succeeds exactly when instantiating the input
// does, leaving the same memory.
//
//	go test ./internal/wasmbin -run '^$' -fuzz FuzzMergeDataSegments -fuzztime 60s
func FuzzMergeDataSegments(f *testing.F) {
	for _, name := range []string{"merge.wasm", "renumber.wasm", "nonconst.wasm", "importmem.wasm", "env.wasm"} {
		f.Add(readFixture(f, name))
	}
	env := readFixture(f, "env.wasm")
	f.Fuzz(func(t *testing.T, in []byte) {
		pre := Precheck(in)
		out, _, err := MergeDataSegments(in)
		if err != nil || (len(out) > 0 && &out[0] == &in[0]) {
			// Errors are allowed; an unchanged module has nothing to check
			// (and wazero itself can take seconds on some hostile inputs).
			return
		}
		if pre != nil {
			// wazero v1.12 sizes slices by declared counts before reading
			// the entries: such inputs make it allocate gigabytes. The
			// fuzzer thereby also checks that Precheck catches them.
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		origMem, origErr, compiled := fuzzInstantiate(ctx, env, in)
		if !compiled {
			return
		}
		mergedMem, mergedErr, mergedCompiled := fuzzInstantiate(ctx, env, out)
		if !mergedCompiled {
			t.Fatalf("wazero accepts the input but not the merged module: %v", mergedErr)
		}
		if ctx.Err() != nil {
			return // a start function ran out of time; nothing to compare
		}
		if (origErr == nil) != (mergedErr == nil) {
			t.Fatalf("instantiation: original error %v, merged error %v", origErr, mergedErr)
		}
		// After a failed instantiation an imported memory may hold a
		// prefix of the segments' writes, which merging legitimately
		// changes; compare only complete instantiations.
		if origErr == nil && !bytes.Equal(origMem, mergedMem) {
			t.Fatalf("memory differs after instantiation (%d vs %d bytes)", len(origMem), len(mergedMem))
		}
	})
}

// fuzzInstantiate compiles bin in a fresh interpreter runtime (memory capped
// at 16 MiB so that fuzzed limits cannot exhaust the host) with env.wasm
// registered as "env", and instantiates it without _start.
func fuzzInstantiate(ctx context.Context, env, bin []byte) (mem []byte, err error, compiled bool) {
	cfg := wazero.NewRuntimeConfigInterpreter().WithMemoryLimitPages(256).WithCloseOnContextDone(true)
	r := wazero.NewRuntimeWithConfig(ctx, cfg)
	defer r.Close(ctx)
	_, err = r.InstantiateWithConfig(ctx, env, wazero.NewModuleConfig().WithName("env"))
	if err != nil {
		return nil, err, false
	}
	cm, err := r.CompileModule(ctx, bin)
	if err != nil {
		return nil, err, false
	}
	mod, err := r.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithName("m").WithStartFunctions())
	if err != nil {
		return nil, err, true
	}
	// A module without memory returns a typed nil inside the interface.
	if m := mod.Memory(); m != nil && !reflect.ValueOf(m).IsNil() {
		b, _ := m.Read(0, m.Size())
		mem = bytes.Clone(b)
	}
	return mem, nil, true
}
