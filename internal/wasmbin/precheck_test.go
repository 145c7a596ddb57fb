package wasmbin

import (
	"testing"
)

func TestPrecheckAcceptsRealModules(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"merge.wasm", "renumber.wasm", "nonconst.wasm", "importmem.wasm", "env.wasm"} {
		if err := Precheck(readFixture(t, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	bin := buildGo(t)
	if err := Precheck(bin); err != nil {
		t.Fatalf("Go binary: %v", err)
	}
	merged, _, err := MergeDataSegments(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := Precheck(merged); err != nil {
		t.Fatalf("merged Go binary: %v", err)
	}
}

func sec(id byte, body ...byte) []byte {
	return append(appendU32([]byte{id}, uint32(len(body))), body...)
}

func TestPrecheckRejectsInflatedDeclarations(t *testing.T) {
	t.Parallel()
	hdr := string(wasmHeader)
	huge := []byte{0xff, 0xff, 0xff, 0xff, 0x07}
	tests := map[string][]byte{
		// Found by the fuzzer: keeps wazero's CompileModule busy for minutes.
		"export count":   []byte(hdr + "\x07\x05\xff\xff\xff\x7f\x00"),
		"import count":   append([]byte(hdr), sec(2, huge...)...),
		"function count": append([]byte(hdr), sec(3, huge...)...),
		"global count":   append([]byte(hdr), sec(6, append(huge, 0x7f, 0x00)...)...),
		"import name":    append([]byte(hdr), sec(2, append([]byte{1}, huge...)...)...),
		"export name":    append([]byte(hdr), sec(7, append([]byte{1}, huge...)...)...),
		"param count":    append([]byte(hdr), sec(1, append([]byte{1, 0x60}, huge...)...)...),
		"locals": append([]byte(hdr), sec(10,
			1, 7, // one body of 7 bytes
			1, 0xff, 0xff, 0xff, 0x0f, 0x7f, // 2^25-1 i32 locals
			0x0b)...),
		"body size":         append([]byte(hdr), sec(10, append([]byte{1}, huge...)...)...),
		"data size":         module(dataSection([]byte{0x01, 0xff, 0xff, 0xff, 0x0f})),
		"elem vector":       append([]byte(hdr), sec(9, append([]byte{1, 0x00, 0x41, 0x00, 0x0b}, huge...)...)...),
		"name map":          append([]byte(hdr), sec(0, append([]byte{4, 'n', 'a', 'm', 'e', 1, 5}, huge...)...)...),
		"truncated section": []byte(hdr + "\x01\x05\x01"),
	}
	for name, bin := range tests {
		if err := Precheck(bin); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	// At the limit is fine.
	ok := append([]byte(hdr), sec(10,
		1, 6,
		1, 0xd0, 0x86, 0x03, 0x7f, // 50000 locals
		0x0b)...)
	if err := Precheck(ok); err != nil {
		t.Errorf("%d locals: %v", MaxLocals, err)
	}
}
