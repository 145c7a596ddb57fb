package crdt

// GC drops metadata that no replica needs any more. stable must be causally
// stable: every replica has applied every event it includes (the caller
// computes it as the Meet of the contexts all replicas acknowledged).
//
// What is collected: a value that lost a concurrent write (a register's
// losing sibling) once it and the winner are both stable: every replica then
// picks the same winner, and any later write to the slot overwrites both.
// The join rule keeps this safe when a replica that has not collected yet
// sends its state: the loser's event is in every context, so it is never
// re-added. Implicit counters are summed rather than resolved, so they are
// never dropped. Queued deltas that are already applied are dropped too.
//
// What needs no collection: removed map keys and overwritten values leave
// nothing behind but their event in the version vector (O(replicas)), and
// counters keep one entry per replica.
//
// What is kept: array tombstones (element ids, without their values). Local
// inserts may anchor on them at any time, and stable does not prove that
// every insert concurrent with a removal has reached every replica; they
// count towards MaxElements. docs/crdt.md ("Array tombstones: what a safe
// collection needs") lists what collecting them requires. GC returns the
// number of values dropped.
func (d *Doc) GC(stable VersionVector) int {
	n := gcObject(&d.root, stable)
	q := d.queue()
	kept := q[:0]
	for _, p := range q {
		if !p.ctx.within(d.ctx) {
			kept = append(kept, p)
		}
	}
	clear(q[len(kept):])
	d.setQueue(kept)
	return n
}

func gcObject(o *object, stable VersionVector) int {
	n := 0
	for i := range o.fields {
		n += gcSlot(o.fields[i].head, stable)
	}
	return n
}

func gcSlot(head *node, stable VersionVector) int {
	n := 0
	if head.sibling() != nil && !isImplicit(head) && stable.Contains(head.id) {
		for p := head; p.sibling() != nil; {
			if stable.Contains(p.sibling().id) {
				p.setSib(p.sibling().sibling())
				n++
			} else {
				p = p.sibling()
			}
		}
	}
	switch v := head.val.(type) {
	case *object:
		n += gcObject(v, stable)
	case *list:
		v.each(func(e *elem) bool {
			if e.head != nil {
				n += gcSlot(e.head, stable)
			}
			return true
		})
	}
	return n
}
