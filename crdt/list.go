package crdt

import "slices"

// The list is a Fugue tree (Weidner & Kleppmann, "The Art of the Fugue",
// 2023): every element is a left or right child of another element (or of the
// virtual root), siblings are ordered by id, and the list order is the
// in-order traversal. The tree is a function of the set of elements, so the
// order never depends on delivery order, and two concurrent runs typed at the
// same place form two sibling subtrees that never interleave.
//
// The order itself lives in a B+ tree of elements with per-subtree counts
// (all elements and visible ones), giving O(log n) index lookup and O(log n)
// insertion next to a known element; appends touch only the rightmost leaf.
// Removed elements stay as tombstones (no value, plus the dots of the events
// that removed them) because concurrent inserts may be positioned relative
// to them; Doc.GC drops them once no replica can refer to them any more.

type elem struct {
	id    Dot
	left  *elem // first left child
	right *elem // first right child
	next  *elem // next sibling on the same side of the same parent, ascending id
	leaf  *bnode
	head  *node // the element's slot; nil for a tombstone
	// rm holds the remove events applied to the element (only tombstones
	// have any). They are replicated state: GC may drop a tombstone only
	// once they are stable (see gc.go).
	rm rmSet
}

const bmax = 64 // children (or elements) per B+ tree node

type bnode struct {
	parent *bnode
	elems  []*elem  // leaf
	kids   []*bnode // inner
	n, vis int32    // elements and visible elements below
}

type list struct {
	root *bnode
	top  *elem      // first right child of the virtual root
	idx  *listIndex // built once the list is long enough
}

// rmSet is a set of remove events: the lowest (zero: the set is empty), then
// the others in order (almost always none: one remove per removed element).
// It is a value with copy-on-write others, so an undo can keep the old one;
// 16 bytes keep an element in the 64-byte size class.
type rmSet struct {
	d    Dot
	more *[]Dot
}

func (s rmSet) empty() bool { return s.d.S == 0 }

func (s rmSet) each(f func(Dot)) {
	if s.empty() {
		return
	}
	f(s.d)
	if s.more != nil {
		for _, d := range *s.more {
			f(d)
		}
	}
}

// add returns the set with d added.
func (s rmSet) add(d Dot) rmSet {
	if s.empty() {
		return rmSet{d: d}
	}
	var more []Dot
	if s.more != nil {
		more = *s.more
	}
	switch {
	case d == s.d:
		return s
	case d.less(s.d):
		more = slices.Insert(slices.Clone(more), 0, s.d)
		s.d = d
	default:
		i, found := slices.BinarySearchFunc(more, d, cmpDot)
		if found {
			return s
		}
		more = slices.Insert(slices.Clone(more), i, d)
	}
	s.more = &more
	return s
}

type listIndex struct {
	byID []idIndex     // per replica, elements sorted by event
	more map[Dot]*elem // elements that arrived out of event order (merges of whole states)
}

// idIndex finds elements by id: a replica's elements are created in event
// order, so its slice grows at the end and costs one pointer per element.
type idIndex struct {
	R     ReplicaID
	seqs  []uint32 // event numbers of elems, searched without touching the elements
	elems []*elem
}

func newList() *list { return &list{root: &bnode{}} }

func (l *list) len() int     { return int(l.root.n) }
func (l *list) visible() int { return int(l.root.vis) }

const indexFrom = 16 // below this many elements, lookups scan

func (l *list) find(id Dot) *elem {
	if l.idx != nil {
		for i := range l.idx.byID {
			if x := &l.idx.byID[i]; x.R == id.R {
				ss := x.seqs
				if n := len(ss); n > 0 && ss[n-1] == id.S {
					return x.elems[n-1]
				}
				if j, ok := slices.BinarySearch(ss, id.S); ok {
					return x.elems[j]
				}
				break
			}
		}
		return l.idx.more[id]
	}
	var found *elem
	l.each(func(e *elem) bool {
		if e.id == id {
			found = e
			return false
		}
		return true
	})
	return found
}

func (l *list) index(e *elem) {
	if l.idx != nil {
		l.idx.add(e)
		return
	}
	if l.root.n >= indexFrom {
		l.idx = &listIndex{}
		l.each(func(e *elem) bool { l.idx.add(e); return true })
	}
}

func (ix *listIndex) add(e *elem) {
	i := 0
	for i < len(ix.byID) && ix.byID[i].R != e.id.R {
		i++
	}
	if i == len(ix.byID) {
		ix.byID = append(ix.byID, idIndex{R: e.id.R})
	}
	x := &ix.byID[i]
	if n := len(x.seqs); n == 0 || x.seqs[n-1] < e.id.S {
		x.seqs = append(x.seqs, e.id.S)
		x.elems = append(x.elems, e)
		return
	}
	if ix.more == nil {
		ix.more = make(map[Dot]*elem)
	}
	ix.more[e.id] = e
}

func (l *list) unindex(e *elem) {
	for i := range l.idx.byID {
		if x := &l.idx.byID[i]; x.R == e.id.R {
			if j, ok := slices.BinarySearch(x.seqs, e.id.S); ok && x.elems[j] == e {
				x.seqs = slices.Delete(x.seqs, j, j+1)
				x.elems = slices.Delete(x.elems, j, j+1)
			}
		}
	}
	delete(l.idx.more, e.id)
}

// each visits elements (tombstones too) in list order until f returns false.
func (l *list) each(f func(*elem) bool) {
	var walk func(b *bnode) bool
	walk = func(b *bnode) bool {
		if b.kids == nil {
			for _, e := range b.elems {
				if !f(e) {
					return false
				}
			}
			return true
		}
		for _, k := range b.kids {
			if !walk(k) {
				return false
			}
		}
		return true
	}
	walk(l.root)
}

// last returns the last element in list order (tombstones included).
func (l *list) last() *elem {
	b := l.root
	for b.kids != nil {
		b = b.kids[len(b.kids)-1]
	}
	if len(b.elems) == 0 {
		return nil
	}
	return b.elems[len(b.elems)-1]
}

// at returns the i-th visible element.
func (l *list) at(i int) *elem {
	if i < 0 || i >= int(l.root.vis) {
		return nil
	}
	b := l.root
	for b.kids != nil {
		for _, k := range b.kids {
			if i < int(k.vis) {
				b = k
				break
			}
			i -= int(k.vis)
		}
	}
	for _, e := range b.elems {
		if e.head != nil {
			if i == 0 {
				return e
			}
			i--
		}
	}
	return nil
}

func (b *bnode) pos(e *elem) int {
	// appends and neighbours of recent inserts sit at the end: scan backwards.
	for i := len(b.elems) - 1; i >= 0; i-- {
		if b.elems[i] == e {
			return i
		}
	}
	return -1
}

// ---- Fugue tree ----

// localPlace chooses the parent of a new element inserted between the
// visible neighbours left and right (nil at the ends). Only visible elements
// become parents (rule (a) of docs/crdt.md): a replica never makes a
// tombstone a parent, so once every replica has applied a removal, nothing
// new can refer to the removed element and GC may drop it. Everything
// between left and right is removed, so any position there is correct:
//
//   - left has no right child: its first right child (right after left);
//   - right has no left child: its first left child (right before right);
//   - left lies in right's left subtree: a right child of left (left's right
//     subtree lies between them);
//   - otherwise a left child of right (right's left subtree lies between).
//
// Runs typed forwards stay right-child chains and runs typed backwards
// left-child chains, as in Fugue, so concurrent runs never interleave.
func (l *list) localPlace(left, right *elem) (parent *elem, isLeft bool) {
	switch {
	case left == nil && right == nil:
		return nil, false
	case left == nil:
		return right, true
	case left.right == nil || right == nil:
		return left, false
	case right.left == nil:
		return right, true
	case l.rank(firstIn(right)) <= l.rank(left):
		return left, false
	}
	return right, true
}

// rank returns the number of elements (tombstones included) before e.
func (l *list) rank(e *elem) int {
	b := e.leaf
	n := b.pos(e)
	for b.parent != nil {
		p := b.parent
		for _, k := range p.kids {
			if k == b {
				break
			}
			n += int(k.n)
		}
		b = p
	}
	return n
}

// lastVisible returns the last visible element (nil if none), walking from
// the right so that appends stay O(depth).
func (l *list) lastVisible() *elem {
	b := l.root
	if b.vis == 0 {
		return nil
	}
	for b.kids != nil {
		for i := len(b.kids) - 1; i >= 0; i-- {
			if b.kids[i].vis > 0 {
				b = b.kids[i]
				break
			}
		}
	}
	for i := len(b.elems) - 1; i >= 0; i-- {
		if b.elems[i].head != nil {
			return b.elems[i]
		}
	}
	return nil
}

// addRemovals records on e the remove events of f.elems[i] that start at
// f.rm[k] (joins walk elements in order, so k is a cursor) and returns the
// cursor for the next element.
func (l *list) addRemovals(e *elem, f *fragList, i, k int) int {
	for k < len(f.rm) && f.rm[k].at < i {
		k++
	}
	for ; k < len(f.rm) && f.rm[k].at == i; k++ {
		e.rm = e.rm.add(f.rm[k].d)
	}
	return k
}

func cmpDot(a, b Dot) int {
	switch {
	case a.less(b):
		return -1
	case b.less(a):
		return 1
	}
	return 0
}

// attach links e into the Fugue tree under p (on the side isLeft says), keeping
// siblings in ascending id order, and inserts it into the order at the
// position the tree dictates.
func (l *list) attach(e, p *elem, isLeft bool) {
	var headp **elem
	switch {
	case p == nil:
		headp = &l.top
	case isLeft:
		headp = &p.left
	default:
		headp = &p.right
	}
	var prev *elem
	cur := *headp
	for cur != nil && cur.id.less(e.id) {
		prev, cur = cur, cur.next
	}
	e.next = cur
	if prev == nil {
		*headp = e
	} else {
		prev.next = e
	}
	switch {
	case cur != nil:
		// before the subtree of the next sibling
		l.insertBefore(firstIn(cur), e)
	case isLeft:
		// last left child: right before the parent
		l.insertBefore(p, e)
	default:
		// last right child: after everything under the parent
		if prev != nil {
			l.insertAfter(lastIn(prev), e)
		} else if p != nil {
			l.insertAfter(p, e)
		} else {
			l.insertAfter(nil, e)
		}
	}
	l.index(e)
}

// attachRight is attach for a brand-new list being built in order.
func (l *list) attachRight(prev, e *elem) {
	if prev == nil {
		l.top = e
	} else {
		prev.right = e
	}
	l.insertAfter(prev, e)
	l.index(e)
}

// firstIn returns the first element of e's subtree in list order.
func firstIn(e *elem) *elem {
	for e.left != nil {
		e = e.left
	}
	return e
}

// lastIn returns the last element of e's subtree in list order.
func lastIn(e *elem) *elem {
	for {
		r := e.right
		if r == nil {
			return e
		}
		for r.next != nil {
			r = r.next
		}
		e = r
	}
}

// detach undoes attach for the most recent local insert (Apply rollback).
func (l *list) detach(e, parent *elem, isLeft bool) {
	var headp **elem
	switch {
	case parent == nil:
		headp = &l.top
	case isLeft:
		headp = &parent.left
	default:
		headp = &parent.right
	}
	for p := headp; *p != nil; p = &(*p).next {
		if *p == e {
			*p = e.next
			break
		}
	}
	b := e.leaf
	i := b.pos(e)
	b.elems = slices.Delete(b.elems, i, i+1)
	var vis int32
	if e.head != nil {
		vis = 1
	}
	for x := b; x != nil; x = x.parent {
		x.n--
		x.vis -= vis
	}
	// Drop emptied B+ tree nodes (an undone append may have been alone in
	// the leaf it split off), so last and at never meet an empty leaf.
	for b.parent != nil && len(b.elems) == 0 && len(b.kids) == 0 {
		p := b.parent
		j := slices.Index(p.kids, b)
		p.kids = slices.Delete(p.kids, j, j+1)
		b = p
	}
	if l.root.kids != nil && len(l.root.kids) == 0 {
		l.root = &bnode{}
	}
	if l.idx != nil {
		l.unindex(e)
	}
}

// drop removes the elements for which gone reports true, and returns how
// many it removed. gone must only hold for whole subtrees (an element and
// all its descendants): unlinking a subtree from its sibling chain keeps the
// relative order of everything else, and the B+ tree and the id index are
// rebuilt from what is left.
func (l *list) drop(gone func(*elem) bool) int {
	unlink := func(head **elem) {
		for p := head; *p != nil; {
			if gone(*p) {
				*p = (*p).next
			} else {
				p = &(*p).next
			}
		}
	}
	kept := make([]*elem, 0, l.len())
	l.each(func(e *elem) bool {
		if !gone(e) {
			kept = append(kept, e)
		}
		return true
	})
	n := l.len() - len(kept)
	if n == 0 {
		return 0
	}
	unlink(&l.top)
	for _, e := range kept {
		unlink(&e.left)
		unlink(&e.right)
	}
	l.root, l.idx = &bnode{}, nil
	var prev *elem
	for _, e := range kept {
		l.insertAfter(prev, e)
		prev = e
	}
	if len(kept) >= indexFrom {
		// index in id order, so each replica's slice grows at its end
		byID := slices.Clone(kept)
		slices.SortFunc(byID, func(a, b *elem) int { return cmpDot(a.id, b.id) })
		l.idx = &listIndex{}
		for _, e := range byID {
			l.idx.add(e)
		}
	}
	return n
}

// ---- B+ tree of the order ----

// insertAfter puts e right after a (nil: at the front).
func (l *list) insertAfter(a, e *elem) {
	if a == nil {
		b := l.root
		for b.kids != nil {
			b = b.kids[0]
		}
		l.insertAt(b, 0, e)
		return
	}
	l.insertAt(a.leaf, a.leaf.pos(a)+1, e)
}

func (l *list) insertBefore(a, e *elem) { l.insertAt(a.leaf, a.leaf.pos(a), e) }

func (l *list) insertAt(b *bnode, i int, e *elem) {
	b.elems = slices.Insert(b.elems, i, e)
	e.leaf = b
	var vis int32
	if e.head != nil {
		vis = 1
	}
	for x := b; x != nil; x = x.parent {
		x.n++
		x.vis += vis
	}
	if len(b.elems) > bmax {
		l.split(b)
	}
}

// setVisible updates counts after e's slot became empty or non-empty.
func (l *list) setVisible(e *elem, was bool) {
	now := e.head != nil
	if was == now {
		return
	}
	var d int32 = 1
	if !now {
		d = -1
	}
	for x := e.leaf; x != nil; x = x.parent {
		x.vis += d
	}
}

// split halves an overfull node. Appends split unevenly (keep the left node
// full) so a list built by appends packs its leaves.
func (l *list) split(b *bnode) {
	size := len(b.elems) + len(b.kids)
	mid := size / 2
	if b.parent == nil || b.parent.kids[len(b.parent.kids)-1] == b {
		mid = size - 1
	}
	nb := &bnode{parent: b.parent}
	if b.kids == nil {
		nb.elems = make([]*elem, size-mid, bmax+1)
		copy(nb.elems, b.elems[mid:])
		clear(b.elems[mid:])
		b.elems = b.elems[:mid]
		for _, e := range nb.elems {
			e.leaf = nb
			nb.n++
			if e.head != nil {
				nb.vis++
			}
		}
	} else {
		nb.kids = make([]*bnode, size-mid, bmax+1)
		copy(nb.kids, b.kids[mid:])
		clear(b.kids[mid:])
		b.kids = b.kids[:mid]
		for _, k := range nb.kids {
			k.parent = nb
			nb.n += k.n
			nb.vis += k.vis
		}
	}
	b.n -= nb.n
	b.vis -= nb.vis
	if b.parent == nil {
		r := &bnode{kids: []*bnode{b, nb}, n: b.n + nb.n, vis: b.vis + nb.vis}
		b.parent, nb.parent = r, r
		l.root = r
		return
	}
	p := b.parent
	j := slices.Index(p.kids, b)
	p.kids = slices.Insert(p.kids, j+1, nb)
	if len(p.kids) > bmax {
		l.split(p)
	}
}

// visIndex returns the number of visible elements before e.
func visIndex(e *elem) int {
	b := e.leaf
	n := 0
	for _, x := range b.elems {
		if x == e {
			break
		}
		if x.head != nil {
			n++
		}
	}
	for b.parent != nil {
		p := b.parent
		for _, k := range p.kids {
			if k == b {
				break
			}
			n += int(k.vis)
		}
		b = p
	}
	return n
}

// ---- delta form ----

// fragList is a list inside a delta or a decoded state: the elements it
// carries, in an order where every new element comes after its parent. pos
// is false for elements already known to the receiver (only the slot changed).
type fragList struct {
	elems []fragElem
	rm    []fragRm // remove events, sorted by element, then event
}

// fragRm is a remove event d applied to elems[at].
type fragRm struct {
	at int
	d  Dot
}

func cmpFragRm(a, b fragRm) int {
	if a.at != b.at {
		return a.at - b.at
	}
	return cmpDot(a.d, b.d)
}

// rmRange returns the bounds in f.rm of the remove events of elems[i].
func (f *fragList) rmRange(i int) (lo, hi int) {
	if len(f.rm) == 0 {
		return 0, 0
	}
	lo, _ = slices.BinarySearchFunc(f.rm, i, func(r fragRm, i int) int { return r.at - i })
	hi = lo
	for hi < len(f.rm) && f.rm[hi].at == i {
		hi++
	}
	return lo, hi
}

// addRemoval records that event d removed elems[i].
func (f *fragList) addRemoval(i int, d Dot) {
	r := fragRm{i, d}
	if j, found := slices.BinarySearchFunc(f.rm, r, cmpFragRm); !found {
		f.rm = slices.Insert(f.rm, j, r)
	}
}

type fragElem struct {
	id     Dot
	pos    bool
	parent Dot // zero: the virtual root
	isLeft bool
	head   *node
}

func (f *fragList) clone() *fragList {
	out := &fragList{elems: make([]fragElem, len(f.elems))}
	for i, e := range f.elems {
		e.head = cloneSlot(e.head)
		out.elems[i] = e
	}
	out.rm = slices.Clone(f.rm)
	return out
}

func (f *fragList) find(id Dot) int {
	for i := len(f.elems) - 1; i >= 0; i-- {
		if f.elems[i].id == id {
			return i
		}
	}
	return -1
}

// toFrag converts a list to delta form in Fugue-tree pre-order, so that a
// receiver always meets a parent before its children. Iterative: an append
// chain is as deep as the list is long.
func (l *list) toFrag() *fragList {
	f := &fragList{elems: make([]fragElem, 0, l.len())}
	type item struct {
		e      *elem
		parent Dot
		isLeft bool
	}
	var stack []item
	for c := l.top; c != nil; c = c.next {
		stack = append(stack, item{c, Dot{}, false})
	}
	slices.Reverse(stack)
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		e := it.e
		stack = stack[:len(stack)-1]
		f.elems = append(f.elems, fragElem{id: e.id, pos: true, parent: it.parent, isLeft: it.isLeft, head: cloneSlot(e.head)})
		if !e.rm.empty() {
			at := len(f.elems) - 1
			e.rm.each(func(d Dot) { f.rm = append(f.rm, fragRm{at, d}) })
		}
		// push right children then left children, each reversed, so that
		// left children pop first, in ascending id order.
		n := len(stack)
		for c := e.right; c != nil; c = c.next {
			stack = append(stack, item{c, e.id, false})
		}
		slices.Reverse(stack[n:])
		n = len(stack)
		for c := e.left; c != nil; c = c.next {
			stack = append(stack, item{c, e.id, true})
		}
		slices.Reverse(stack[n:])
	}
	return f
}
