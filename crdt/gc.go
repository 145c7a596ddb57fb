package crdt

// GC drops metadata that no replica needs any more and returns how many
// values and array elements it dropped. acks holds one context per replica
// of the document, this one included: a context that replica acknowledged,
// that is, what Context returned there at some moment (the newest one known
// is best; any real one is safe). A vector that is not a real context of a
// replica, such as a meet computed by the caller, is not an acknowledgement;
// and acks must cover every replica that can write the document, or GC may
// drop an element that the missing replica still refers to.
//
// From acks GC computes stable, their meet (every replica has applied it),
// and seen, their join (everything any replica acknowledged). It drops:
//
//   - the losing values of a slot (concurrent writes) once the loser and the
//     winner are both in stable: every replica then picks the same winner,
//     and a replica that has not collected yet cannot re-add the loser,
//     whose event is in every context. Implicit counters are summed rather
//     than resolved, so they are never dropped;
//   - array tombstones, when this replica has applied seen and a tombstone's
//     remove events are in stable, for whole subtrees of such tombstones
//     (see below);
//   - queued deltas that are already applied.
//
// Removed map keys and overwritten values need no collection: they leave
// nothing but their event in the version vector.
//
// Why dropping a tombstone T is safe. Every event that refers to T (an
// insert next to it, a write or remove of its slot, an edit inside its
// value) is created by a replica that sees T visible: edits address visible
// indexes, and inserts anchor only on visible elements (list.localPlace).
// Each value T ever held was removed by a chain of writes ending in one of
// T's remove events, so when those are in stable, T is removed in every
// acknowledged state. Suppose some event referring to T is not applied
// here; take the first one created, by replica W. It is not in W's
// acknowledgement (which is in seen, which is applied here), so W created it
// later, from a state where T is removed unless an even earlier such event
// revived it: a contradiction. So every event that will ever refer to T has
// been applied here, and no delta will need T again. Only whole subtrees go,
// so the order of every other element is unchanged. The dropped set is a
// function of the state and acks, so replicas with the same events and the
// same acks encode identically; a replica that has not collected yet may
// still send T in a snapshot, and the join skips elements this document has
// applied and no longer holds.
func (d *Doc) GC(acks []VersionVector) int {
	if len(acks) == 0 {
		return 0
	}
	stable, seen := acks[0].Clone(), acks[0].Clone()
	for _, a := range acks[1:] {
		stable = stable.Meet(a)
		seen = seen.Merge(a)
	}
	g := collector{stable: stable, lists: d.ctx.Covers(seen)}
	if g.lists {
		// tombstones without recorded remove events (written before they
		// were recorded) are safe once this replica's whole state is stable
		g.all = stable.Covers(d.ctx)
	}
	n := g.object(&d.root)
	if g.dropped > 0 {
		d.elems = countElems(&d.root)
	}
	q := d.queue()
	kept := q[:0]
	for _, p := range q {
		if !p.ctx.within(d.ctx) {
			kept = append(kept, p)
		}
	}
	clear(q[len(kept):])
	d.setQueue(kept)
	return n + g.dropped
}

type collector struct {
	stable  VersionVector
	lists   bool // array tombstones may be dropped
	all     bool // every event applied here is stable
	dropped int  // array elements dropped
}

func (g *collector) object(o *object) int {
	n := 0
	for i := range o.fields {
		n += g.slot(o.fields[i].head)
	}
	return n
}

func (g *collector) slot(head *node) int {
	n := 0
	if head.sibling() != nil && !isImplicit(head) && g.stable.Contains(head.id) {
		for p := head; p.sibling() != nil; {
			if g.stable.Contains(p.sibling().id) {
				p.setSib(p.sibling().sibling())
				n++
			} else {
				p = p.sibling()
			}
		}
	}
	switch v := head.val.(type) {
	case *object:
		n += g.object(v)
	case *list:
		if g.lists && v.visible() < v.len() {
			g.dropped += g.tombstones(v)
		}
		v.each(func(e *elem) bool {
			if e.head != nil {
				n += g.slot(e.head)
			}
			return true
		})
	}
	return n
}

// tombstones drops the subtrees of l that hold only tombstones whose remove
// events are stable.
func (g *collector) tombstones(l *list) int {
	// Fugue-tree pre-order with each element's parent position, so that a
	// reverse walk meets children before parents (iterative: an append
	// chain is as deep as the list is long).
	type item struct {
		e      *elem
		parent int
	}
	order := make([]item, 0, l.len())
	var stack []item
	push := func(first *elem, parent int) {
		n := len(stack)
		for c := first; c != nil; c = c.next {
			stack = append(stack, item{c, parent})
		}
		for i, j := n, len(stack)-1; i < j; i, j = i+1, j-1 {
			stack[i], stack[j] = stack[j], stack[i]
		}
	}
	push(l.top, -1)
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		order = append(order, it)
		i := len(order) - 1
		push(it.e.right, i)
		push(it.e.left, i)
	}
	ok := make([]bool, len(order))
	for i, it := range order {
		ok[i] = it.e.head == nil && g.removedStably(l, it.e)
	}
	for i := len(order) - 1; i >= 0; i-- {
		if p := order[i].parent; p >= 0 && !ok[i] {
			ok[p] = false
		}
	}
	gone := make(map[*elem]bool)
	for i, it := range order {
		if ok[i] {
			gone[it.e] = true
		}
	}
	if len(gone) == 0 {
		return 0
	}
	return l.drop(func(e *elem) bool { return gone[e] })
}

func (g *collector) removedStably(l *list, e *elem) bool {
	if e.rm.empty() {
		return g.all
	}
	stable := true
	e.rm.each(func(d Dot) { stable = stable && g.stable.Contains(d) })
	return stable
}
