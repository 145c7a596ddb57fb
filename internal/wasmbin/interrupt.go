package wasmbin

import (
	"errors"
	"fmt"
	"strconv"
)

// The host function an instrumented module imports: () -> i32, called every
// Fuel checks; a non-zero result makes the guest trap at once.
const (
	YieldModule = "verge_rt"
	YieldName   = "yield"
	// Fuel is the number of loop iterations and function entries between
	// two calls to the yield function: small enough that a tight loop
	// reaches the host every few tens of microseconds, large enough that
	// the call costs under 1% of a loop's time.
	Fuel = 20000
)

// Section ids used by the instrumentation, beyond those merge.go uses.
const (
	secCustom = 0
	secType   = 1
	secGlobal = 6
	secExport = 7
	secStart  = 8
	secElem   = 9
)

var errUnknownOpcode = errors.New("wasmbin: opcode not understood by the instrumentation")

// InstrumentYield returns wasm with a fuel check at the entry of every
// function and at the head of every loop:
//
//	global.get $fuel  i32.const 1  i32.sub  global.set $fuel
//	global.get $fuel  i32.eqz
//	if
//	  i32.const Fuel  global.set $fuel
//	  call $verge_rt.yield
//	  if  unreachable  end
//	end
//
// Compiled guest code never yields to the Go scheduler: a guest in a tight
// loop can neither be preempted nor reached by a timer, and it blocks the
// garbage collector's stop-the-world. The yield call gives the host a
// regular, cheap point at which the guest runs Go code, where the host checks
// the CPU and wall time limits and the scheduler can preempt it. Every
// function entry and loop head is covered, so neither loops nor recursion
// escape. Wasmtime's fuel is the same idea.
//
// The import is appended after the existing function imports, so every
// defined function's index grows by one: calls, ref.func, exports, element
// segments and the name section are renumbered. A module using an
// instruction outside Wasm 2.0, the feature set Verge enables, is refused.
func InstrumentYield(wasm []byte) ([]byte, error) {
	out, _, err := Instrument(wasm)
	return out, err
}

// Names of what Instrument adds for snapshots.
const (
	// TaintExport is the exported i32 global that becomes 1 once the guest
	// has called a WASI function that changes the instance outside its
	// memory and globals (closing or renumbering a file descriptor...).
	TaintExport = "verge_rt.tainted"
	// GlobalExportPrefix, followed by a global's index, names the export
	// Instrument adds for every mutable global.
	GlobalExportPrefix = "verge_rt.global."
)

// Info says what a host may do with an instrumented module.
type Info struct {
	// Snapshot reports whether an instance's whole state lies in its linear
	// memory and its mutable globals, so that an instance restored from a
	// copy of them (a snapshot) is the instance copied: no instruction
	// changes a table or drops a segment, and no WASI function that changes
	// the instance elsewhere can be reached without setting the taint
	// global. NoSnapshot says why not.
	Snapshot   bool
	NoSnapshot string
	// Globals are the export names of every mutable global defined by the
	// module, the fuel and taint globals included.
	Globals []string
}

// statelessWASI are the WASI functions that change nothing of an instance
// outside its memory, given the host Verge configures for reactors (no
// preopened directories, no sockets, an empty stdin, stdout and stderr that
// cannot be polled, so that setting them non-blocking fails, as the Go
// runtime tries at start): calling any other one sets the taint global.
var statelessWASI = map[string]bool{
	"args_get": true, "args_sizes_get": true, "environ_get": true, "environ_sizes_get": true,
	"clock_res_get": true, "clock_time_get": true, "random_get": true, "sched_yield": true,
	"poll_oneoff": true, "proc_exit": true, "fd_write": true, "fd_read": true, "fd_pread": true, "fd_pwrite": true,
	"fd_fdstat_get": true, "fd_filestat_get": true, "fd_prestat_get": true, "fd_prestat_dir_name": true,
	"fd_fdstat_set_flags": true, "fd_fdstat_set_rights": true,
}

// Instrument is InstrumentYield plus what snapshots need: every mutable
// global is exported (GlobalExportPrefix and its index), and a taint
// global (TaintExport) is set before every call of a WASI function not
// known to leave the instance unchanged. Info says whether an instance may
// be snapshotted.
func Instrument(wasm []byte) ([]byte, Info, error) {
	secs, err := parseSections(wasm)
	if err != nil {
		return nil, Info{}, err
	}
	m := &rewriter{src: wasm, tainting: map[uint32]bool{}}
	for _, s := range secs {
		body := wasm[s.body:s.end]
		switch s.id {
		case secType:
			if m.types, _, err = readU32(body); err != nil {
				return nil, Info{}, fmt.Errorf("wasmbin: type section: %w", err)
			}
		case secImport:
			if m.funcImports, m.globalImports, err = countImports(body); err != nil {
				return nil, Info{}, err
			}
			if err = m.readFuncImports(body); err != nil {
				return nil, Info{}, err
			}
		case secGlobal:
			if m.globals, _, err = readU32(body); err != nil {
				return nil, Info{}, fmt.Errorf("wasmbin: global section: %w", err)
			}
			if m.mutable, err = mutableGlobals(body); err != nil {
				return nil, Info{}, err
			}
		case secStart:
			m.refuse("it has a start function")
		}
	}
	m.fuel = m.globalImports + m.globals
	m.taint = m.fuel + 1
	m.yield = m.funcImports
	m.check = m.buildCheck()
	if m.globalImports > 0 {
		m.refuse("it imports globals")
	}
	for _, i := range m.mutable {
		m.exports = append(m.exports, GlobalExportPrefix+strconv.FormatUint(uint64(m.globalImports+i), 10))
	}
	m.exports = append(m.exports, GlobalExportPrefix+strconv.FormatUint(uint64(m.fuel), 10))
	m.exports = append(m.exports, GlobalExportPrefix+strconv.FormatUint(uint64(m.taint), 10))

	out := make([]byte, 0, len(wasm)+len(wasm)/8+64)
	out = append(out, wasmHeader...)
	seen := map[byte]bool{}
	// emitMissing adds sections the module lacks before the first section
	// that must follow them.
	emitMissing := func(next byte) error {
		for _, id := range []byte{secType, secImport, secGlobal, secExport} {
			if !seen[id] && (next == 0xff || sectionOrder(next) > sectionOrder(id)) {
				seen[id] = true
				body, err := m.rewrite(id, nil)
				if err != nil {
					return err
				}
				out = appendSection(out, id, body)
			}
		}
		return nil
	}
	for _, s := range secs {
		if s.id != secCustom {
			if err := emitMissing(s.id); err != nil {
				return nil, Info{}, err
			}
			seen[s.id] = true
		}
		body, err := m.rewrite(s.id, wasm[s.body:s.end])
		if err != nil {
			return nil, Info{}, err
		}
		if body == nil {
			out = append(out, wasm[s.start:s.end]...)
		} else {
			out = appendSection(out, s.id, body)
		}
	}
	if err := emitMissing(0xff); err != nil {
		return nil, Info{}, err
	}
	info := Info{Snapshot: m.noSnapshot == "", NoSnapshot: m.noSnapshot, Globals: m.exports[:len(m.exports):len(m.exports)]}
	return out, info, nil
}

type rewriter struct {
	src                        []byte
	types                      uint32 // count: the yield type is appended as index types
	funcImports, globalImports uint32
	globals                    uint32
	fuel                       uint32 // index of the new fuel global
	taint                      uint32 // index of the new taint global
	yield                      uint32 // index of the new yield import
	check                      []byte
	mutable                    []uint32        // defined mutable globals, by index in the global section
	tainting                   map[uint32]bool // function imports that set the taint global
	exports                    []string        // the global exports added
	noSnapshot                 string          // why an instance cannot be snapshotted
}

func (m *rewriter) refuse(reason string) {
	if m.noSnapshot == "" {
		m.noSnapshot = reason
	}
}

// readFuncImports marks the WASI functions whose calls taint the instance.
func (m *rewriter) readFuncImports(b []byte) error {
	n, p, err := readU32(b)
	if err != nil {
		return err
	}
	fn := uint32(0)
	for i := uint32(0); i < n; i++ {
		var names [2]string
		for j := range names {
			l, k, err := readU32(b[p:])
			if err != nil || uint64(l) > uint64(len(b)-p-k) {
				return errMalformed
			}
			names[j] = string(b[p+k : p+k+int(l)])
			p += k + int(l)
		}
		if p >= len(b) {
			return errMalformed
		}
		kind := b[p]
		p++
		var k int
		switch kind {
		case 0x00:
			if names[0] == "wasi_snapshot_preview1" && !statelessWASI[names[1]] {
				m.tainting[fn] = true
			}
			fn++
			k, err = skipLEB(b[p:], 5)
		case 0x01:
			if p >= len(b) {
				return errMalformed
			}
			k, err = skipLimits(b[p+1:])
			k++
			m.refuse("it imports a table")
		case 0x02:
			k, err = skipLimits(b[p:])
		case 0x03:
			k = 2
		default:
			return fmt.Errorf("wasmbin: unknown import kind %#x", kind)
		}
		if err != nil || p+k > len(b) {
			return errMalformed
		}
		p += k
	}
	return nil
}

// mutableGlobals lists the mutable globals of a global section.
func mutableGlobals(b []byte) ([]uint32, error) {
	n, p, err := readU32(b)
	if err != nil {
		return nil, err
	}
	var out []uint32
	for i := uint32(0); i < n; i++ {
		if p+2 > len(b) {
			return nil, errMalformed
		}
		if b[p+1] == 1 {
			out = append(out, i)
		}
		p += 2
		for {
			if p >= len(b) {
				return nil, errMalformed
			}
			k, err := instrLen(b[p:])
			if err != nil {
				return nil, err
			}
			op := b[p]
			p += k
			if op == opEnd {
				break
			}
		}
	}
	return out, nil
}

func (m *rewriter) buildCheck() []byte {
	var c []byte
	c = appendU32(append(c, 0x23), m.fuel)  // global.get fuel
	c = append(c, 0x41, 0x01, 0x6b)         // i32.const 1, i32.sub
	c = appendU32(append(c, 0x24), m.fuel)  // global.set fuel
	c = appendU32(append(c, 0x23), m.fuel)  // global.get fuel
	c = append(c, 0x45, 0x04, 0x40)         // i32.eqz, if
	c = appendS32(append(c, 0x41), Fuel)    // i32.const Fuel
	c = appendU32(append(c, 0x24), m.fuel)  // global.set fuel
	c = appendU32(append(c, 0x10), m.yield) // call yield
	c = append(c, 0x04, 0x40, 0x00, 0x0b)   // if unreachable end
	return append(c, 0x0b)                  // end
}

// fn renumbers a function index for the inserted import.
func (m *rewriter) fn(i uint32) uint32 {
	if i >= m.funcImports {
		return i + 1
	}
	return i
}

// rewrite returns a section's new body, or nil to copy it unchanged. body is
// nil for a section the module lacks.
func (m *rewriter) rewrite(id byte, body []byte) ([]byte, error) {
	switch id {
	case secType:
		return appendVec(body, m.types, []byte{0x60, 0x00, 0x01, 0x7f}) // () -> i32
	case secImport:
		e := appendName(nil, YieldModule)
		e = appendName(e, YieldName)
		e = appendU32(append(e, 0x00), m.types) // func of the new type
		return appendVec(body, m.funcImports+m.globalImports+countOtherImports(body), e)
	case secGlobal:
		if body != nil {
			var err error
			if body, err = m.rewriteGlobals(body); err != nil {
				return nil, err
			}
		}
		g := []byte{0x7f, 0x01, 0x41} // mut i32 = i32.const Fuel
		g = appendS32(g, Fuel)
		g = append(g, 0x0b, 0x7f, 0x01, 0x41, 0x00, 0x0b) // taint: mut i32 = 0
		return appendVecN(body, m.globals, 2, g)
	case secExport:
		return m.rewriteExports(body)
	case secElem:
		return m.rewriteElems(body)
	case secStart:
		idx, k, err := readU32(body)
		if err != nil || k != len(body) {
			return nil, errMalformed
		}
		return appendU32(nil, m.fn(idx)), nil
	case secCode:
		return m.rewriteCode(body)
	case secCustom:
		return m.rewriteNames(body)
	}
	return nil, nil
}

// appendVec returns a vector section body with one more entry; count is the
// existing number of entries (0 when body is nil).
func appendVec(body []byte, count uint32, entry []byte) ([]byte, error) {
	return appendVecN(body, count, 1, entry)
}

// appendVecN is appendVec for entries holding n encoded entries.
func appendVecN(body []byte, count, n uint32, entries []byte) ([]byte, error) {
	entry := entries
	var rest []byte
	if body != nil {
		_, k, err := readU32(body)
		if err != nil {
			return nil, err
		}
		rest = body[k:]
	}
	out := appendU32(make([]byte, 0, len(body)+len(entry)+5), count+n)
	out = append(out, rest...)
	return append(out, entry...), nil
}

func appendName(dst []byte, s string) []byte {
	return append(appendU32(dst, uint32(len(s))), s...)
}

var errMalformed = errors.New("wasmbin: malformed module")

// countImports counts function and global imports.
func countImports(b []byte) (funcs, globals uint32, err error) {
	err = walkImports(b, func(kind byte) {
		switch kind {
		case 0x00:
			funcs++
		case 0x03:
			globals++
		}
	})
	return funcs, globals, err
}

func countOtherImports(b []byte) uint32 {
	var n uint32
	walkImports(b, func(kind byte) {
		if kind != 0x00 && kind != 0x03 {
			n++
		}
	})
	return n
}

func walkImports(b []byte, visit func(kind byte)) error {
	if b == nil {
		return nil
	}
	n, p, err := readU32(b)
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		for j := 0; j < 2; j++ { // module and field names
			l, k, err := readU32(b[p:])
			if err != nil || uint64(l) > uint64(len(b)-p-k) {
				return errMalformed
			}
			p += k + int(l)
		}
		if p >= len(b) {
			return errMalformed
		}
		kind := b[p]
		p++
		var k int
		switch kind {
		case 0x00: // func: type index
			k, err = skipLEB(b[p:], 5)
		case 0x01: // table: reftype + limits
			if p >= len(b) {
				return errMalformed
			}
			k, err = skipLimits(b[p+1:])
			k++
		case 0x02: // memory: limits
			k, err = skipLimits(b[p:])
		case 0x03: // global: valtype + mut
			k = 2
		default:
			return fmt.Errorf("wasmbin: unknown import kind %#x", kind)
		}
		if err != nil || p+k > len(b) {
			return errMalformed
		}
		visit(kind)
		p += k
	}
	if p != len(b) {
		return errMalformed
	}
	return nil
}

func skipLimits(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, errLEBTruncated
	}
	flags := b[0]
	p := 1
	k, err := skipLEB(b[p:], 10)
	if err != nil {
		return 0, err
	}
	p += k
	if flags&0x01 != 0 {
		if k, err = skipLEB(b[p:], 10); err != nil {
			return 0, err
		}
		p += k
	}
	return p, nil
}

func (m *rewriter) rewriteExports(b []byte) ([]byte, error) {
	var n uint32
	p := 0
	if b != nil {
		var err error
		if n, p, err = readU32(b); err != nil {
			return nil, err
		}
	}
	out := appendU32(make([]byte, 0, len(b)+16+24*len(m.exports)), n+uint32(len(m.exports)))
	for i := uint32(0); i < n; i++ {
		l, k, err := readU32(b[p:])
		if err != nil || uint64(l)+1 > uint64(len(b)-p-k) {
			return nil, errMalformed
		}
		out = append(out, b[p:p+k+int(l)+1]...)
		p += k + int(l)
		kind := b[p]
		p++
		idx, k, err := readU32(b[p:])
		if err != nil {
			return nil, errMalformed
		}
		p += k
		if kind == 0x00 {
			idx = m.fn(idx)
		}
		out = appendU32(out, idx)
	}
	if p != len(b) {
		return nil, errMalformed
	}
	for i, name := range m.exports {
		var idx uint32
		switch {
		case i < len(m.mutable):
			idx = m.globalImports + m.mutable[i]
		case i == len(m.mutable):
			idx = m.fuel
		default:
			idx = m.taint
		}
		out = appendU32(append(appendName(out, name), 0x03), idx)
	}
	return out, nil
}

// rewriteElems renumbers function indices in element segments, in both the
// index-vector and the expression encodings.
func (m *rewriter) rewriteElems(b []byte) ([]byte, error) {
	n, p, err := readU32(b)
	if err != nil {
		return nil, err
	}
	out := appendU32(make([]byte, 0, len(b)+16), n)
	copyN := func(k int) error {
		if p+k > len(b) {
			return errMalformed
		}
		out = append(out, b[p:p+k]...)
		p += k
		return nil
	}
	expr := func() (err error) {
		out, p, err = m.copyExpr(out, b, p)
		return err
	}
	for i := uint32(0); i < n; i++ {
		flags, k, err := readU32(b[p:])
		if err != nil || flags > 7 {
			return nil, errMalformed
		}
		if err := copyN(k); err != nil {
			return nil, err
		}
		if flags&0x02 != 0 && flags&0x01 == 0 { // explicit table index
			k, err := skipLEB(b[p:], 5)
			if err != nil {
				return nil, err
			}
			copyN(k)
		}
		if flags&0x01 == 0 { // active: offset expression
			if err := expr(); err != nil {
				return nil, err
			}
		}
		if flags&0x03 != 0 { // elemkind or reftype byte
			if err := copyN(1); err != nil {
				return nil, err
			}
		}
		cnt, k, err := readU32(b[min(p, len(b)):])
		if err != nil {
			return nil, errMalformed
		}
		copyN(k)
		for j := uint32(0); j < cnt; j++ {
			if flags&0x04 != 0 {
				if err := expr(); err != nil {
					return nil, err
				}
				continue
			}
			idx, k, err := readU32(b[min(p, len(b)):])
			if err != nil {
				return nil, errMalformed
			}
			p += k
			if m.tainting[idx] {
				m.refuse("a table holds a WASI function that changes the instance outside its memory")
			}
			out = appendU32(out, m.fn(idx))
		}
	}
	if p != len(b) {
		return nil, errMalformed
	}
	return out, nil
}

// copyExpr copies the constant expression at b[p:], renumbering ref.func.
func (m *rewriter) copyExpr(out, b []byte, p int) ([]byte, int, error) {
	for p < len(b) {
		op := b[p]
		k, err := instrLen(b[p:])
		if err != nil {
			return nil, 0, err
		}
		if op == 0xd2 {
			idx, _, _ := readU32(b[p+1:])
			if m.tainting[idx] {
				m.refuse("a table or global refers to a WASI function that changes the instance outside its memory")
			}
			out = appendU32(append(out, 0xd2), m.fn(idx))
		} else {
			out = append(out, b[p:p+k]...)
		}
		p += k
		if op == opEnd {
			return out, p, nil
		}
	}
	return nil, 0, errMalformed
}

// rewriteGlobals renumbers ref.func in global initialisers.
func (m *rewriter) rewriteGlobals(b []byte) ([]byte, error) {
	n, p, err := readU32(b)
	if err != nil {
		return nil, err
	}
	out := appendU32(make([]byte, 0, len(b)+8), n)
	for i := uint32(0); i < n; i++ {
		if p+2 > len(b) {
			return nil, errMalformed
		}
		out = append(out, b[p:p+2]...) // valtype, mutability
		if out, p, err = m.copyExpr(out, b, p+2); err != nil {
			return nil, err
		}
	}
	if p != len(b) {
		return nil, errMalformed
	}
	return out, nil
}

// rewriteNames renumbers the function and local names of the "name" custom
// section so that stack traces keep naming the right functions; other custom
// sections are copied.
func (m *rewriter) rewriteNames(b []byte) ([]byte, error) {
	l, k, err := readU32(b)
	if err != nil || uint64(l) > uint64(len(b)-k) || string(b[k:k+int(l)]) != "name" {
		return nil, nil
	}
	p := k + int(l)
	out := append([]byte(nil), b[:p]...)
	for p < len(b) {
		id := b[p]
		size, k, err := readU32(b[p+1:])
		if err != nil || uint64(size) > uint64(len(b)-p-1-k) {
			return nil, nil // leave a malformed name section as it is
		}
		sub := b[p+1+k : p+1+k+int(size)]
		p += 1 + k + int(size)
		if id == 1 || id == 2 { // function names, local names: vec(funcidx ...)
			if re, ok := m.renameSub(id, sub); ok {
				sub = re
			}
		}
		out = append(out, id)
		out = appendU32(out, uint32(len(sub)))
		out = append(out, sub...)
	}
	return out, nil
}

func (m *rewriter) renameSub(id byte, b []byte) ([]byte, bool) {
	n, p, err := readU32(b)
	if err != nil {
		return nil, false
	}
	out := appendU32(nil, n)
	for i := uint32(0); i < n; i++ {
		idx, k, err := readU32(b[p:])
		if err != nil {
			return nil, false
		}
		p += k
		out = appendU32(out, m.fn(idx))
		start := p
		if id == 1 { // name
			l, k, err := readU32(b[p:])
			if err != nil || uint64(l) > uint64(len(b)-p-k) {
				return nil, false
			}
			p += k + int(l)
		} else { // vec(localidx name)
			c, k, err := readU32(b[p:])
			if err != nil {
				return nil, false
			}
			p += k
			for j := uint32(0); j < c; j++ {
				if k, err = skipLEB(b[p:], 5); err != nil {
					return nil, false
				}
				p += k
				l, k, err := readU32(b[p:])
				if err != nil || uint64(l) > uint64(len(b)-p-k) {
					return nil, false
				}
				p += k + int(l)
			}
		}
		out = append(out, b[start:p]...)
	}
	return out, p == len(b)
}

// sectionOrder is the position a known section must take in a module (the
// data count section sits between element and code).
func sectionOrder(id byte) int {
	if id == secDataCount {
		return 95
	}
	return int(id) * 10
}

func appendSection(dst []byte, id byte, body []byte) []byte {
	dst = append(dst, id)
	dst = appendU32(dst, uint32(len(body)))
	return append(dst, body...)
}

func (m *rewriter) rewriteCode(b []byte) ([]byte, error) {
	n, p, err := readU32(b)
	if err != nil {
		return nil, fmt.Errorf("wasmbin: code section: %w", err)
	}
	out := make([]byte, 0, len(b)+len(b)/4)
	out = appendU32(out, n)
	var body []byte
	for i := uint32(0); i < n; i++ {
		size, k, err := readU32(b[p:])
		if err != nil || uint64(size) > uint64(len(b)-p-k) {
			return nil, fmt.Errorf("wasmbin: code section: function %d: bad size", i)
		}
		p += k
		fn := b[p : p+int(size)]
		p += int(size)
		if body, err = m.rewriteBody(body[:0], fn); err != nil {
			return nil, fmt.Errorf("%w (function %d)", err, i)
		}
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
	}
	if p != len(b) {
		return nil, errors.New("wasmbin: code section: trailing bytes")
	}
	return out, nil
}

func (m *rewriter) rewriteBody(dst, fn []byte) ([]byte, error) {
	n, p, err := readU32(fn) // locals: vec of (count, valtype)
	if err != nil {
		return nil, err
	}
	for i := uint32(0); i < n; i++ {
		k, err := skipLEB(fn[p:], 5)
		if err != nil || p+k >= len(fn) {
			return nil, errMalformed
		}
		p += k + 1
	}
	dst = append(dst, fn[:p]...)
	dst = append(dst, m.check...)
	for p < len(fn) {
		op := fn[p]
		k, err := instrLen(fn[p:])
		if err != nil {
			return nil, err
		}
		switch op {
		case 0x10, 0xd2: // call, ref.func: renumber
			idx, _, _ := readU32(fn[p+1:])
			if m.tainting[idx] {
				if op == 0xd2 {
					m.refuse("code takes a reference to a WASI function that changes the instance outside its memory")
				}
				// i32.const 1, global.set taint
				dst = appendU32(append(dst, 0x41, 0x01, 0x24), m.taint)
			}
			dst = appendU32(append(dst, op), m.fn(idx))
		case 0x26: // table.set
			m.refuse("it changes a table (table.set)")
			dst = append(dst, fn[p:p+k]...)
		case 0xfc:
			switch sub, _, _ := readU32(fn[p+1:]); sub {
			case 8, 9:
				m.refuse("it uses passive data segments (memory.init, data.drop)")
			case 12, 13, 14, 15, 17:
				m.refuse("it changes a table (table.init, elem.drop, table.copy, table.grow, table.fill)")
			}
			dst = append(dst, fn[p:p+k]...)
		default:
			dst = append(dst, fn[p:p+k]...)
		}
		p += k
		if op == 0x03 { // loop: check at the head of every iteration
			dst = append(dst, m.check...)
		}
	}
	return dst, nil
}

// instrLen returns the length of the instruction at b[0], immediates
// included, for the instructions of Wasm 2.0 (what Verge enables).
func instrLen(b []byte) (int, error) {
	op := b[0]
	leb := func(off, max int) (int, error) {
		if off > len(b) {
			return 0, errLEBTruncated
		}
		k, err := skipLEB(b[off:], max)
		return off + k, err
	}
	switch {
	case op == 0x00 || op == 0x01 || op == 0x05 || op == 0x0b || op == 0x0f || op == 0x1a || op == 0x1b:
		return 1, nil
	case op == 0x02 || op == 0x03 || op == 0x04: // block, loop, if: blocktype
		if len(b) < 2 {
			return 0, errLEBTruncated
		}
		if b[1] == 0x40 || (b[1] >= 0x6f && b[1] <= 0x7f) {
			return 2, nil
		}
		return leb(1, 5) // s33 type index
	case op == 0x0c || op == 0x0d || op == 0x10 || op == 0xd2: // br, br_if, call, ref.func
		return leb(1, 5)
	case op == 0x0e: // br_table: vec(label) label
		n, k, err := readU32(b[1:])
		if err != nil {
			return 0, err
		}
		if uint64(n) > uint64(len(b)) {
			return 0, errLEBTruncated
		}
		p := 1 + k
		for i := uint64(0); i <= uint64(n); i++ {
			if p, err = leb(p, 5); err != nil {
				return 0, err
			}
		}
		return p, nil
	case op == 0x11: // call_indirect type table
		p, err := leb(1, 5)
		if err != nil {
			return 0, err
		}
		return leb(p, 5)
	case op == 0x1c: // select t*
		n, k, err := readU32(b[1:])
		if err != nil {
			return 0, err
		}
		if uint64(1+k)+uint64(n) > uint64(len(b)) {
			return 0, errLEBTruncated
		}
		return 1 + k + int(n), nil
	case op >= 0x20 && op <= 0x26: // local.*, global.*, table.get/set
		return leb(1, 5)
	case op >= 0x28 && op <= 0x3e: // loads and stores: memarg
		p, err := leb(1, 5)
		if err != nil {
			return 0, err
		}
		return leb(p, 10)
	case op == 0x3f || op == 0x40: // memory.size/grow: memory index
		return leb(1, 5)
	case op == 0x41:
		return leb(1, 5)
	case op == 0x42:
		return leb(1, 10)
	case op == 0x43:
		if len(b) < 5 {
			return 0, errLEBTruncated
		}
		return 5, nil
	case op == 0x44:
		if len(b) < 9 {
			return 0, errLEBTruncated
		}
		return 9, nil
	case op >= 0x45 && op <= 0xc4: // numeric, no immediates
		return 1, nil
	case op == 0xd0: // ref.null t
		if len(b) < 2 {
			return 0, errLEBTruncated
		}
		return 2, nil
	case op == 0xd1: // ref.is_null
		return 1, nil
	case op == 0xfc:
		sub, k, err := readU32(b[1:])
		if err != nil {
			return 0, err
		}
		p := 1 + k
		switch {
		case sub <= 7: // trunc_sat
			return p, nil
		case sub == 9 || sub == 11 || sub == 13 || sub == 15 || sub == 16 || sub == 17:
			return leb(p, 5)
		case sub == 8 || sub == 10 || sub == 12 || sub == 14:
			if p, err = leb(p, 5); err != nil {
				return 0, err
			}
			return leb(p, 5)
		}
	case op == 0xfd:
		return simdLen(b)
	}
	return 0, fmt.Errorf("%w: %#x", errUnknownOpcode, op)
}

func simdLen(b []byte) (int, error) {
	sub, k, err := readU32(b[1:])
	if err != nil {
		return 0, err
	}
	p := 1 + k
	memarg := func(p int) (int, error) {
		k, err := skipLEB(b[min(p, len(b)):], 5)
		if err != nil {
			return 0, err
		}
		p += k
		k, err = skipLEB(b[min(p, len(b)):], 10)
		return p + k, err
	}
	fixed := func(p, n int) (int, error) {
		if p+n > len(b) {
			return 0, errLEBTruncated
		}
		return p + n, nil
	}
	switch {
	case sub <= 11 || sub == 92 || sub == 93: // loads/stores
		return memarg(p)
	case sub == 12 || sub == 13: // v128.const, i8x16.shuffle
		return fixed(p, 16)
	case sub >= 21 && sub <= 34: // extract/replace lane
		return fixed(p, 1)
	case sub >= 84 && sub <= 91: // load/store lane
		if p, err = memarg(p); err != nil {
			return 0, err
		}
		return fixed(p, 1)
	case sub <= 0x113:
		return p, nil
	}
	return 0, fmt.Errorf("%w: 0xfd %d", errUnknownOpcode, sub)
}
