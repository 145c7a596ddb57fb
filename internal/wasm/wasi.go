package wasm

import (
	"context"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
)

// WASI errno values used here.
const (
	errnoSuccess = 0
	errnoFault   = 21
)

// instantiateWASI registers wazero's WASI preview 1 with the environment
// served from the call's run state instead of the module configuration: a
// WAGI request has some twenty CGI variables, and each wazero WithEnv copies
// the whole configuration.
func instantiateWASI(ctx context.Context, r wazero.Runtime) error {
	b := r.NewHostModuleBuilder(wasi_snapshot_preview1.ModuleName)
	wasi_snapshot_preview1.NewFunctionExporter().ExportFunctions(b)
	i32 := api.ValueTypeI32
	b.NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(environSizesGet), []api.ValueType{i32, i32}, []api.ValueType{i32}).
		WithParameterNames("result.environc", "result.environv_len").
		Export("environ_sizes_get")
	b.NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(environGet), []api.ValueType{i32, i32}, []api.ValueType{i32}).
		WithParameterNames("environ", "environ_buf").
		Export("environ_get")
	// proc_exit ends the call with the exit code without closing the
	// module, so that the host can restore the instance and run it again
	// (snapshot.go); an instance that cannot be restored is closed then.
	b.NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(procExit), []api.ValueType{i32}, nil).
		WithParameterNames("rval").
		Export("proc_exit")
	_, err := b.Instantiate(ctx)
	return err
}

func procExit(_ context.Context, _ api.Module, stack []uint64) {
	panic(sys.NewExitError(uint32(stack[0])))
}

func envOf(ctx context.Context) []string {
	if r := runOf(ctx); r != nil {
		return r.env
	}
	return nil
}

// environ_sizes_get(count_ptr, buf_size_ptr): the number of variables and
// the bytes of their "KEY=VALUE\0" strings.
func environSizesGet(ctx context.Context, mod api.Module, stack []uint64) {
	env := envOf(ctx)
	size := 0
	for _, kv := range env {
		size += len(kv) + 1
	}
	m := mod.Memory()
	if !m.WriteUint32Le(uint32(stack[0]), uint32(len(env))) || !m.WriteUint32Le(uint32(stack[1]), uint32(size)) {
		stack[0] = errnoFault
		return
	}
	stack[0] = errnoSuccess
}

// environ_get(environ_ptr, buf_ptr): the pointer array and the strings.
func environGet(ctx context.Context, mod api.Module, stack []uint64) {
	env := envOf(ctx)
	ptrs, buf := uint32(stack[0]), uint32(stack[1])
	m := mod.Memory()
	size := uint32(0)
	for _, kv := range env {
		size += uint32(len(kv)) + 1
	}
	if _, ok := m.Read(ptrs, 4*uint32(len(env))); !ok {
		stack[0] = errnoFault
		return
	}
	dst, ok := m.Read(buf, size)
	if !ok {
		stack[0] = errnoFault
		return
	}
	off := uint32(0)
	for i, kv := range env {
		m.WriteUint32Le(ptrs+4*uint32(i), buf+off)
		off += uint32(copy(dst[off:], kv))
		dst[off] = 0
		off++
	}
	stack[0] = errnoSuccess
}
