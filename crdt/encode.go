package crdt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"
)

// Binary format, version 1. Every encoding starts with 'V', a kind byte and
// a version byte; integers are (zig-zag for signed) LEB128 varints. Lists are
// columnar: runs of consecutive element ids from one replica each following
// the previous one, run-length encoded slot shapes, and a delta + run-length
// encoded column for elements that hold a plain integer. See docs/crdt.md.
const (
	formatVersion = 1

	kindDoc   = 'D'
	kindDelta = 'd'
)

const (
	tNull = iota
	tFalse
	tTrue
	tInt
	tFloat
	tString
	tObject
	tArray
	tCounter
)

// maxExpansion bounds the items (fields, values, runs) that length prefixes
// may announce beyond 8 per input byte. Each such item takes at least one
// byte, but a prefix is allocated before its items are read, so nested
// prefixes could otherwise claim the same bytes many times. Array elements,
// which run-length encoding lets a few bytes stand for, are bounded by
// MaxElements instead.
const maxExpansion = 1 << 18

// ---- writer ----

type writer struct{ b []byte }

func (w *writer) byte(c byte)      { w.b = append(w.b, c) }
func (w *writer) uvarint(v uint64) { w.b = binary.AppendUvarint(w.b, v) }
func (w *writer) varint(v int64)   { w.b = binary.AppendVarint(w.b, v) }
func (w *writer) str(s string)     { w.uvarint(uint64(len(s))); w.b = append(w.b, s...) }
func (w *writer) header(kind byte) { w.b = append(w.b, 'V', kind, formatVersion) }

func (w *writer) vv(v VersionVector) {
	w.uvarint(uint64(len(v)))
	var prev ReplicaID
	for _, e := range v {
		w.uvarint(uint64(e.R - prev))
		w.uvarint(uint64(e.N))
		prev = e.R
	}
}

func (w *writer) dots(s dotSet) {
	w.uvarint(uint64(len(s)))
	for _, r := range s {
		w.uvarint(uint64(r.R))
		w.uvarint(uint64(r.Lo))
		w.uvarint(uint64(r.Hi - r.Lo))
	}
}

func (w *writer) object(o *object) {
	w.uvarint(uint64(len(o.fields)))
	for _, f := range o.fields {
		w.str(f.key)
		w.slot(f.head)
	}
}

func (w *writer) slot(h *node) {
	n := 0
	for m := h; m != nil; m = m.sibling() {
		n++
	}
	w.uvarint(uint64(n))
	for m := h; m != nil; m = m.sibling() {
		w.node(m)
	}
}

func (w *writer) node(n *node) {
	w.uvarint(uint64(n.id.R))
	w.uvarint(uint64(n.id.S))
	w.varint(n.time())
	w.value(n.val)
}

func (w *writer) value(v any) {
	switch x := v.(type) {
	case nil:
		w.byte(tNull)
	case bool:
		if x {
			w.byte(tTrue)
		} else {
			w.byte(tFalse)
		}
	case int64:
		w.byte(tInt)
		w.varint(x)
	case float64:
		w.byte(tFloat)
		w.b = binary.LittleEndian.AppendUint64(w.b, math.Float64bits(x))
	case string:
		w.byte(tString)
		w.str(x)
	case *object:
		w.byte(tObject)
		w.object(x)
	case *packed:
		w.b = append(w.b, x.enc...)
	case *list:
		w.byte(tArray)
		w.frag(x.toFrag())
	case *fragList:
		w.byte(tArray)
		w.frag(x)
	case *counter:
		w.byte(tCounter)
		var flags byte
		if x.implicit {
			flags |= 1
		}
		f, isFloat := x.base.(float64)
		if isFloat {
			flags |= 2
		}
		w.byte(flags)
		if isFloat {
			w.b = binary.LittleEndian.AppendUint64(w.b, math.Float64bits(f))
		} else {
			i, _ := x.base.(int64)
			w.varint(i)
		}
		w.uvarint(uint64(len(x.ents)))
		for _, e := range x.ents {
			w.uvarint(uint64(e.R))
			w.uvarint(e.Inc)
			w.uvarint(e.Dec)
		}
	default:
		panic(fmt.Sprintf("crdt: cannot encode %T", v))
	}
}

const (
	posNone  = 0
	posRoot  = 1
	posLeft  = 2
	posRight = 3

	shapeEmpty   = 0
	shapeInt     = 1
	shapeGeneral = 2
	// An element with remove events (a tombstone, or an element revived by
	// a concurrent write) lists them after its slot in the general section.
	shapeEmptyRm   = 3
	shapeGeneralRm = 4
)

func shapeOf(e *fragElem) byte {
	h := e.head
	switch {
	case h == nil:
		return shapeEmpty
	case h.sibling() == nil && h.id == e.id && h.time() == 0:
		if _, ok := h.val.(int64); ok {
			return shapeInt
		}
	}
	return shapeGeneral
}

func (w *writer) frag(f *fragList) {
	es := f.elems
	w.uvarint(uint64(len(es)))
	// id/position runs
	var runs [][2]int // [start, len]
	for i := 0; i < len(es); {
		j := i + 1
		for j < len(es) && continues(&es[j-1], &es[j]) {
			j++
		}
		runs = append(runs, [2]int{i, j - i})
		i = j
	}
	w.uvarint(uint64(len(runs)))
	for _, r := range runs {
		e := &es[r[0]]
		w.uvarint(uint64(r[1]))
		w.uvarint(uint64(e.id.R))
		w.uvarint(uint64(e.id.S))
		switch {
		case !e.pos:
			w.byte(posNone)
		case e.parent == (Dot{}):
			w.byte(posRoot)
		default:
			if e.isLeft {
				w.byte(posLeft)
			} else {
				w.byte(posRight)
			}
			w.uvarint(uint64(e.parent.R))
			w.uvarint(uint64(e.parent.S))
		}
	}
	// slot shapes, run-length encoded
	shape := make([]byte, len(es))
	for i := range es {
		shape[i] = shapeOf(&es[i])
	}
	for _, r := range f.rm {
		switch shape[r.at] {
		case shapeEmpty:
			shape[r.at] = shapeEmptyRm
		case shapeInt, shapeGeneral:
			shape[r.at] = shapeGeneralRm
		}
	}
	var shapes [][2]uint64
	for i := range es {
		s := uint64(shape[i])
		if n := len(shapes); n > 0 && shapes[n-1][0] == s {
			shapes[n-1][1]++
		} else {
			shapes = append(shapes, [2]uint64{s, 1})
		}
	}
	w.uvarint(uint64(len(shapes)))
	for _, s := range shapes {
		w.byte(byte(s[0]))
		w.uvarint(s[1])
	}
	// integer column: deltas from the previous integer, in blocks that are
	// either one delta repeated (header 2n) or n literal deltas (header 2n+1)
	var deltas []int64
	var prev int64
	for i := range es {
		if shape[i] == shapeInt {
			v := es[i].head.val.(int64)
			deltas = append(deltas, v-prev)
			prev = v
		}
	}
	var blocks int
	var body writer
	for i := 0; i < len(deltas); {
		j := i + 1
		for j < len(deltas) && deltas[j] == deltas[i] {
			j++
		}
		if j-i >= 3 {
			body.uvarint(uint64(j-i) << 1)
			body.varint(deltas[i])
			blocks++
			i = j
			continue
		}
		// literals up to the next run of three
		k := i
		for k < len(deltas) && !(k+2 < len(deltas) && deltas[k] == deltas[k+1] && deltas[k] == deltas[k+2]) {
			k++
		}
		body.uvarint(uint64(k-i)<<1 | 1)
		for _, d := range deltas[i:k] {
			body.varint(d)
		}
		blocks++
		i = k
	}
	w.uvarint(uint64(blocks))
	w.b = append(w.b, body.b...)
	for i := range es {
		switch shape[i] {
		case shapeGeneral:
			w.slot(es[i].head)
		case shapeGeneralRm:
			w.slot(es[i].head)
			w.removals(f, i)
		case shapeEmptyRm:
			w.removals(f, i)
		}
	}
}

func (w *writer) removals(f *fragList, i int) {
	lo, hi := f.rmRange(i)
	w.uvarint(uint64(hi - lo))
	for _, r := range f.rm[lo:hi] {
		w.uvarint(uint64(r.d.R))
		w.uvarint(uint64(r.d.S))
	}
}

// continues reports whether b extends a's run: same replica, next event, and
// either both without position or b the right child of a.
func continues(a, b *fragElem) bool {
	if b.id.R != a.id.R || b.id.S != a.id.S+1 || a.id.S == math.MaxUint32 {
		return false
	}
	if !a.pos {
		return !b.pos
	}
	return b.pos && !b.isLeft && b.parent == a.id
}

// ---- reader ----

type reader struct {
	b      []byte
	off    int
	err    error
	budget int
	elems  int // array elements still allowed (MaxElements in all)
}

func newReader(b []byte) *reader {
	return &reader{b: b, budget: maxExpansion + 8*len(b), elems: MaxElements}
}

func (r *reader) fail(format string, args ...any) {
	r.failWith(nil, format, args...)
}

// failWith is fail for an error that matches cause (errors.Is); the message
// is the same as fail's.
func (r *reader) failWith(cause error, format string, args ...any) {
	if r.err == nil {
		r.err = &decodeError{fmt.Sprintf("at byte %d: %s", r.off, fmt.Sprintf(format, args...)), cause}
	}
}

// decodeError is a decoder's error, with the sentinel or inner error it
// wraps, if any.
type decodeError struct {
	msg   string
	cause error
}

func (e *decodeError) Error() string { return e.msg }
func (e *decodeError) Unwrap() error { return e.cause }

// ErrExpansion is matched (errors.Is) by a decode refused because its input
// expands to more items than the decoder accepts for its length: run-length
// encoded elements and tombstones of removed elements take a few bytes for
// many items. A document that Apply accepted can still be refused on read
// this way when it holds many removed elements not yet collected by GC.
var ErrExpansion = errors.New("input expands past the decoder's bound")

func (r *reader) left() int { return len(r.b) - r.off }

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if r.off >= len(r.b) {
		r.fail("unexpected end of input")
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 || (n > 1 && r.b[r.off+n-1] == 0) {
		r.fail("bad or overlong varint")
		return 0
	}
	r.off += n
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b[r.off:])
	if n <= 0 || (n > 1 && r.b[r.off+n-1] == 0) {
		r.fail("bad or overlong varint")
		return 0
	}
	r.off += n
	return v
}

func (r *reader) u32(what string) uint32 {
	v := r.uvarint()
	if v > math.MaxUint32 {
		r.fail("%s %d does not fit 32 bits", what, v)
		return 0
	}
	return uint32(v)
}

// count reads a length prefix for items that each take at least one byte.
func (r *reader) count(what string) int {
	v := r.uvarint()
	if r.err == nil && v > uint64(r.left()) {
		r.fail("%s count %d exceeds the %d bytes left", what, v, r.left())
		return 0
	}
	if !r.spend(v) {
		return 0
	}
	return int(v)
}

// spend charges n materialised items to the decode budget.
func (r *reader) spend(n uint64) bool {
	if r.err != nil {
		return false
	}
	if n > uint64(r.budget) {
		r.failWith(ErrExpansion, "input expands to more than %d items; refusing to decode", maxExpansion+8*len(r.b))
		return false
	}
	r.budget -= int(n)
	return true
}

func (r *reader) str() string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > uint64(r.left()) {
		r.fail("string length %d exceeds the %d bytes left", n, r.left())
		return ""
	}
	s := string(r.b[r.off : r.off+int(n)])
	r.off += int(n)
	if !utf8.ValidString(s) {
		r.fail("string is not valid UTF-8")
	}
	return s
}

func (r *reader) float() float64 {
	if r.err != nil {
		return 0
	}
	if r.left() < 8 {
		r.fail("unexpected end of input")
		return 0
	}
	f := math.Float64frombits(binary.LittleEndian.Uint64(r.b[r.off:]))
	r.off += 8
	if math.IsNaN(f) || math.IsInf(f, 0) {
		r.fail("number is NaN or infinite")
	}
	return f
}

func (r *reader) header(kind byte, what string) {
	if len(r.b) < 3 || r.b[0] != 'V' || r.b[1] != kind {
		r.fail("not a Verge %s encoding", what)
		return
	}
	if r.b[2] != formatVersion {
		r.fail("%s format version %d is not supported (this build reads version %d); upgrade the reader", what, r.b[2], formatVersion)
		return
	}
	r.off = 3
}

func (r *reader) end(what string) {
	if r.err == nil && r.off != len(r.b) {
		r.fail("%d trailing bytes after the %s", len(r.b)-r.off, what)
	}
}

func (r *reader) replica(prev ReplicaID, first bool) ReplicaID {
	d := r.uvarint()
	v := uint64(prev) + d
	if r.err == nil && (v > math.MaxUint32 || (!first && d == 0)) {
		r.fail("replica ids not strictly increasing")
	}
	return ReplicaID(v)
}

func (r *reader) vv() VersionVector {
	n := r.count("version vector")
	if n == 0 {
		return nil
	}
	v := make(VersionVector, 0, n)
	var prev ReplicaID
	for i := 0; i < n && r.err == nil; i++ {
		id := r.replica(prev, i == 0)
		c := r.u32("event count")
		if c == 0 {
			r.fail("version vector entry with zero events")
		}
		v = append(v, VVEntry{id, c})
		prev = id
	}
	return v
}

func (r *reader) dots() dotSet {
	n := r.count("event ranges")
	s := make(dotSet, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		id := ReplicaID(r.u32("replica"))
		lo := r.u32("event")
		span := r.u32("event span")
		if lo == 0 || uint64(lo)+uint64(span) > math.MaxUint32 {
			r.fail("bad event range %d:%d+%d", id, lo, span)
			break
		}
		dr := dotRange{id, lo, lo + span}
		if k := len(s); k > 0 {
			p := s[k-1]
			if p.R > id || (p.R == id && uint64(p.Hi)+1 >= uint64(lo)) {
				r.fail("event ranges not sorted and disjoint")
				break
			}
		}
		s = append(s, dr)
	}
	return s
}

func (r *reader) object(depth int) *object {
	if depth > maxDepth {
		r.fail("nesting deeper than %d levels", maxDepth)
		return nil
	}
	n := r.count("object field")
	o := &object{fields: make([]field, 0, n)}
	for i := 0; i < n && r.err == nil; i++ {
		k := r.str()
		if i > 0 && r.err == nil && k <= o.fields[i-1].key {
			r.fail("object keys not sorted and unique at %q", k)
		}
		o.fields = append(o.fields, field{k, r.slot(depth)})
	}
	return o
}

func (r *reader) slot(depth int) *node {
	n := r.count("slot value")
	var head, tail *node
	for i := 0; i < n && r.err == nil; i++ {
		m := r.node(depth)
		if r.err != nil {
			break
		}
		// canonical order: winner first, no duplicates
		if tail != nil && (!beats(tail, m) || tail.id == m.id) {
			r.fail("slot values not in canonical order")
			break
		}
		if head == nil {
			head = m
		} else {
			tail.setSib(m)
		}
		tail = m
	}
	return head
}

func (r *reader) node(depth int) *node {
	n := &node{}
	n.id.R = ReplicaID(r.u32("replica"))
	n.id.S = r.u32("event")
	n.setTime(r.varint())
	if r.err == nil && n.id.S == 0 {
		r.fail("value with event number 0")
	}
	n.val = r.value(depth)
	return n
}

func (r *reader) value(depth int) any {
	switch t := r.byte(); t {
	case tNull:
		return nil
	case tFalse:
		return false
	case tTrue:
		return true
	case tInt:
		return r.varint()
	case tFloat:
		return r.float()
	case tString:
		return r.str()
	case tObject:
		return r.object(depth + 1)
	case tArray:
		return r.frag(depth + 1)
	case tCounter:
		flags := r.byte()
		if flags > 3 {
			r.fail("unknown counter flags %#x", flags)
			return nil
		}
		c := &counter{implicit: flags&1 != 0}
		if flags&2 != 0 {
			c.base = r.float()
		} else {
			c.base = r.varint()
		}
		n := r.count("counter entry")
		c.ents = make([]ctrEnt, 0, n)
		for i := 0; i < n && r.err == nil; i++ {
			e := ctrEnt{R: ReplicaID(r.u32("replica")), Inc: r.uvarint(), Dec: r.uvarint()}
			if i > 0 && e.R <= c.ents[i-1].R {
				r.fail("counter entries not sorted by replica")
			}
			c.ents = append(c.ents, e)
		}
		return c
	default:
		if r.err == nil {
			r.off--
			r.fail("unknown value type %d", t)
		}
		return nil
	}
}

func (r *reader) frag(depth int) *fragList {
	if depth > maxDepth {
		r.fail("nesting deeper than %d levels", maxDepth)
		return nil
	}
	total := r.uvarint()
	if r.err == nil && total > uint64(r.elems) {
		r.fail("arrays hold more than %d elements, the most a document may have (MaxElements)", MaxElements)
	}
	if r.err != nil {
		return nil
	}
	r.elems -= int(total)
	f := &fragList{}
	nruns := r.count("element run")
	var got uint64
	for i := 0; i < nruns && r.err == nil; i++ {
		n := r.uvarint()
		id := Dot{ReplicaID(r.u32("replica")), r.u32("event")}
		pos := r.byte()
		var parent Dot
		if pos == posLeft || pos == posRight {
			parent = Dot{ReplicaID(r.u32("replica")), r.u32("event")}
			if parent.S == 0 && r.err == nil {
				r.fail("array element parent with event number 0")
			}
		} else if pos > posRight {
			r.fail("unknown element position kind %d", pos)
		}
		if r.err != nil {
			break
		}
		if n == 0 || n > total-got || id.S == 0 || uint64(id.S)+n-1 > math.MaxUint32 {
			r.fail("bad element run of %d from %v (%d of %d elements read)", n, id, got, total)
			break
		}
		if f.elems == nil {
			f.elems = make([]fragElem, 0, total)
		}
		for k := uint64(0); k < n; k++ {
			e := fragElem{id: Dot{id.R, id.S + uint32(k)}, pos: pos != posNone}
			if k == 0 {
				e.parent, e.isLeft = parent, pos == posLeft
			} else if e.pos {
				e.parent = Dot{id.R, id.S + uint32(k) - 1}
			}
			f.elems = append(f.elems, e)
		}
		got += n
	}
	if r.err == nil && got != total {
		r.fail("element runs cover %d of %d elements", got, total)
	}
	if r.err != nil {
		return nil
	}
	shapes := make([]byte, 0, total)
	nshapes := r.count("shape run")
	nInts := 0
	for i := 0; i < nshapes && r.err == nil; i++ {
		s := r.byte()
		n := r.uvarint()
		if s > shapeGeneralRm || n == 0 || n > total-uint64(len(shapes)) {
			r.fail("bad shape run (%d × %d)", s, n)
			break
		}
		if s == shapeInt {
			nInts += int(n)
		}
		for k := uint64(0); k < n; k++ {
			shapes = append(shapes, s)
		}
	}
	if r.err == nil && uint64(len(shapes)) != total {
		r.fail("shape runs cover %d of %d elements", len(shapes), total)
	}
	nBlocks := r.count("integer block")
	ints := make([]int64, 0, nInts)
	var prev int64
	for i := 0; i < nBlocks && r.err == nil; i++ {
		h := r.uvarint()
		n := h >> 1
		if n == 0 || n > uint64(nInts-len(ints)) {
			r.fail("bad integer block of %d", n)
			break
		}
		if h&1 == 0 {
			d := r.varint()
			for k := uint64(0); k < n; k++ {
				prev += d
				ints = append(ints, prev)
			}
			continue
		}
		for k := uint64(0); k < n && r.err == nil; k++ {
			prev += r.varint()
			ints = append(ints, prev)
		}
	}
	if r.err == nil && len(ints) != nInts {
		r.fail("integer runs cover %d of %d values", len(ints), nInts)
	}
	if r.err != nil {
		return nil
	}
	k := 0
	for i := range f.elems {
		e := &f.elems[i]
		switch shapes[i] {
		case shapeInt:
			e.head = &node{id: e.id, val: ints[k]}
			k++
		case shapeGeneral, shapeGeneralRm:
			e.head = r.slot(depth)
			if e.head == nil && r.err == nil {
				r.fail("general slot with no value")
			}
		}
		if shapes[i] == shapeEmptyRm || shapes[i] == shapeGeneralRm {
			f.rm = r.removals(f.rm, i)
		}
		if r.err != nil {
			return nil
		}
	}
	return f
}

// removals reads the remove events of element at (at least one, sorted)
// and appends them to rm.
func (r *reader) removals(rm []fragRm, at int) []fragRm {
	n := r.count("removal")
	if r.err == nil && n == 0 {
		r.fail("element with an empty removal list")
	}
	for i := 0; i < n && r.err == nil; i++ {
		d := Dot{ReplicaID(r.u32("replica")), r.u32("event")}
		if r.err == nil && (d.S == 0 || (i > 0 && !rm[len(rm)-1].d.less(d))) {
			r.fail("removals not sorted or with event number 0")
		}
		rm = append(rm, fragRm{at, d})
	}
	return rm
}

// ---- documents and deltas ----

// MarshalBinary encodes the document, including deltas still waiting for
// their causal predecessors. Two replicas that applied the same deltas
// produce identical bytes.
func (d *Doc) MarshalBinary() ([]byte, error) {
	w := &writer{}
	w.header(kindDoc)
	w.varint(d.clock)
	w.vv(d.ctx)
	w.object(&d.root)
	q := d.queue()
	w.uvarint(uint64(len(q)))
	for _, p := range q {
		b, _ := p.MarshalBinary()
		w.uvarint(uint64(len(b)))
		w.b = append(w.b, b...)
	}
	return w.b, nil
}

// DecodeDoc decodes a document encoded by MarshalBinary. It never panics on
// hostile input and allocates at most in proportion to len(b) (plus a fixed
// allowance for run-length encoded lists).
func DecodeDoc(b []byte) (*Doc, error) {
	r := newReader(b)
	r.header(kindDoc, "document")
	d := &Doc{}
	d.clock = r.varint()
	d.ctx = r.vv()
	root := r.object(0)
	d.elems = MaxElements - r.elems
	queued := MaxElements // shared by all queued deltas; see Doc.ready
	n := r.count("pending delta")
	var q []*Delta
	for i := 0; i < n && r.err == nil; i++ {
		l := r.uvarint()
		if r.err == nil && l > uint64(r.left()) {
			r.fail("pending delta length %d exceeds the %d bytes left", l, r.left())
		}
		if r.err != nil {
			break
		}
		x, err := decodeDelta(r.b[r.off:r.off+int(l)], queued)
		if err != nil {
			r.failWith(err, "pending delta %d: %v", i, err)
			break
		}
		queued -= x.elems
		r.off += int(l)
		q = append(q, x)
	}
	r.end("document")
	if r.err != nil {
		return nil, fmt.Errorf("decode document: %w", r.err)
	}
	d.setQueue(q)
	for _, f := range root.fields {
		if f.head == nil {
			return nil, fmt.Errorf("decode document: key %q has no value", f.key)
		}
	}
	c := checker{d: &Doc{}}
	rootNode := &node{val: root}
	if err := c.fresh(rootNode, 0); err != nil {
		return nil, fmt.Errorf("decode document: %w", err)
	}
	if id, ok := outside(root, d.ctx); !ok {
		return nil, fmt.Errorf("decode document: value %v is not in the document's context %v", id, d.ctx)
	}
	d.root = *materialize(rootNode).val.(*object)
	return d, nil
}

// outside finds a value or element id the context does not include: such a
// state could later reuse an event for two different values.
func outside(o *object, ctx VersionVector) (Dot, bool) {
	for _, f := range o.fields {
		for n := f.head; n != nil; n = n.sibling() {
			if id, ok := outsideNode(n, ctx); !ok {
				return id, false
			}
		}
	}
	return Dot{}, true
}

func outsideNode(n *node, ctx VersionVector) (Dot, bool) {
	if !ctx.Contains(n.id) {
		return n.id, false
	}
	switch v := n.val.(type) {
	case *object:
		return outside(v, ctx)
	case *fragList:
		for _, rm := range v.rm {
			if !ctx.Contains(rm.d) {
				return rm.d, false
			}
		}
		for _, e := range v.elems {
			if !ctx.Contains(e.id) {
				return e.id, false
			}
			for m := e.head; m != nil; m = m.sibling() {
				if id, ok := outsideNode(m, ctx); !ok {
					return id, false
				}
			}
		}
	}
	return Dot{}, true
}

// MarshalBinary encodes the delta.
func (x *Delta) MarshalBinary() ([]byte, error) {
	w := &writer{}
	w.header(kindDelta)
	var flags byte
	if x.full {
		flags |= 1
	}
	w.byte(flags)
	w.varint(x.ts)
	w.vv(x.deps)
	w.dots(x.ctx)
	w.object(x.root)
	return w.b, nil
}

// DecodeDelta decodes a delta encoded by MarshalBinary; see DecodeDoc for
// the guarantees on hostile input. Consistency with a document is checked
// by Doc.Merge.
func DecodeDelta(b []byte) (*Delta, error) { return decodeDelta(b, MaxElements) }

// decodeDelta decodes a delta of at most elems array elements and records
// how many it holds.
func decodeDelta(b []byte, elems int) (*Delta, error) {
	r := newReader(b)
	r.elems = elems
	r.header(kindDelta, "delta")
	x := &Delta{}
	flags := r.byte()
	if r.err == nil && flags > 1 {
		r.fail("unknown delta flags %#x", flags)
	}
	x.full = flags&1 != 0
	x.ts = r.varint()
	x.deps = r.vv()
	x.ctx = r.dots()
	x.root = r.object(0)
	r.end("delta")
	if r.err != nil {
		return nil, fmt.Errorf("decode delta: %w", r.err)
	}
	if x.full && len(x.deps) != 0 {
		return nil, errors.New("decode delta: a full state cannot have dependencies")
	}
	x.elems = elems - r.elems
	return x, nil
}
