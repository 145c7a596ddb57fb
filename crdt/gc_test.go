package crdt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// arrayOp is a random change to the long-lived array "l" of {"v":n} items:
// inserts anywhere, removes, replaces, and edits inside an element.
func (c *cluster) arrayOp(i int) {
	d := c.docs[i]
	l := d.root.get("l").val.(*list)
	n := l.visible()
	v := json.RawMessage(fmt.Sprintf(`{"v":%d}`, c.rng.IntN(1000)))
	var op Op
	switch p := c.rng.IntN(20); {
	case p < 3 || n == 0:
		op = Op{Op: "append", Path: "l", Value: v}
	case p < 4:
		op = Op{Op: "prepend", Path: "l", Value: v}
	case p < 9:
		k := c.rng.IntN(n + 1)
		op = Op{Op: "insert", Path: "l", Index: &k, Value: v}
	case p < 16:
		op = Op{Op: "remove", Path: "l." + strconv.Itoa(c.rng.IntN(n))}
	case p < 18:
		op = Op{Op: "set", Path: "l." + strconv.Itoa(c.rng.IntN(n)), Value: v}
	default:
		op = Op{Op: "increment", Path: "l." + strconv.Itoa(c.rng.IntN(n)) + ".v", Value: json.RawMessage("1")}
	}
	x, err := d.Apply(c.ids[i], c.tick(i), op)
	if err != nil {
		c.t.Fatalf("replica %d: %+v: %v", c.ids[i], op, err)
	}
	b, _ := x.MarshalBinary()
	c.log = append(c.log, b)
}

// arrayCluster starts n replicas sharing a 5-item array.
func arrayCluster(t *testing.T, seed uint64, n int) *cluster {
	c := newCluster(t, seed, n)
	x := mustApply(t, c.docs[0], c.tick(0), c.ids[0], Op{Op: "set", Path: "l", Value: json.RawMessage(`[{"v":1},{"v":2},{"v":3},{"v":4},{"v":5}]`)})
	b, _ := x.MarshalBinary()
	c.log = append(c.log, b)
	for i := range c.docs[1:] {
		c.deliver(i+1, b)
	}
	return c
}

// Replicas editing one array under an unreliable network, collecting at
// random points with the acks they have received, converge byte for byte,
// read what a replica that never collected reads, and collect during the
// run, not only at the end.
func TestArrayGCRandom(t *testing.T) {
	t.Parallel()
	before, total := 0, 0
	for seed := range uint64(60) {
		replicas := 2 + int(seed%4)
		c := arrayCluster(t, 7000+seed, replicas)
		for range 400 {
			i := c.rng.IntN(replicas)
			switch p := c.rng.IntN(100); {
			case p < 45:
				c.arrayOp(i)
			case p < 80:
				k := len(c.log) - 1 - c.rng.IntN(min(len(c.log), 10))
				if c.rng.IntN(5) == 0 {
					k = c.rng.IntN(len(c.log))
				}
				c.deliver(i, c.log[k])
			case p < 83:
				// a snapshot from a replica that may not have collected
				// what i collected, or may have collected more
				snap, _ := c.docs[c.rng.IntN(replicas)].Snapshot().MarshalBinary()
				c.deliver(i, snap)
			case p < 85:
				d, err := DecodeDoc(c.encode(c.docs[i]))
				if err != nil {
					t.Fatal(err)
				}
				c.docs[i] = d
			default:
				c.gc(i)
			}
			c.randomAcks(i)
		}
		c.finish(true)
		before += c.dropsBefore
		total += c.drops
		for _, d := range c.docs {
			l := d.root.get("l").val.(*list)
			if n := deadLeaves(l); n > 0 {
				t.Fatalf("seed %d: %d tombstones without live descendants survive the final GC", seed, n)
			}
		}
	}
	t.Logf("array elements dropped: %d during the runs, %d in all", before, total)
	if before == 0 {
		t.Fatal("no tombstone was collected before the final exchange")
	}
}

// The case that makes the meet of the contexts insufficient: B appends after
// x (the new element is x's child), then applies A's removal of x and
// acknowledges; C has the removal but not B's insert. C must not drop x (the insert would have no parent
// there), and once it has everything, x's subtree goes when its last live
// element is removed.
func TestGCInsertNextToRemovedElement(t *testing.T) {
	t.Parallel()
	docs := []*Doc{NewDoc(), NewDoc(), NewDoc()} // A=1, B=2, C=3
	base := mustApply(t, docs[0], 1, 1, Op{Op: "set", Path: "l", Value: json.RawMessage(`["y","x"]`)})
	for _, d := range docs[1:] {
		if err := d.Merge(base); err != nil {
			t.Fatal(err)
		}
	}
	rm := mustApply(t, docs[0], 2, 1, Op{Op: "remove", Path: "l.1"})
	ins := mustApply(t, docs[1], 3, 2, Op{Op: "insert", Path: "l", Index: ptr(2), Value: json.RawMessage(`"z"`)})
	for _, i := range []int{1, 2} {
		if err := docs[i].Merge(rm); err != nil {
			t.Fatal(err)
		}
	}
	acks := []VersionVector{docs[0].Context(), docs[1].Context(), docs[2].Context()}
	// the removal is in every ack; B's insert only in B's
	if !acks[0].Meet(acks[1]).Meet(acks[2]).Contains(Dot{1, 4}) {
		t.Fatalf("the removal is not stable: %v", acks)
	}
	c := docs[2]
	lenC := func() int { return c.root.get("l").val.(*list).len() }
	c.GC(acks)
	if lenC() != 2 {
		t.Fatalf("C collected x before applying an acknowledged insert next to it: %d elements", lenC())
	}
	// With a stale ack for B, C's context covers every ack, but the
	// removal is not stable: nothing may go either.
	c.GC([]VersionVector{acks[0], base.Deps(), acks[2]})
	if lenC() != 2 {
		t.Fatalf("C collected x with a stale ack from B: %d elements", lenC())
	}
	for _, d := range []*Doc{docs[0], c} {
		if err := d.Merge(ins); err != nil {
			t.Fatalf("the insert next to x no longer merges: %v", err)
		}
	}
	acks = []VersionVector{docs[0].Context(), docs[1].Context(), docs[2].Context()}
	for _, d := range docs {
		d.GC(acks)
	}
	if lenC() != 3 {
		t.Fatalf("x has a live child (z) and must stay: %d elements", lenC())
	}
	z := mustApply(t, docs[0], 5, 1, Op{Op: "remove", Path: "l.1"})
	snapB := docs[1].Snapshot() // B has not collected x yet when it sends this
	for _, d := range docs[1:] {
		if err := d.Merge(z); err != nil {
			t.Fatal(err)
		}
	}
	acks = []VersionVector{docs[0].Context(), docs[1].Context(), docs[2].Context()}
	for _, d := range docs {
		d.GC(acks)
	}
	if lenC() != 1 {
		t.Fatalf("after removing z, %d elements remain, want only y", lenC())
	}
	// a snapshot from before the collection joins without resurrecting
	if err := c.Merge(snapB); err != nil {
		t.Fatal(err)
	}
	if j, _ := c.JSON(); string(j) != `{"l":["y"]}` {
		t.Fatalf("after merging an old snapshot: %s", j)
	}
	e0, _ := docs[0].MarshalBinary()
	for _, d := range docs[1:] {
		if e, _ := d.MarshalBinary(); !bytes.Equal(e, e0) {
			t.Fatal("replicas diverged after GC")
		}
	}
}

func ptr(i int) *int { return &i }

// A long-lived array with many insert/remove cycles by several replicas
// (a cart: items added and removed concurrently, emptied at checkout)
// keeps a bounded element count and encoded size once GC runs with the
// acks: tombstones no longer fill MaxElements. Without GC the same history
// keeps every element ever inserted.
func TestGCBoundsArrayTombstones(t *testing.T) {
	t.Parallel()
	const replicas, rounds, cycle = 3, 400, 10
	docs := make([]*Doc, replicas+1) // the last one never collects
	for i := range docs {
		docs[i] = NewDoc()
	}
	x := mustApply(t, docs[0], 1, 1, Op{Op: "set", Path: "cart", Value: json.RawMessage(`{"items":[]}`)})
	for _, d := range docs[1:] {
		if err := d.Merge(x); err != nil {
			t.Fatal(err)
		}
	}
	items := func(d *Doc) *list { return d.root.get("cart").val.(*object).get("items").val.(*list) }
	exchange := func(deltas []*Delta) {
		for _, d := range docs {
			for _, x := range deltas {
				if err := d.Merge(x); err != nil {
					t.Fatal(err)
				}
			}
		}
		var acks []VersionVector
		for _, d := range docs[:replicas] {
			acks = append(acks, d.Context())
		}
		for _, d := range docs[:replicas] {
			d.GC(acks)
		}
	}
	var sizes []int
	maxElems, inserts := 0, 0
	for round := range rounds {
		var deltas []*Delta
		for i, d := range docs[:replicas] {
			r, now := ReplicaID(i+1), int64(100+round)
			v := json.RawMessage(fmt.Sprintf(`{"sku":"s%d","qty":%d}`, round*10+i, i+1))
			deltas = append(deltas, mustApply(t, d, now, r, Op{Op: "append", Path: "cart.items", Value: v}))
			mid := items(d).visible() / 2
			deltas = append(deltas, mustApply(t, d, now, r, Op{Op: "insert", Path: "cart.items", Index: &mid, Value: v}))
			inserts += 2
			switch n := items(d).visible(); {
			case round%2 == 0 && n > 2:
				deltas = append(deltas, mustApply(t, d, now, r, Op{Op: "remove", Path: "cart.items." + strconv.Itoa(n-1)}))
			case n > 3:
				deltas = append(deltas, mustApply(t, d, now, r, Op{Op: "remove", Path: "cart.items." + strconv.Itoa((round+i)%n)}))
			}
		}
		exchange(deltas)
		if round%cycle == cycle-1 {
			// checkout: one replica empties the cart after seeing everything
			d, r := docs[round%replicas], ReplicaID(round%replicas+1)
			var ops []Op
			for range items(d).visible() {
				ops = append(ops, Op{Op: "remove", Path: "cart.items.0"})
			}
			exchange([]*Delta{mustApply(t, d, int64(100+round), r, ops...)})
			if n := items(d).len(); n != 0 {
				t.Fatalf("round %d: after checkout and GC the cart keeps %d elements", round, n)
			}
			b, _ := d.MarshalBinary()
			sizes = append(sizes, len(b))
		}
		b, _ := docs[0].MarshalBinary()
		for _, d := range docs[1:replicas] {
			if b2, _ := d.MarshalBinary(); !bytes.Equal(b, b2) {
				t.Fatalf("round %d: replicas diverged", round)
			}
		}
		if got, want := mustJSON(t, docs[0]), mustJSON(t, docs[replicas]); got != want {
			t.Fatalf("round %d: GC changed the value:\n%s\n%s", round, got, want)
		}
		maxElems = max(maxElems, items(docs[0]).len())
		if d := docs[0]; d.elems > 4*replicas*cycle {
			t.Fatalf("round %d: the document's element bound is %d", round, d.elems)
		}
	}
	// varints grow a little as event numbers grow
	if first, last := sizes[1], sizes[len(sizes)-1]; last > first+16 {
		t.Fatalf("encoded size after checkout grew from %d to %d B", first, last)
	}
	if n := items(docs[replicas]).len(); n != inserts {
		t.Fatalf("the replica without GC keeps %d elements, want all %d inserts", n, inserts)
	}
	t.Logf("%d inserts: at most %d elements kept, %d B after each checkout", inserts, maxElems, sizes[len(sizes)-1])
}

// Removing the tail of a list (the usual cart edit) frees it without a
// checkout; removing the head of a list built by appends does not: a
// removed ancestor of a live element stays (docs/crdt.md, rule (c)).
func TestGCTailAndHead(t *testing.T) {
	t.Parallel()
	d := NewDoc()
	mustApply(t, d, 1, 1, Op{Op: "set", Path: "l", Value: json.RawMessage(`[]`)})
	for i := range 10 {
		mustApply(t, d, int64(2+i), 1, Op{Op: "append", Path: "l", Value: json.RawMessage(strconv.Itoa(i))})
	}
	l := d.root.get("l").val.(*list)
	for i := 9; i >= 5; i-- {
		mustApply(t, d, 20, 1, Op{Op: "remove", Path: "l." + strconv.Itoa(i)})
	}
	d.GC([]VersionVector{d.Context()})
	if l.len() != 5 {
		t.Fatalf("removed tail kept: %d elements", l.len())
	}
	for range 3 {
		mustApply(t, d, 30, 1, Op{Op: "remove", Path: "l.0"})
	}
	d.GC([]VersionVector{d.Context()})
	if l.len() != 5 || l.visible() != 2 {
		t.Fatalf("removed head: %d elements, %d visible; want the 3 removed ancestors kept", l.len(), l.visible())
	}
	for range 2 {
		mustApply(t, d, 40, 1, Op{Op: "remove", Path: "l.0"})
	}
	d.GC([]VersionVector{d.Context()})
	if l.len() != 0 {
		t.Fatalf("emptied list keeps %d elements", l.len())
	}
	if got := mustJSON(t, d); got != `{"l":[]}` {
		t.Fatal(got)
	}
}

func maxInt(s []int) int {
	m := 0
	for _, v := range s {
		m = max(m, v)
	}
	return m
}

// A local insert never anchors on a tombstone (rule (a)): whatever was
// removed around the insertion point, the new element's parent is visible
// or the virtual root.
func TestInsertAnchorsOnVisible(t *testing.T) {
	t.Parallel()
	c := arrayCluster(t, 99, 1)
	d := c.docs[0]
	for k := range 3000 {
		c.arrayOp(0)
		l := d.root.get("l").val.(*list)
		x, err := DecodeDelta(c.log[len(c.log)-1])
		if err != nil {
			t.Fatal(err)
		}
		f := x.root.fields[0].head.val.(*fragList)
		for _, fe := range f.elems {
			if !fe.pos || fe.parent == (Dot{}) {
				continue
			}
			if p := l.find(fe.parent); p == nil || p.head == nil {
				t.Fatalf("step %d: new element %v anchored on removed element %v", k, fe.id, fe.parent)
			}
		}
		if k%50 == 0 {
			d.GC([]VersionVector{d.Context()})
		}
	}
	if got, want := strings.Count(mustJSON(t, d), `"v"`), d.root.get("l").val.(*list).visible(); got != want {
		t.Fatalf("JSON has %d items, list %d", got, want)
	}
}

func mustJSON(t *testing.T, d *Doc) string {
	t.Helper()
	j, err := d.JSON()
	if err != nil {
		t.Fatal(err)
	}
	return string(j)
}

// Small objects written whole are kept packed (the cart memory goal); a
// replica that expanded one (to edit inside, or for a failed Apply) encodes
// exactly like one that did not, and edits inside merge as before.
func TestPackedObjects(t *testing.T) {
	t.Parallel()
	a, b := NewDoc(), NewDoc()
	for _, x := range []*Delta{
		mustApply(t, a, 1, 1, Op{Op: "set", Path: "items", Value: json.RawMessage(`[]`)}),
		mustApply(t, a, 2, 1, Op{Op: "append", Path: "items", Value: json.RawMessage(`{"sku":"a","qty":1,"opt":{"gift":true}}`)}),
		mustApply(t, a, 3, 1, Op{Op: "append", Path: "items", Value: json.RawMessage(`{"sku":"b","qty":2}`)}),
	} {
		if err := b.Merge(x); err != nil {
			t.Fatal(err)
		}
	}
	items := func(d *Doc) *list { return d.root.get("items").val.(*list) }
	for _, d := range []*Doc{a, b} {
		if _, ok := items(d).at(0).head.val.(*packed); !ok {
			t.Fatalf("item kept as %T, want packed", items(d).at(0).head.val)
		}
	}
	// a failed Apply expands item 0 on b
	if _, err := b.Apply(2, 4, Op{Op: "set", Path: "items.0.qty", Value: json.RawMessage(`5`)}, Op{Op: "bogus"}); err == nil {
		t.Fatal("bogus op applied")
	}
	if _, ok := items(b).at(0).head.val.(*object); !ok {
		t.Fatal("item 0 not expanded by the failed Apply")
	}
	ea, _ := a.MarshalBinary()
	eb, _ := b.MarshalBinary()
	if !bytes.Equal(ea, eb) || mustJSON(t, a) != mustJSON(t, b) {
		t.Fatal("a packed and an expanded object encode differently")
	}
	// concurrent edits inside packed items, merged both ways
	x := mustApply(t, a, 5, 1, Op{Op: "increment", Path: "items.1.qty", Value: json.RawMessage(`3`)})
	y := mustApply(t, b, 5, 2, Op{Op: "set", Path: "items.0.opt.gift", Value: json.RawMessage(`false`)})
	if err := a.Merge(y); err != nil {
		t.Fatal(err)
	}
	if err := b.Merge(x); err != nil {
		t.Fatal(err)
	}
	want := `{"items":[{"opt":{"gift":false},"qty":1,"sku":"a"},{"qty":5,"sku":"b"}]}`
	for _, d := range []*Doc{a, b} {
		if got := mustJSON(t, d); got != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
	ea, _ = a.MarshalBinary()
	eb, _ = b.MarshalBinary()
	if !bytes.Equal(ea, eb) {
		t.Fatal("replicas diverged after edits inside packed objects")
	}
	d, err := DecodeDoc(ea)
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := d.MarshalBinary(); !bytes.Equal(e, ea) {
		t.Fatal("decoded document encodes differently")
	}
}
