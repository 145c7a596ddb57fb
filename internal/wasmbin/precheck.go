package wasmbin

import (
	"errors"
	"fmt"
)

// MaxLocals is the most locals Precheck accepts in one function: V8's limit,
// so no module that runs in a browser is refused.
const MaxLocals = 50000

// Precheck rejects modules whose declared counts or lengths cannot be backed
// by the bytes that follow them. wazero v1.12 sizes slices and maps by such
// declarations before reading the entries: a 15-byte module claiming 2^31
// exports keeps CompileModule allocating for minutes. Call Precheck on
// untrusted bytes before compiling them, and report its error instead.
//
// Checked: the header and every section's size; the entry count of every
// section that is a vector; function types (parameter and result counts);
// import and export names; element segment vectors; function bodies and
// their locals (at most MaxLocals per function); data segments; the "name"
// custom section. Type definitions of the GC proposal (rec, sub, struct,
// array) are not looked into. Precheck is not a validator: a module that
// passes can still be rejected by wazero.
func Precheck(wasm []byte) error {
	secs, err := parseSections(wasm)
	if err != nil {
		return err
	}
	for _, s := range secs {
		r := &reader{b: wasm[s.body:s.end]}
		switch s.id {
		case 0:
			r.custom()
		case 1:
			r.types()
		case 2:
			r.imports()
		case 3: // function: type indices
			r.vec(1, func() { r.u32() })
		case 4, 5, 6: // table, memory, global: entries are at least 2 bytes
			r.count(2)
		case 7:
			r.vec(3, func() { r.name(); r.byte(); r.u32() })
		case 9:
			r.vec(3, r.element)
		case 10:
			r.vec(2, r.body)
		case 11:
			if _, err := parseData(r.b); err != nil {
				return err
			}
		case 13: // tag
			r.count(2)
		}
		if r.err != nil {
			return fmt.Errorf("wasmbin: section %d at offset %d: %w", s.id, s.start, r.err)
		}
	}
	return nil
}

var errBeyond = errors.New("declared size exceeds the bytes that follow")

// reader walks a section; the first error sticks and stops all progress.
type reader struct {
	b   []byte
	p   int
	err error
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
		r.p = len(r.b)
	}
}

func (r *reader) left() int { return len(r.b) - r.p }

func (r *reader) byte() byte {
	if r.p >= len(r.b) {
		r.fail(errBeyond)
		return 0
	}
	r.p++
	return r.b[r.p-1]
}

func (r *reader) u32() uint32 {
	v, n, err := readU32(r.b[r.p:])
	if err != nil {
		r.fail(err)
		return 0
	}
	r.p += n
	return v
}

func (r *reader) skip(n uint64) {
	if n > uint64(r.left()) {
		r.fail(errBeyond)
		return
	}
	r.p += int(n)
}

func (r *reader) leb(maxBytes int) {
	n, err := skipLEB(r.b[r.p:], maxBytes)
	if err != nil {
		r.fail(err)
		return
	}
	r.p += n
}

func (r *reader) name() { r.skip(uint64(r.u32())) }

// count reads a vector length and checks that entries of at least minSize
// bytes each fit in what is left.
func (r *reader) count(minSize int) uint32 {
	n := r.u32()
	if uint64(n)*uint64(minSize) > uint64(r.left()) {
		r.fail(fmt.Errorf("vector of %d entries: %w", n, errBeyond))
		return 0
	}
	return n
}

func (r *reader) vec(minSize int, entry func()) {
	for n := r.count(minSize); n > 0 && r.err == nil; n-- {
		entry()
	}
}

func (r *reader) valType() {
	if c := r.byte(); c == 0x63 || c == 0x64 { // (ref null? heaptype)
		r.leb(5)
	}
}

func (r *reader) limits() {
	flags := r.byte()
	r.leb(10)
	if flags&1 != 0 {
		r.leb(10)
	}
}

func (r *reader) constExpr() {
	n, err := skipConstExpr(r.b[r.p:])
	if err != nil {
		r.fail(err)
		return
	}
	r.p += n
}

func (r *reader) types() {
	for n := r.count(3); n > 0 && r.err == nil; n-- {
		if r.p < len(r.b) && r.b[r.p] != 0x60 {
			return // a GC proposal type definition: not looked into
		}
		r.byte()
		r.vec(1, r.valType) // parameters
		r.vec(1, r.valType) // results
	}
}

func (r *reader) imports() {
	r.vec(4, func() {
		r.name()
		r.name()
		switch r.byte() {
		case 0x00: // function
			r.u32()
		case 0x01: // table
			r.valType()
			r.limits()
		case 0x02: // memory
			r.limits()
		case 0x03: // global
			r.valType()
			r.byte()
		case 0x04: // tag
			r.byte()
			r.u32()
		default:
			r.fail(errors.New("unknown import kind"))
		}
	})
}

func (r *reader) element() {
	flags := r.u32()
	if flags > 7 {
		r.fail(fmt.Errorf("unknown element segment flags %d", flags))
		return
	}
	if flags&2 != 0 && flags&1 == 0 {
		r.u32() // table index
	}
	if flags&1 == 0 {
		r.constExpr() // offset
	}
	exprs := flags&4 != 0
	if flags&3 != 0 {
		if exprs {
			r.valType() // reference type
		} else {
			r.byte() // element kind
		}
	}
	if exprs {
		r.vec(2, r.constExpr)
	} else {
		r.vec(1, func() { r.u32() })
	}
}

func (r *reader) body() {
	size := r.u32()
	if uint64(size) > uint64(r.left()) {
		r.fail(fmt.Errorf("function body of %d bytes: %w", size, errBeyond))
		return
	}
	end := r.p + int(size)
	body := &reader{b: r.b[:end], p: r.p}
	var locals uint64
	for n := body.count(2); n > 0 && body.err == nil; n-- {
		locals += uint64(body.u32())
		body.valType()
	}
	if body.err == nil && locals > MaxLocals {
		body.fail(fmt.Errorf("function declares %d locals, more than %d", locals, MaxLocals))
	}
	if body.err != nil {
		r.fail(body.err)
		return
	}
	r.p = end
}

func (r *reader) custom() {
	n := r.u32()
	if uint64(n) > uint64(r.left()) {
		r.fail(errBeyond)
		return
	}
	name := string(r.b[r.p : r.p+int(n)])
	r.p += int(n)
	if name != "name" {
		return
	}
	for r.left() > 0 && r.err == nil {
		id := r.byte()
		size := r.u32()
		if uint64(size) > uint64(r.left()) {
			r.fail(fmt.Errorf("name subsection %d: %w", id, errBeyond))
			return
		}
		sub := &reader{b: r.b[:r.p+int(size)], p: r.p}
		switch id {
		case 1: // function names: index, name
			sub.vec(2, func() { sub.u32(); sub.name() })
		case 2: // local names: index, then a name map
			sub.vec(2, func() {
				sub.u32()
				sub.vec(2, func() { sub.u32(); sub.name() })
			})
		}
		if sub.err != nil {
			r.fail(fmt.Errorf("name subsection %d: %w", id, sub.err))
			return
		}
		r.p += int(size)
	}
}
