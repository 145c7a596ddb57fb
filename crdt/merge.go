package crdt

import (
	"errors"
	"fmt"
)

// Delta is a join-able fragment of document state: the values an Apply
// created plus the path of value ids down to them, the events it creates
// and the events it depends on (the origin's context before the change). A full snapshot of a document
// (Doc.Snapshot) is a Delta too. Deltas are immutable once built; one Delta
// may be merged into any number of documents.
type Delta struct {
	ts   int64
	deps VersionVector // the origin's context before the change: must be applied first
	ctx  dotSet        // events created (a full state: every event it has seen)
	root *object
	full bool // a whole state: values absent from it that its context covers were removed

	elems int // array elements in root as encoded (0 for snapshots, which never wait)

	// storage for the common single-op delta, saving allocations on Apply
	rootBuf  object
	fieldBuf [1]field
	ctxBuf   [1]dotRange
	depsBuf  [4]VVEntry
}

// Deps returns the causal dependencies of the delta.
func (x *Delta) Deps() VersionVector { return x.deps.Clone() }

// Full reports whether the delta is a whole document state.
func (x *Delta) Full() bool { return x.full }

// EventRange is the events From..To (inclusive) of replica R.
type EventRange struct {
	R        ReplicaID
	From, To uint32
}

// Events returns the events the delta creates (those in its context and not
// in its dependencies), one range per replica for an Apply delta. A replica
// acknowledges a delta by these; its Context covers them once merged.
func (x *Delta) Events() []EventRange {
	var out []EventRange
	for _, r := range x.ctx.beyond(x.deps) {
		out = append(out, EventRange{r.R, r.Lo, r.Hi})
	}
	return out
}

// Snapshot returns the whole document as a Delta (without pending deltas).
// Merging it into any replica of the document is a state-based join.
func (d *Doc) Snapshot() *Delta {
	root := cloneNode(&node{val: &d.root}).val.(*object)
	return &Delta{ts: d.clock, ctx: vvToDotSet(d.ctx), root: root, full: true}
}

// Merge joins a delta (or a snapshot) received from another replica. Merge
// is commutative, associative and idempotent. A delta whose causal
// dependencies have not been applied yet is kept (and encoded with the
// document) until they have; deltas may therefore arrive in any order, be
// duplicated, or be merged again after a snapshot that contains them.
// An error means the delta is malformed and the document is unchanged, except
// for errors that name a queued delta: that one was dropped, x was applied.
func (d *Doc) Merge(x *Delta) error {
	if x == nil || x.root == nil {
		return errors.New("merge: nil delta")
	}
	ready, err := d.ready(x)
	if err != nil || !ready {
		return err
	}
	if x.ctx.within(d.ctx) {
		return nil
	}
	if err := d.merge(x); err != nil {
		return err
	}
	if d.pending == nil {
		return nil
	}
	return d.drainPending()
}

// ready decides whether x can be joined now; if not it is queued.
func (d *Doc) ready(x *Delta) (bool, error) {
	if d.ctx.Covers(x.deps) {
		return true, nil
	}
	if x.ctx.within(d.ctx) {
		return false, nil
	}
	q := d.queue()
	for _, p := range q {
		if samePending(p, x) {
			return false, nil
		}
	}
	if len(q) >= maxPending {
		return false, fmt.Errorf("merge: %d deltas already wait for missing predecessors %v; send a snapshot instead", len(q), x.deps)
	}
	// Queued deltas are encoded with the document, and DecodeDoc accepts
	// MaxElements array elements across all of them.
	queued := 0
	for _, p := range q {
		queued += p.elems
	}
	if x.elems > MaxElements-queued {
		return false, fmt.Errorf("merge: deltas waiting for missing predecessors %v would hold more than %d array elements; send a snapshot instead", x.deps, MaxElements)
	}
	d.setQueue(append(q, x))
	return false, nil
}

// maxPending bounds the queue of out-of-order deltas per document; past it
// the sender must repair with a snapshot.
const maxPending = 4096

func samePending(a, b *Delta) bool {
	if len(a.ctx) != len(b.ctx) || !a.deps.Equal(b.deps) {
		return false
	}
	for i := range a.ctx {
		if a.ctx[i] != b.ctx[i] {
			return false
		}
	}
	return true
}

func (d *Doc) drainPending() error {
	var errs []error
	for progress := true; progress; {
		progress = false
		q := d.queue()
		kept := q[:0]
		for _, p := range q {
			switch {
			case p.ctx.within(d.ctx):
				progress = true
			case d.ctx.Covers(p.deps):
				progress = true
				if err := d.merge(p); err != nil {
					errs = append(errs, fmt.Errorf("dropped a queued delta: %w", err))
				}
			default:
				kept = append(kept, p)
			}
		}
		clear(q[len(kept):])
		d.setQueue(kept)
	}
	return errors.Join(errs...)
}

func (d *Doc) merge(x *Delta) error {
	if err := d.check(x); err != nil {
		return fmt.Errorf("merge: %w", err)
	}
	j := joiner{d: d, x: x}
	j.object(&d.root, x.root)
	for _, r := range x.ctx {
		if r.Hi > d.ctx.Get(r.R) {
			d.ctx = d.ctx.set(r.R, r.Hi)
		}
	}
	d.clock = max(d.clock, x.ts)
	return nil
}

// ---- validation: everything that could make a join fail or diverge ----

func (d *Doc) check(x *Delta) error {
	for _, r := range x.ctx {
		if n := d.ctx.Get(r.R); r.Hi > n && r.Lo > n+1 {
			return fmt.Errorf("delta events %d:%d..%d leave a gap after %d:%d", r.R, r.Lo, r.Hi, r.R, n)
		}
	}
	c := checker{d: d, x: x}
	if err := c.object(&d.root, x.root, 0); err != nil {
		return err
	}
	return d.room(c.added)
}

type checker struct {
	d     *Doc
	x     *Delta // nil when checking a decoded document
	added int    // array elements the join would add
}

func (c *checker) object(so, fo *object, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("delta nests deeper than %d levels", maxDepth)
	}
	for _, f := range fo.fields {
		var sh *node
		if so != nil {
			sh = so.get(f.key)
		}
		if err := c.slot(sh, f.head, depth); err != nil {
			return fmt.Errorf("%q: %w", f.key, err)
		}
	}
	return nil
}

func findID(head *node, id Dot) *node {
	for n := head; n != nil; n = n.sibling() {
		if n.id == id {
			return n
		}
	}
	return nil
}

func (c *checker) slot(sh, fh *node, depth int) error {
	for m := fh; m != nil; m = m.sibling() {
		if m.sibling() != nil && findID(m.sibling(), m.id) != nil {
			return fmt.Errorf("value %v appears twice in one slot", m.id)
		}
		if s := findID(sh, m.id); s != nil {
			if err := c.node(s, m, depth); err != nil {
				return err
			}
			continue
		}
		if c.d.ctx.Contains(m.id) {
			continue // removed here already; the join drops it
		}
		if err := c.fresh(m, depth); err != nil {
			return err
		}
	}
	return nil
}

func isNumber(v any) bool {
	switch v.(type) {
	case int64, float64, *counter:
		return true
	}
	return false
}

func (c *checker) node(s, m *node, depth int) error {
	expand(s) // the join edits inside it; an expanded value reads and encodes the same
	switch sv := s.val.(type) {
	case *object:
		mo, ok := objOf(m)
		if !ok {
			return fmt.Errorf("value %v is an object here and %s in the delta", s.id, kindName(m))
		}
		return c.object(sv, mo, depth+1)
	case *list:
		ml, ok := m.val.(*fragList)
		if !ok {
			return fmt.Errorf("value %v is an array here and %s in the delta", s.id, kindName(m))
		}
		return c.list(sv, ml, depth+1)
	case int64, float64, *counter:
		if !isNumber(m.val) {
			return fmt.Errorf("value %v is a number here and %s in the delta", s.id, kindName(m))
		}
	default:
		if kindName(s) != kindName(m) {
			return fmt.Errorf("value %v is %s here and %s in the delta", s.id, kindName(s), kindName(m))
		}
	}
	return nil
}

// fresh checks a value the document has never seen: it must be complete.
func (c *checker) fresh(m *node, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("delta nests deeper than %d levels", maxDepth)
	}
	switch v := m.val.(type) {
	case *object:
		for _, f := range v.fields {
			for n := f.head; n != nil; n = n.sibling() {
				if err := c.fresh(n, depth+1); err != nil {
					return err
				}
			}
		}
	case *fragList:
		return c.list(nil, v, depth+1)
	case *list:
		return errors.New("internal: live list in a delta")
	}
	return nil
}

func (c *checker) list(l *list, f *fragList, depth int) error {
	for k, r := range f.rm {
		if r.at < 0 || r.at >= len(f.elems) || r.d.S == 0 || (k > 0 && cmpFragRm(f.rm[k-1], r) >= 0) {
			return errors.New("array removals not sorted by element and event")
		}
		// a delta only names removals its sender had applied
		if c.x != nil && !c.x.ctx.contains(r.d) && !c.x.deps.Contains(r.d) {
			return fmt.Errorf("array element %v removed by event %v that the delta does not include", f.elems[r.at].id, r.d)
		}
	}
	var added map[Dot]bool // new elements so far; nil lookups are fine
	if len(f.elems) > 1 {
		added = make(map[Dot]bool, len(f.elems))
	}
	for i := range f.elems {
		fe := &f.elems[i]
		var se *elem
		if l != nil {
			se = l.find(fe.id)
			if se == nil && c.d.ctx.Contains(fe.id) {
				continue // collected here (GC); the join skips it too
			}
		}
		if se != nil || added[fe.id] {
			if added[fe.id] {
				return fmt.Errorf("array element %v appears twice", fe.id)
			}
			if err := c.slot(se.head, fe.head, depth); err != nil {
				return err
			}
			continue
		}
		if !fe.pos {
			return fmt.Errorf("delta edits array element %v that this document does not have", fe.id)
		}
		if fe.parent == (Dot{}) {
			if fe.isLeft {
				return fmt.Errorf("array element %v is a left child of the root", fe.id)
			}
		} else if !added[fe.parent] && (l == nil || l.find(fe.parent) == nil) {
			return fmt.Errorf("array element %v follows element %v that this document does not have", fe.id, fe.parent)
		}
		if fe.id == (Dot{}) {
			return errors.New("array element with a zero id")
		}
		if added != nil {
			added[fe.id] = true
		}
		c.added++
		for n := fe.head; n != nil; n = n.sibling() {
			if n.sibling() != nil && findID(n.sibling(), n.id) != nil {
				return fmt.Errorf("value %v appears twice in one slot", n.id)
			}
			if err := c.fresh(n, depth); err != nil {
				return err
			}
		}
	}
	return nil
}

// ---- join ----

type joiner struct {
	d *Doc
	x *Delta
}

func (j *joiner) object(so, fo *object) {
	if !j.x.full {
		for _, f := range fo.fields {
			so.put(f.key, j.slot(so.get(f.key), f.head))
		}
		return
	}
	// A whole state: also drop what it removed from keys it no longer has.
	out := make([]field, 0, max(len(so.fields), len(fo.fields)))
	i, k := 0, 0
	for i < len(so.fields) || k < len(fo.fields) {
		var key string
		var sh, fh *node
		switch {
		case k == len(fo.fields) || (i < len(so.fields) && so.fields[i].key < fo.fields[k].key):
			key, sh = so.fields[i].key, so.fields[i].head
			i++
		case i == len(so.fields) || fo.fields[k].key < so.fields[i].key:
			key, fh = fo.fields[k].key, fo.fields[k].head
			k++
		default:
			key, sh, fh = so.fields[i].key, so.fields[i].head, fo.fields[k].head
			i++
			k++
		}
		if h := j.slot(sh, fh); h != nil {
			out = append(out, field{key, h})
		}
	}
	so.fields = out
}

// slot joins the values of one slot: a value survives if both sides have
// it, or one side has it and the other has not seen it. A delta that writes
// or empties a slot (it carries a new value, or none) has seen every value
// its dependencies include: those are overwritten, observed-remove style.
// A delta that only passes through a slot (to edit inside a value, or to
// increment it) carries its values as stubs and overwrites nothing.
func (j *joiner) slot(sh, fh *node) *node {
	reset := fh == nil
	for m := fh; m != nil && !reset; m = m.sibling() {
		reset = !j.x.deps.Contains(m.id)
	}
	var out *node
	for n := sh; n != nil; {
		next := n.sibling()
		n.setSib(nil)
		if m := findID(fh, n.id); m != nil {
			j.node(n, m)
			out = insertSorted(out, n)
		} else if !j.x.ctx.contains(n.id) && !(reset && j.x.deps.Contains(n.id)) {
			out = insertSorted(out, n)
		}
		n = next
	}
	for m := fh; m != nil; m = m.sibling() {
		// values the state had are in out already (both sides had them)
		if findID(out, m.id) == nil && !j.d.ctx.Contains(m.id) {
			out = insertSorted(out, materialize(m))
		}
	}
	return out
}

func (j *joiner) node(n, m *node) {
	switch v := n.val.(type) {
	case *object:
		mo, _ := objOf(m)
		j.object(v, mo)
	case *list:
		j.list(v, m.val.(*fragList))
	case *counter:
		if mc, ok := m.val.(*counter); ok {
			v.join(mc)
		}
	case int64, float64:
		if mc, ok := m.val.(*counter); ok {
			c := &counter{base: v}
			c.join(mc)
			n.val = c
		}
	}
}

func (j *joiner) list(l *list, f *fragList) {
	k := 0 // cursor in f.rm
	for i := range f.elems {
		fe := &f.elems[i]
		if se := l.find(fe.id); se != nil {
			was := se.head != nil
			se.head = j.slot(se.head, fe.head)
			l.setVisible(se, was)
			k = l.addRemovals(se, f, i, k)
			continue
		}
		if j.d.ctx.Contains(fe.id) {
			// Applied here and absent: GC collected it, with its subtree,
			// once no event could refer to it; a lagging sender still has it.
			continue
		}
		e := &elem{id: fe.id}
		var parent *elem
		if fe.parent != (Dot{}) {
			parent = l.find(fe.parent)
		}
		for m := fe.head; m != nil; m = m.sibling() {
			if !j.d.ctx.Contains(m.id) {
				e.head = insertSorted(e.head, materialize(m))
			}
		}
		l.attach(e, parent, fe.isLeft)
		k = l.addRemovals(e, f, i, k)
	}
}

// materialize copies a delta value into document form (arrays become lists).
// It never aliases the delta, which may be merged into other documents.
func materialize(m *node) *node {
	n := newNode(m.id, m.time())
	switch v := m.val.(type) {
	case *object:
		o := &object{fields: make([]field, 0, len(v.fields))}
		for _, f := range v.fields {
			var h *node
			for c := f.head; c != nil; c = c.sibling() {
				h = insertSorted(h, materialize(c))
			}
			if h != nil {
				o.fields = append(o.fields, field{f.key, h})
			}
		}
		n.val = o
		if m.id != (Dot{}) { // never the document root
			pack(n)
		}
	case *fragList:
		l := newList()
		k := 0 // cursor in v.rm
		for i, fe := range v.elems {
			e := &elem{id: fe.id}
			var parent *elem
			if fe.parent != (Dot{}) {
				parent = l.find(fe.parent)
			}
			for c := fe.head; c != nil; c = c.sibling() {
				e.head = insertSorted(e.head, materialize(c))
			}
			l.attach(e, parent, fe.isLeft)
			k = l.addRemovals(e, v, i, k)
		}
		n.val = l
	case *counter:
		n.val = v.clone()
	default:
		n.val = v
	}
	return n
}

// fragElems counts the array elements a delta encodes, as the decoder does.
func fragElems(o *object) int {
	n := 0
	for _, f := range o.fields {
		for h := f.head; h != nil; h = h.sibling() {
			n += fragNodeElems(h)
		}
	}
	return n
}

func fragNodeElems(h *node) int {
	switch v := h.val.(type) {
	case *object:
		return fragElems(v)
	case *fragList:
		n := len(v.elems)
		for i := range v.elems {
			for m := v.elems[i].head; m != nil; m = m.sibling() {
				n += fragNodeElems(m)
			}
		}
		return n
	}
	return 0
}
