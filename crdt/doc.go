package crdt

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Op is one operation on a document path. Paths use dots between object keys
// and decimal indexes for array elements ("items.0.qty"); "" is the root.
// Keys that contain a dot cannot be addressed by path. Paths and values must
// be valid UTF-8, and values must not escape lone UTF-16 surrogates ("\ud800"):
// Apply refuses what encoding/json would replace by U+FFFD (see
// CheckJSONText).
//
//	set        Path, Value       write a JSON value (objects and arrays become nested CRDTs)
//	insert     Path, Index, Value insert into the array at Path before visible index Index
//	append     Path, Value       insert at the end of the array at Path
//	prepend    Path, Value       insert at the start of the array at Path
//	remove     Path              delete an object key or an array element
//	increment  Path, Value       add an integer (negative to subtract) to a number;
//	                             a missing object key starts at 0; refused if an
//	                             integer would leave the int64 range
type Op struct {
	Op    string          `json:"op"`
	Path  string          `json:"path"`
	Index *int            `json:"index,omitempty"`
	Value json.RawMessage `json:"value,omitempty"`
}

// MaxElements is the most array elements a document may hold, counting every
// array in it and removed elements that are still kept as tombstones. A
// compact encoding stands for many elements in a few bytes (100,000 appends
// of 0..99,999 take 60 bytes), so the decoders cannot bound what they
// allocate by the input's length; they accept up to MaxElements instead
// (plus as many again for deltas queued in a document), and Apply and Merge
// refuse changes that would go past it, so every state the package produces
// decodes.
const MaxElements = 1 << 19

// Doc is a JSON document CRDT replica. The zero value is the empty document {}.
type Doc struct {
	root    object
	ctx     VersionVector
	clock   int64     // hybrid logical clock: the highest timestamp seen
	pending *[]*Delta // deltas waiting for their causal dependencies; rare, so out of line

	// elems is an upper bound on the array elements in root (tombstones
	// included): raised by every change that adds elements and recounted
	// only when it would pass MaxElements, so the common append is O(1).
	elems int
}

// queue returns the deltas waiting for their causal dependencies.
func (d *Doc) queue() []*Delta {
	if d.pending == nil {
		return nil
	}
	return *d.pending
}

func (d *Doc) setQueue(q []*Delta) {
	if len(q) == 0 {
		d.pending = nil
		return
	}
	if d.pending == nil {
		d.pending = new([]*Delta)
	}
	*d.pending = q
}

// room reserves n more array elements, or explains why the document is full.
func (d *Doc) room(n int) error {
	if n <= MaxElements-d.elems {
		d.elems += n
		return nil
	}
	d.elems = countElems(&d.root)
	if n <= MaxElements-d.elems {
		d.elems += n
		return nil
	}
	return fmt.Errorf("%w: the document would hold %d array elements (removed ones included), more than the maximum of %d; split the data across documents", ErrTooLarge, d.elems+n, MaxElements)
}

// ErrTooLarge is matched (errors.Is) by a change refused because the
// document would pass MaxElements.
var ErrTooLarge = errors.New("document too large")

// countElems counts the array elements under o, losing concurrent values and
// removed elements included: exactly what the encoding writes.
func countElems(o *object) int {
	n := 0
	for _, f := range o.fields {
		for h := f.head; h != nil; h = h.sibling() {
			n += countNodeElems(h)
		}
	}
	return n
}

func countNodeElems(h *node) int {
	switch v := h.val.(type) {
	case *object:
		return countElems(v)
	case *list:
		n := v.len()
		v.each(func(e *elem) bool {
			for m := e.head; m != nil; m = m.sibling() {
				n += countNodeElems(m)
			}
			return true
		})
		return n
	}
	return 0
}

// NewDoc returns an empty document: the JSON object {}.
func NewDoc() *Doc { return &Doc{} }

// Context returns the document's causal context: for each replica, how many
// of its events this replica has applied. It is what a replica acknowledges
// to its peers.
func (d *Doc) Context() VersionVector { return d.ctx.Clone() }

// Clock returns the document's hybrid logical clock (unix nanoseconds).
func (d *Doc) Clock() int64 { return d.clock }

// Pending returns how many received deltas wait for causal predecessors.
func (d *Doc) Pending() int { return len(d.queue()) }

// Value returns the document as plain Go JSON values: map[string]any,
// []any, string, bool, nil, int64 (integers) and float64 (other numbers,
// integers beyond int64 included: see counter.value).
func (d *Doc) Value() any { return nodeValue(&node{val: &d.root}) }

// JSON returns the document as JSON, keys sorted, as encoding/json writes it.
func (d *Doc) JSON() ([]byte, error) { return json.Marshal(d.Value()) }

// Apply runs ops atomically as replica r at physical time now (unix
// nanoseconds): either every op applies, or none does and the error names
// the failing op. It returns the delta to ship to the other replicas.
func (d *Doc) Apply(r ReplicaID, now int64, ops ...Op) (*Delta, error) {
	if len(ops) == 0 {
		return nil, errors.New("apply: no operations")
	}
	ts := d.clock + 1
	if now > d.clock {
		ts = now
	}
	if ts == math.MaxInt64 {
		return nil, errors.New("apply: clock at maximum; physical time is out of range")
	}
	x := &Delta{ts: ts}
	x.root, x.ctx = &x.rootBuf, x.ctxBuf[:0]
	x.rootBuf.fields = x.fieldBuf[:0]
	if len(d.ctx) > 0 {
		x.deps = append(x.depsBuf[:0], d.ctx...)
	}
	a := applier{
		d:     d,
		r:     r,
		ts:    ts,
		seq:   d.ctx.Get(r),
		delta: x,
		undo:  len(ops) > 1,
	}
	for i := range ops {
		if err := a.apply(&ops[i]); err != nil {
			a.rollback()
			return nil, fmt.Errorf("op %d (%s %q): %w", i, ops[i].Op, ops[i].Path, err)
		}
	}
	d.clock = ts
	d.ctx = d.ctx.set(r, a.seq) // every op takes an event, so a.seq > 0
	x.elems = fragElems(x.root)
	return x, nil
}

type applier struct {
	d     *Doc
	r     ReplicaID
	ts    int64
	seq   uint32
	delta *Delta
	undo  bool
	undos []func()
	// freed is the array elements the current set releases by overwriting
	// its slot: the value it writes may reuse that room.
	freed int
}

// reserve makes room for n new array elements.
func (a *applier) reserve(n int) error {
	use := min(n, a.freed)
	a.freed -= use
	return a.d.room(n - use)
}

func (a *applier) rollback() {
	for i := len(a.undos) - 1; i >= 0; i-- {
		a.undos[i]()
	}
}

func (a *applier) next() (Dot, error) {
	if a.seq == math.MaxUint32 {
		return Dot{}, fmt.Errorf("replica %d has used all 2^32-1 events of this document", a.r)
	}
	a.seq++
	d := Dot{a.r, a.seq}
	a.delta.ctx = a.delta.ctx.add(d)
	return d, nil
}

// place is a slot reached by a path: an object key or an array element, with
// its mirror in the delta.
type place struct {
	obj  *object
	key  string
	lst  *list
	el   *elem
	fobj *object   // delta mirror of obj
	flst *fragList // delta mirror of lst
}

func (p *place) head() *node {
	if p.el != nil {
		return p.el.head
	}
	return p.obj.get(p.key)
}

// setHead replaces the slot in the document (nil empties it).
func (a *applier) setHead(p *place, h *node) {
	if p.el != nil {
		el, l := p.el, p.lst
		old, was := el.head, el.head != nil
		el.head = h
		l.setVisible(el, was)
		if a.undo {
			a.undos = append(a.undos, func() { el.head = old; l.setVisible(el, h != nil) })
		}
		return
	}
	if a.undo {
		old, obj, key := p.obj.get(p.key), p.obj, p.key
		a.undos = append(a.undos, func() { obj.put(key, old) })
	}
	p.obj.put(p.key, h)
}

// fragSlot returns a pointer to the slot mirror in the delta, creating it.
func (p *place) fragSlot() **node {
	if p.el != nil {
		i := p.flst.find(p.el.id)
		if i < 0 {
			p.flst.elems = append(p.flst.elems, fragElem{id: p.el.id})
			i = len(p.flst.elems) - 1
		}
		return &p.flst.elems[i].head
	}
	i, ok := p.fobj.find(p.key)
	if !ok {
		p.fobj.fields = append(p.fobj.fields, field{})
		copy(p.fobj.fields[i+1:], p.fobj.fields[i:])
		p.fobj.fields[i] = field{key: p.key}
	}
	return &p.fobj.fields[i].head
}

// fragNode returns the delta mirror of n (a node of the slot at p), adding a
// stub when the delta does not carry it yet.
func (p *place) fragNode(n *node) *node {
	s := p.fragSlot()
	for m := *s; m != nil; m = m.sibling() {
		if m.id == n.id {
			return m
		}
	}
	m := stub(n)
	*s = insertSorted(*s, m)
	return m
}

// resolve walks to the slot named by path (not the root).
func (a *applier) resolve(path string) (place, error) {
	p := place{obj: &a.d.root, fobj: a.delta.root}
	rest, depth := path, 0
	for {
		s, more, found := strings.Cut(rest, ".")
		at := path[:len(path)-len(rest)] // the prefix already walked, for errors
		at = strings.TrimSuffix(at, ".")
		if depth++; depth > maxDepth {
			return place{}, fmt.Errorf("path nests deeper than %d levels", maxDepth)
		}
		if p.obj != nil {
			p.key = s
		} else {
			idx, err := strconv.Atoi(s)
			if err != nil {
				return place{}, fmt.Errorf("%q is an array, %q is not an index into it", at, s)
			}
			if idx < 0 || idx >= p.lst.visible() {
				return place{}, fmt.Errorf("index %d out of range: %q has %d elements", idx, at, p.lst.visible())
			}
			p.el = p.lst.at(idx)
		}
		if !found {
			return p, nil
		}
		walked := path[:len(path)-len(more)-1]
		h := p.head()
		if h == nil {
			return place{}, fmt.Errorf("%q does not exist", walked)
		}
		expand(h)
		switch v := h.val.(type) {
		case *object:
			m := p.fragNode(h)
			expand(m) // a value this Apply wrote: the delta is not shared yet
			p = place{obj: v, fobj: m.val.(*object)}
		case *list:
			m := p.fragNode(h)
			p = place{lst: v, flst: m.val.(*fragList)}
		default:
			return place{}, fmt.Errorf("%q is %s, not an object or array", walked, kindName(h))
		}
		rest = more
	}
}

// array resolves a path that must name an array.
func (a *applier) array(path string) (place, *list, error) {
	if path == "" {
		return place{}, nil, errors.New("the root is an object, not an array")
	}
	p, err := a.resolve(path)
	if err != nil {
		return place{}, nil, err
	}
	h := p.head()
	if h == nil {
		return place{}, nil, errors.New("path does not exist; set it to [] first")
	}
	l, ok := h.val.(*list)
	if !ok {
		return place{}, nil, fmt.Errorf("path points at %s, not an array", kindName(h))
	}
	return p, l, nil
}

func (a *applier) apply(op *Op) error {
	if !utf8.ValidString(op.Path) {
		// keys are stored as given, and a state with invalid UTF-8 in a
		// key would not decode
		return errors.New("path is not valid UTF-8")
	}
	switch op.Op {
	case "set":
		return a.set(op)
	case "insert", "append", "prepend":
		return a.insert(op)
	case "remove":
		return a.remove(op)
	case "increment":
		return a.increment(op)
	case "":
		return errors.New("missing op; want set, insert, append, prepend, remove or increment")
	}
	return errors.New("unknown op; want set, insert, append, prepend, remove or increment")
}

func (a *applier) value(op *Op) (any, error) {
	if len(op.Value) == 0 {
		return nil, fmt.Errorf("%s needs a value", op.Op)
	}
	return parseValue(op.Value)
}

func (a *applier) set(op *Op) error {
	v, err := a.value(op)
	if err != nil {
		return err
	}
	b := builder{a}
	if op.Path == "" {
		m, ok := v.(map[string]any)
		if !ok {
			return errors.New("the root must be an object")
		}
		return a.setRoot(m, b)
	}
	p, err := a.resolve(op.Path)
	if err != nil {
		return err
	}
	id, err := a.next()
	if err != nil {
		return err
	}
	for h := p.head(); h != nil; h = h.sibling() {
		a.freed += countNodeElems(h)
	}
	n, err := b.build(v, id, a.ts, 0)
	a.freed = 0
	if err != nil {
		return err
	}
	a.setHead(&p, n)
	*p.fragSlot() = cloneNode(n)
	return nil
}

func (a *applier) setRoot(m map[string]any, b builder) error {
	root, froot := &a.d.root, a.delta.root
	old := root.fields
	if len(m) == 0 {
		// Like remove, the change needs an event of its own: a delta that
		// creates no event is a duplicate to every receiver, so the keys this
		// replaces would survive everywhere else.
		if _, err := a.next(); err != nil {
			return err
		}
	}
	for _, f := range old {
		*(&place{obj: root, key: f.key, fobj: froot}).fragSlot() = nil
	}
	a.freed = countElems(root)
	defer func() { a.freed = 0 }()
	nr := object{}
	for k, v := range m {
		id, err := a.next()
		if err != nil {
			return err
		}
		n, err := b.build(v, id, a.ts, 0)
		if err != nil {
			return err
		}
		nr.put(k, n)
	}
	for _, f := range nr.fields {
		*(&place{obj: root, key: f.key, fobj: froot}).fragSlot() = cloneNode(f.head)
	}
	root.fields = nr.fields
	if a.undo {
		a.undos = append(a.undos, func() { root.fields = old })
	}
	return nil
}

func (a *applier) insert(op *Op) error {
	v, err := a.value(op)
	if err != nil {
		return err
	}
	p, l, err := a.array(op.Path)
	if err != nil {
		return err
	}
	var left, right *elem // the visible neighbours of the new element
	switch op.Op {
	case "insert":
		if op.Index == nil {
			return errors.New("insert needs an index")
		}
		i := *op.Index
		if i < 0 || i > l.visible() {
			return fmt.Errorf("index %d out of range: the array has %d elements (insert accepts 0..%d)", i, l.visible(), l.visible())
		}
		if i > 0 {
			left = l.at(i - 1)
		}
		right = l.at(i)
	case "append":
		left = l.lastVisible()
	default:
		right = l.at(0)
	}
	if err := a.reserve(1); err != nil {
		return err
	}
	id, err := a.next()
	if err != nil {
		return err
	}
	n, err := builder{a}.build(v, id, 0, 0)
	if err != nil {
		return err
	}
	parent, isLeft := l.localPlace(left, right)
	e := &elem{id: id, head: n}
	l.attach(e, parent, isLeft)
	if a.undo {
		a.undos = append(a.undos, func() { l.detach(e, parent, isLeft) })
	}
	h := p.head()
	fl := p.fragNode(h).val.(*fragList)
	fe := fragElem{id: id, pos: true, isLeft: isLeft, head: cloneNode(n)}
	if parent != nil {
		fe.parent = parent.id
	}
	fl.elems = append(fl.elems, fe)
	return nil
}

func (a *applier) remove(op *Op) error {
	if len(op.Value) != 0 {
		return errors.New("remove takes no value")
	}
	if op.Path == "" {
		return errors.New("cannot remove the root; set it to {} instead")
	}
	p, err := a.resolve(op.Path)
	if err != nil {
		return err
	}
	old := p.head()
	if old == nil {
		return errors.New("path does not exist")
	}
	id, err := a.next()
	if err != nil {
		return err
	}
	a.setHead(&p, nil)
	*p.fragSlot() = nil
	if p.el != nil {
		// The element becomes a tombstone that remembers this event: GC may
		// drop it once the event is stable (see gc.go).
		el := p.el
		if a.undo {
			old := el.rm
			a.undos = append(a.undos, func() { el.rm = old })
		}
		el.rm = el.rm.add(id)
		p.flst.addRemoval(p.flst.find(el.id), id)
	}
	return nil
}

func (a *applier) increment(op *Op) error {
	v, err := a.value(op)
	if err != nil {
		return err
	}
	n, ok := v.(int64)
	if !ok {
		if f, isFloat := v.(float64); isFloat && math.Abs(f) >= 1<<63 {
			return fmt.Errorf("increment needs an integer value from %d to %d", int64(math.MinInt64), int64(math.MaxInt64))
		}
		return errors.New("increment needs an integer value")
	}
	if op.Path == "" {
		return errors.New("the root is an object, increment needs a number")
	}
	p, err := a.resolve(op.Path)
	if err != nil {
		return err
	}
	h := p.head()
	if h != nil {
		if err := checkIncrement(h, a.r, n); err != nil {
			return err
		}
	}
	id, err := a.next()
	if err != nil {
		return err
	}
	if h == nil {
		if p.el != nil {
			return errors.New("internal: empty element")
		}
		c := &counter{base: int64(0), implicit: true}
		c.add(a.r, n)
		nn := newNode(id, a.ts)
		nn.val = c
		a.setHead(&p, nn)
		*p.fragSlot() = cloneNode(nn)
		return nil
	}
	var c *counter
	switch x := h.val.(type) {
	case *counter:
		c = x
		if a.undo {
			saved := c.clone()
			a.undos = append(a.undos, func() { *c = *saved })
		}
	case int64, float64:
		c = &counter{base: x}
		h.val = c
		if a.undo {
			a.undos = append(a.undos, func() { h.val = x })
		}
	default:
		return fmt.Errorf("path points at %s, increment needs a number", kindName(h))
	}
	c.add(a.r, n)
	m := p.fragNode(h)
	fc, ok := m.val.(*counter)
	if !ok {
		fc = &counter{base: m.val}
		m.val = fc
	}
	i, _ := c.entry(a.r)
	fc.join(&counter{ents: []ctrEnt{c.ents[i]}})
	return nil
}

// checkIncrement refuses an increment of n by replica r of the number whose
// slot starts at head when the counter could not keep it exact:
//
//   - an integer would leave the int64 range. The value checked is the one
//     the slot reads as (for implicit counters, the sum of them all), so an
//     increment is refused even if only the sum of several replicas'
//     contributions is out of range. A number already out of range (merged
//     that way, see counter.value) accepts only increments that bring it
//     back in range.
//   - r's running total of increments, or of decrements, would pass 2^64-1:
//     the totals only grow, and a join keeps the larger of two.
//
// Anything that is not a number is left to increment to explain.
func checkIncrement(head *node, r ReplicaID, n int64) error {
	var c *counter
	switch v := head.val.(type) {
	case *counter:
		c = v
	case int64:
		c = &counter{base: v}
	default:
		// a float64 (no counter yet: nothing to overflow; the sum is a
		// float64) or not a number (increment explains)
		return nil
	}
	if i, ok := c.entry(r); ok {
		e := c.ents[i]
		if n >= 0 && e.Inc > math.MaxUint64-uint64(n) || n < 0 && e.Dec > math.MaxUint64-(uint64(-(n+1))+1) {
			return errors.New("this replica's running total of changes to the number would pass 2^64-1; set the number to start a new counter")
		}
	}
	if _, ok := c.base.(float64); ok {
		return nil
	}
	var v int128
	if c.implicit {
		v = implicitSum(head)
	} else {
		b, _ := c.base.(int64)
		v = c.net().addInt(b)
	}
	if w := v.addInt(n); !fits(w) {
		return fmt.Errorf("increment by %d would make the number %v, outside the 64-bit integer range %d..%d", n, w, int64(math.MinInt64), int64(math.MaxInt64))
	}
	return nil
}

func fits(x int128) bool {
	_, ok := x.int64()
	return ok
}
