package wasmbin

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
)

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// instance instantiates bin in a fresh interpreter runtime (with env.wasm
// available as "env" and WASI) without running _start, optionally calls the
// exported functions in call, and returns a copy of the module's memory.
func instance(t *testing.T, bin []byte, call ...string) []byte {
	t.Helper()
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	t.Cleanup(func() { r.Close(ctx) })
	if _, err := r.InstantiateWithConfig(ctx, readFixture(t, "env.wasm"), wazero.NewModuleConfig().WithName("env")); err != nil {
		t.Fatal(err)
	}
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	mod, err := r.InstantiateWithConfig(ctx, bin, wazero.NewModuleConfig().WithName("m").WithStartFunctions())
	if err != nil {
		t.Fatal(err)
	}
	for _, fn := range call {
		if _, err := mod.ExportedFunction(fn).Call(ctx); err != nil {
			t.Fatalf("%s: %v", fn, err)
		}
	}
	return memoryOf(t, mod)
}

func memoryOf(t *testing.T, mod api.Module) []byte {
	t.Helper()
	m := mod.Memory()
	b, ok := m.Read(0, m.Size())
	if !ok {
		t.Fatal("cannot read memory")
	}
	return bytes.Clone(b)
}

func requireSameMemory(t *testing.T, want, got []byte) {
	t.Helper()
	if len(want) != len(got) {
		t.Fatalf("memory size: merged %d, original %d", len(got), len(want))
	}
	for i := range want {
		if want[i] != got[i] {
			t.Fatalf("memory differs first at %d: merged %#x, original %#x", i, got[i], want[i])
		}
	}
}

// withDataCount inserts a data count section before the code section: wat2wasm
// only writes one when the code uses memory.init or data.drop.
func withDataCount(t *testing.T, bin []byte) []byte {
	t.Helper()
	secs, err := parseSections(bin)
	if err != nil {
		t.Fatal(err)
	}
	var n uint32
	for _, s := range secs {
		if s.id == secData {
			n, _, _ = readU32(bin[s.body:])
		}
	}
	for _, s := range secs {
		if s.id == secCode {
			out := append([]byte(nil), bin[:s.start]...)
			out = append(out, secDataCount, byte(sizeU32(n)))
			out = appendU32(out, n)
			return append(out, bin[s.start:]...)
		}
	}
	t.Fatal("no code section")
	return nil
}

func TestMergeFixtures(t *testing.T) {
	t.Parallel()
	renumber := readFixture(t, "renumber.wasm")
	tests := []struct {
		name  string
		bin   []byte
		call  []string
		want  Stats
		count bool // output has a data count section
	}{
		{
			// Clusters: [98,300) joining 0,1,3,5,6 across small gaps,
			// [20000,20009) from 4 and 8, and [0xfff0,0x10000) from 9.
			name: "merge", bin: readFixture(t, "merge.wasm"), call: []string{"init"}, count: true,
			want: Stats{SegmentsIn: 10, SegmentsOut: 10, Merged: 8, MergedOut: 3, FillBytes: 202 - 14 - 3, KeptIndices: true},
		},
		{
			name: "renumber", bin: renumber, call: []string{"init"},
			want: Stats{SegmentsIn: 8, SegmentsOut: 3, Merged: 7, MergedOut: 2, FillBytes: 202 - 14 - 3},
		},
		{
			name: "renumber with data count", bin: withDataCount(t, renumber), call: []string{"init"}, count: true,
			want: Stats{SegmentsIn: 8, SegmentsOut: 3, Merged: 7, MergedOut: 2, FillBytes: 202 - 14 - 3},
		},
		{
			// Before the non-constant segment, 100..140 is filled; after
			// it nothing may be zero-filled, and nothing touches.
			name: "nonconst", bin: readFixture(t, "nonconst.wasm"),
			want: Stats{SegmentsIn: 6, SegmentsOut: 5, Merged: 5, MergedOut: 4, FillBytes: 10},
		},
		{
			name: "importmem", bin: readFixture(t, "importmem.wasm"),
			want: Stats{SegmentsIn: 5, SegmentsOut: 2, Merged: 5, MergedOut: 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out, st, err := MergeDataSegments(tt.bin)
			if err != nil {
				t.Fatal(err)
			}
			if st != tt.want {
				t.Errorf("stats = %+v, want %+v", st, tt.want)
			}
			requireSameMemory(t, instance(t, tt.bin), instance(t, out))
			if len(tt.call) > 0 {
				requireSameMemory(t, instance(t, tt.bin, tt.call...), instance(t, out, tt.call...))
			}
			requireOtherSectionsIdentical(t, tt.bin, out)
			secs, _ := parseSections(out)
			hasCount := false
			for _, s := range secs {
				if s.id == secDataCount {
					hasCount = true
					if n, _, _ := readU32(out[s.body:]); int(n) != st.SegmentsOut {
						t.Errorf("data count = %d, want %d", n, st.SegmentsOut)
					}
				}
			}
			if hasCount != tt.count {
				t.Errorf("data count section present = %v, want %v", hasCount, tt.count)
			}
			// Merging is idempotent: a second pass finds nothing to do.
			again, _, err := MergeDataSegments(out)
			if err != nil || !bytes.Equal(again, out) {
				t.Errorf("second merge changed the module (err %v)", err)
			}
		})
	}
}

func requireOtherSectionsIdentical(t *testing.T, in, out []byte) {
	t.Helper()
	a, err := parseSections(in)
	if err != nil {
		t.Fatal(err)
	}
	b, err := parseSections(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != len(b) {
		t.Fatalf("%d sections, want %d", len(b), len(a))
	}
	for i := range a {
		if a[i].id != b[i].id {
			t.Fatalf("section %d: id %d, want %d", i, b[i].id, a[i].id)
		}
		if a[i].id == secData || a[i].id == secDataCount {
			continue
		}
		if !bytes.Equal(in[a[i].start:a[i].end], out[b[i].start:b[i].end]) {
			t.Fatalf("section %d (id %d) changed", i, a[i].id)
		}
	}
}

var goWasm struct {
	once sync.Once
	path string
	err  error
}

// buildGo builds testdata/gomain for wasip1 once per test binary run.
func buildGo(t testing.TB) []byte {
	t.Helper()
	goWasm.once.Do(func() {
		goWasm.path = filepath.Join(testDir, "gomain.wasm")
		cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", goWasm.path, "./testdata/gomain")
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		if out, err := cmd.CombinedOutput(); err != nil {
			goWasm.err = errors.New("go build: " + err.Error() + "\n" + string(out))
		}
	})
	if goWasm.err != nil {
		t.Fatal(goWasm.err)
	}
	b, err := os.ReadFile(goWasm.path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var testDir string

func TestMain(m *testing.M) {
	var err error
	if testDir, err = os.MkdirTemp("", "wasmbin-test-"); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(testDir)
	os.Exit(code)
}

func TestMergeGoBinary(t *testing.T) {
	t.Parallel()
	bin := buildGo(t)
	out, st, err := MergeDataSegments(bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d bytes -> %d bytes, %+v", len(bin), len(out), st)
	if st.SegmentsIn < 1000 || st.SegmentsOut > 4 || st.KeptIndices {
		t.Fatalf("unexpected stats for a Go binary: %+v", st)
	}
	requireOtherSectionsIdentical(t, bin, out)
	requireSameMemory(t, instance(t, bin), instance(t, out))

	// Run both to completion: same output and, as wazero's default clocks and
	// random source are deterministic, the same final memory.
	run := func(bin []byte) (string, []byte) {
		ctx := context.Background()
		r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
		defer r.Close(ctx)
		wasi_snapshot_preview1.MustInstantiate(ctx, r)
		var stdout bytes.Buffer
		mod, err := r.InstantiateWithConfig(ctx, bin, wazero.NewModuleConfig().WithStdout(&stdout).WithArgs("gomain", "x"))
		var exit *sys.ExitError
		if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 0) {
			t.Fatal(err)
		}
		if mod == nil {
			mod = r.Module("")
		}
		var mem []byte
		if mod != nil {
			if m := mod.Memory(); m != nil {
				b, _ := m.Read(0, m.Size())
				mem = bytes.Clone(b)
			}
		}
		return stdout.String(), mem
	}
	wantOut, wantMem := run(bin)
	gotOut, gotMem := run(out)
	if wantOut != "alpha=1;beta=2;delta=4;gamma=3; 2\n" || gotOut != wantOut {
		t.Fatalf("stdout: merged %q, original %q", gotOut, wantOut)
	}
	if len(wantMem) < 1<<20 {
		t.Fatalf("could not read the memory after _start (%d bytes)", len(wantMem))
	}
	requireSameMemory(t, wantMem, gotMem)
}

func TestMergeNothingToDo(t *testing.T) {
	t.Parallel()
	for _, wat := range []string{"env.wasm"} {
		in := readFixture(t, wat)
		out, st, err := MergeDataSegments(in)
		if err != nil {
			t.Fatal(err)
		}
		if &out[0] != &in[0] || len(out) != len(in) || st.SegmentsIn != st.SegmentsOut {
			t.Fatalf("%s: expected the input back unchanged, stats %+v", wat, st)
		}
	}
	// One active segment: nothing to merge.
	one := module(dataSection(seg(0, 16, []byte("x"))))
	out, _, err := MergeDataSegments(one)
	if err != nil || &out[0] != &one[0] {
		t.Fatalf("single segment: expected input back, err %v", err)
	}
}

// module returns a module made of a memory section (one page) and sections.
func module(sections ...[]byte) []byte {
	b := append([]byte(nil), wasmHeader...)
	b = append(b, 5, 3, 1, 0, 1) // memory section: one memory, min 1
	for _, s := range sections {
		b = append(b, s...)
	}
	return b
}

func dataSection(segs ...[]byte) []byte {
	return fixSize(dataBody(segs...))
}

func dataBody(segs ...[]byte) []byte {
	body := appendU32(nil, uint32(len(segs)))
	for _, s := range segs {
		body = append(body, s...)
	}
	return body
}

// seg encodes an active segment with flags 0 or 2 at a constant offset.
func seg(flags byte, off int32, data []byte) []byte {
	b := []byte{flags}
	if flags == 2 {
		b = append(b, 0)
	}
	b = append(b, opI32Const)
	b = appendS32(b, off)
	b = append(b, opEnd)
	b = appendU32(b, uint32(len(data)))
	return append(b, data...)
}

func TestMergeFlags2AndNonCanonicalLEB(t *testing.T) {
	t.Parallel()
	// An offset of 64 written with padding (0xc0 0x80 0x00) is still a
	// constant; flags 2 with memory 0 is the same as flags 0.
	padded := []byte{0, opI32Const, 0xc0, 0x80, 0x00, opEnd, 2, 'h', 'i'}
	in := module(dataSection(seg(2, 60, []byte("abcd")), padded, seg(0, 66, []byte("!"))))
	out, st, err := MergeDataSegments(in)
	if err != nil {
		t.Fatal(err)
	}
	if st.SegmentsOut != 1 || st.Merged != 3 || st.FillBytes != 0 {
		t.Fatalf("stats %+v", st)
	}
	requireSameMemory(t, instance(t, in), instance(t, out))
	if m := instance(t, out); string(m[60:67]) != "abcdhi!" {
		t.Fatalf("memory 60..67 = %q", m[60:67])
	}
}

func TestMergeMalformed(t *testing.T) {
	t.Parallel()
	good := dataSection(seg(0, 0, []byte("a")), seg(0, 2, []byte("b")))
	tests := map[string][]byte{
		"empty":               nil,
		"bad magic":           []byte("\x00asn\x01\x00\x00\x00"),
		"component":           []byte("\x00asm\x0d\x00\x01\x00"),
		"section too big":     append(module(), secData, 0x80, 0x80, 0x04, 0),
		"size LEB overlong":   append(module(), secData, 0xff, 0xff, 0xff, 0xff, 0x7f),
		"trailing bytes":      module(fixSize(append(dataBody(seg(0, 0, []byte("a"))), 0))),
		"segment too big":     module(dataSection([]byte{0, opI32Const, 0, opEnd, 0xff, 0xff, 0x03, 'x'})),
		"huge count":          module([]byte{secData, 6, 0xff, 0xff, 0xff, 0xff, 0x0f, 1}),
		"unknown flags":       module(dataSection([]byte{3, 0})),
		"bad const expr":      module(dataSection([]byte{0, 0x99, opEnd, 0}, seg(0, 1, []byte("x")))),
		"unterminated expr":   module(dataSection([]byte{0, opI32Const, 0})),
		"two data sections":   module(good, good),
		"data count mismatch": module([]byte{secDataCount, 1, 5}, good),
		"data count trailing": module([]byte{secDataCount, 2, 2, 0}, good),
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out, _, err := MergeDataSegments(in)
			if err == nil {
				t.Fatalf("no error, output %x", out)
			}
			t.Log(err)
		})
	}
}

// fixSize turns a data section body into a section with the right size.
func fixSize(body []byte) []byte {
	return append(appendU32([]byte{secData}, uint32(len(body))), body...)
}

func TestMergeTruncatedNeverPanics(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"merge.wasm", "nonconst.wasm", "importmem.wasm", "renumber.wasm"} {
		in := readFixture(t, name)
		for n := 0; n < len(in); n++ {
			MergeDataSegments(in[:n:n]) // must not panic; errors are expected
		}
		// Flip each byte too.
		for i := range in {
			b := bytes.Clone(in)
			b[i] ^= 0xff
			MergeDataSegments(b)
		}
	}
}

func TestMergeTooLarge(t *testing.T) {
	t.Parallel()
	// 70,000 one-byte segments 4 KiB apart would merge into ~280 MiB.
	n := 70000
	var body []byte
	body = appendU32(body, uint32(n))
	for i := 0; i < n; i++ {
		body = append(body, seg(0, int32(i*GapThreshold), []byte{1})...)
	}
	in := module(fixSize(body))
	_, _, err := MergeDataSegments(in)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
}

func TestLEB(t *testing.T) {
	t.Parallel()
	s32 := []struct {
		in   []byte
		want int32
		ok   bool
	}{
		{[]byte{0x00}, 0, true},
		{[]byte{0x7f}, -1, true},
		{[]byte{0x80, 0x7f}, -128, true},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0x07}, 0x7fffffff, true},
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x78}, -0x80000000, true},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0x0f}, 0, false}, // bit 32 set, not a sign extension
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x70}, 0, false},
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, 0, false},
		{[]byte{0x80}, 0, false},
	}
	for _, tt := range s32 {
		v, n, err := readS32(tt.in)
		if (err == nil) != tt.ok || (tt.ok && (v != tt.want || n != len(tt.in))) {
			t.Errorf("readS32(%x) = %d, %d, %v", tt.in, v, n, err)
		}
		if tt.ok {
			if v2, _, _ := readS32(appendS32(nil, tt.want)); v2 != tt.want {
				t.Errorf("appendS32(%d) round trip = %d", tt.want, v2)
			}
		}
	}
	u32 := []struct {
		in   []byte
		want uint32
		ok   bool
	}{
		{[]byte{0xff, 0xff, 0xff, 0xff, 0x0f}, 0xffffffff, true},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0x1f}, 0, false},
		{[]byte{0x80, 0x00}, 0, true},
	}
	for _, tt := range u32 {
		v, n, err := readU32(tt.in)
		if (err == nil) != tt.ok || (tt.ok && (v != tt.want || n != len(tt.in))) {
			t.Errorf("readU32(%x) = %d, %d, %v", tt.in, v, n, err)
		}
	}
	for _, v := range []uint32{0, 1, 127, 128, 1 << 20, 0xffffffff} {
		if got, _, _ := readU32(appendU32(nil, v)); got != v || sizeU32(v) != len(appendU32(nil, v)) {
			t.Errorf("appendU32(%d) round trip = %d", v, got)
		}
	}
}

func BenchmarkMergeDataSegments(b *testing.B) {
	b.Run("go", func(b *testing.B) {
		bin := buildGo(b)
		b.SetBytes(int64(len(bin)))
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := MergeDataSegments(bin); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestMayUseDataIndex(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code []byte
		want bool
	}{
		{[]byte{0x01, 0x0b}, false},
		{[]byte{0xfc, 0x0a, 0x00, 0x00}, false},            // memory.copy
		{[]byte{0xfc, 0x0b, 0x00}, false},                  // memory.fill
		{[]byte{0x41, 0x00, 0xfc, 0x08, 0x01, 0x00}, true}, // memory.init 1
		{[]byte{0xfc, 0x89, 0x80, 0x00, 0x00}, true},       // data.drop, padded opcode
		{[]byte{0xfc}, false},
		{[]byte{0xfc, 0x88}, true}, // truncated: still counts
	}
	for _, tt := range tests {
		if got := mayUseDataIndex(tt.code); got != tt.want {
			t.Errorf("mayUseDataIndex(%x) = %v, want %v", tt.code, got, tt.want)
		}
	}
}

func TestMayImportMemory(t *testing.T) {
	t.Parallel()
	imp := func(entries ...[]byte) []byte {
		b := appendU32(nil, uint32(len(entries)))
		for _, e := range entries {
			b = append(b, 1, 'm', 1, 'f')
			b = append(b, e...)
		}
		return b
	}
	fn := []byte{0x00, 0x00}
	table := []byte{0x01, 0x70, 0x00, 0x01}
	global := []byte{0x03, 0x64, 0x70, 0x00} // (ref func), immutable
	mem := []byte{0x02, 0x00, 0x01}
	tag := []byte{0x04, 0x00, 0x00}
	tests := []struct {
		name string
		body []byte
		want bool
	}{
		{"funcs", imp(fn, fn), false},
		{"table global tag", imp(table, global, tag), false},
		{"memory", imp(fn, mem), true},
		{"memory after gc global", imp(global, mem), true},
		{"truncated", imp(fn, mem)[:4], true},
		{"unknown kind", imp([]byte{0x09, 0x00}), true},
		{"empty", imp(), false},
	}
	for _, tt := range tests {
		if got := mayImportMemory(tt.body); got != tt.want {
			t.Errorf("%s: mayImportMemory = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// Not parallel: MemStats counts every goroutine's allocations, and
// parallel tests only start once the sequential ones are done.
func TestMergeAllocationBound(t *testing.T) {
	// The worst case for the working set: the smallest possible active
	// segments, each its own merged segment except for one pair.
	n := 100000
	body := appendU32(nil, uint32(n))
	for i := 0; i < n; i++ {
		body = append(body, seg(0, int32(i*(GapThreshold+1)), nil)...)
	}
	body = append(body[:0:0], body...)
	in := module(fixSize(append(appendU32(nil, uint32(n+1)), append(body[sizeU32(uint32(n)):], seg(0, 0, []byte("x"))...)...)))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	out, st, err := MergeDataSegments(in)
	runtime.ReadMemStats(&after)
	if err != nil || st.MergedOut < n-1 {
		t.Fatalf("err %v, stats %+v", err, st)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 16*uint64(len(in)) {
		t.Fatalf("allocated %d bytes for a %d-byte module (output %d)", got, len(in), len(out))
	} else {
		t.Logf("allocated %d bytes (%.1fx) for a %d-byte module", got, float64(got)/float64(len(in)), len(in))
	}
}
