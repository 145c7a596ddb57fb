package crdt

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// cluster simulates replicas of one document exchanging deltas through an
// unreliable network: any delta may be delivered late, twice, or not until
// the final anti-entropy round.
type cluster struct {
	t    *testing.T
	rng  *rand.Rand
	docs []*Doc
	ids  []ReplicaID
	log  [][]byte // every delta ever produced, encoded
	now  []int64  // per-replica physical clocks, skewed and sometimes stepping back

	// Acknowledgements travel like deltas: ackLog holds every ack sent
	// (from, context), delivered late, twice or never until the end;
	// acks[i][j] holds the acks replica i has received from j.
	ackLog []ackMsg
	acks   [][][]VersionVector
	// array elements GC dropped before the final exchange, and in all
	dropsBefore, drops int
}

type ackMsg struct {
	from int
	ctx  VersionVector
}

// ack records replica i's current context as an acknowledgement in flight.
func (c *cluster) ack(i int) {
	c.ackLog = append(c.ackLog, ackMsg{i, c.docs[i].Context()})
}

func (c *cluster) deliverAck(i int, m ackMsg) {
	if c.acks == nil {
		c.acks = make([][][]VersionVector, len(c.docs))
		for k := range c.acks {
			c.acks[k] = make([][]VersionVector, len(c.docs))
		}
	}
	c.acks[i][m.from] = append(c.acks[i][m.from], m.ctx)
}

// gc runs GC on replica i with, for every other replica, the newest ack it
// received, or (as the store should, since GC collects array tombstones
// only when it has applied every ack it is given) the newest one its own
// context covers; for itself, its context.
func (c *cluster) gc(i int) {
	acks := make([]VersionVector, len(c.docs))
	ctx := c.docs[i].Context()
	covered := c.rng.IntN(2) == 0
	for j := range c.docs {
		if j == i {
			acks[j] = ctx
			continue
		}
		if c.acks == nil {
			continue
		}
		for _, a := range c.acks[i][j] {
			// a replica's contexts only grow: the newer covers the older
			if (!covered || ctx.Covers(a)) && a.Covers(acks[j]) {
				acks[j] = a
			}
		}
	}
	n0 := countElems(&c.docs[i].root)
	c.docs[i].GC(acks)
	c.drops += n0 - countElems(&c.docs[i].root)
	c.checkElems(i)
}

// checkElems checks that the document's element bound still holds after GC
// and that the state still decodes.
func (c *cluster) checkElems(i int) {
	d := c.docs[i]
	if n := countElems(&d.root); n > d.elems {
		c.t.Fatalf("replica %d holds %d elements, above its bound %d", c.ids[i], n, d.elems)
	}
	if _, err := DecodeDoc(c.encode(d)); err != nil {
		c.t.Fatalf("replica %d: state after GC does not decode: %v", c.ids[i], err)
	}
}

// settleAcks has every replica ack its context and every ack delivered.
func (c *cluster) settleAcks() {
	for i := range c.docs {
		c.ack(i)
	}
	for i := range c.docs {
		for _, m := range c.ackLog {
			c.deliverAck(i, m)
		}
	}
}

func newCluster(t *testing.T, seed uint64, n int) *cluster {
	c := &cluster{t: t, rng: rand.New(rand.NewPCG(seed, seed*7919+1))}
	for i := range n {
		c.docs = append(c.docs, NewDoc())
		c.ids = append(c.ids, ReplicaID(i*3+1)) // sparse ids, as the mesh assigns them
		c.now = append(c.now, 1_700_000_000_000_000_000+int64(c.rng.IntN(1000)))
	}
	return c
}

func (c *cluster) tick(i int) int64 {
	c.now[i] += int64(c.rng.IntN(1000)) - 100
	return c.now[i]
}

func (c *cluster) encode(d *Doc) []byte {
	b, err := d.MarshalBinary()
	if err != nil {
		c.t.Fatal(err)
	}
	return b
}

// apply runs 1-3 random ops on replica i; a failed Apply must leave no trace.
func (c *cluster) apply(i int) (*Delta, []Op) {
	d := c.docs[i]
	var ops []Op
	for range 1 + c.rng.IntN(3)*c.rng.IntN(2) {
		ops = append(ops, randOp(c.rng, d.Value()))
	}
	before := c.encode(d)
	x, err := d.Apply(c.ids[i], c.tick(i), ops...)
	if err != nil {
		if after := c.encode(d); !bytes.Equal(before, after) {
			c.t.Fatalf("failed Apply changed the document: %v\nops %+v", err, ops)
		}
		if !strings.HasPrefix(err.Error(), "op ") {
			c.t.Fatalf("error does not name the op: %v", err)
		}
		return nil, ops
	}
	// every state Apply produces must decode (and the context must grow)
	if _, err := DecodeDoc(c.encode(d)); err != nil {
		c.t.Fatalf("state after %+v does not decode: %v", ops, err)
	}
	if len(x.Events()) == 0 {
		c.t.Fatalf("Apply of %+v created no event: receivers would drop the delta", ops)
	}
	b, err := x.MarshalBinary()
	if err != nil {
		c.t.Fatal(err)
	}
	c.log = append(c.log, b)
	return x, ops
}

func (c *cluster) deliver(i int, b []byte) {
	x, err := DecodeDelta(b)
	if err != nil {
		c.t.Fatalf("decode delta: %v", err)
	}
	if err := c.docs[i].Merge(x); err != nil {
		c.t.Fatalf("replica %d merge: %v", c.ids[i], err)
	}
}

// settle delivers every delta to every replica, shuffled and duplicated.
func (c *cluster) settle() {
	for i := range c.docs {
		order := c.rng.Perm(len(c.log))
		order = append(order, c.rng.Perm(len(c.log))[:len(c.log)/3]...)
		for _, k := range order {
			c.deliver(i, c.log[k])
		}
		if n := c.docs[i].Pending(); n != 0 {
			c.t.Fatalf("replica %d still has %d pending deltas after full delivery", c.ids[i], n)
		}
	}
}

func (c *cluster) stable() VersionVector {
	s := c.docs[0].Context()
	for _, d := range c.docs[1:] {
		s = s.Meet(d.Context())
	}
	return s
}

func (c *cluster) assertConverged() []byte {
	first := c.encode(c.docs[0])
	j0, _ := c.docs[0].JSON()
	for i, d := range c.docs[1:] {
		b := c.encode(d)
		if !bytes.Equal(first, b) {
			j, _ := d.JSON()
			c.t.Fatalf("replica %d diverged from replica %d:\n%s\n%s", c.ids[i+1], c.ids[0], j0, j)
		}
	}
	// the encoding round-trips exactly
	d2, err := DecodeDoc(first)
	if err != nil {
		c.t.Fatalf("decode converged doc: %v", err)
	}
	if b := c.encode(d2); !bytes.Equal(b, first) {
		c.t.Fatal("decode/encode of a document is not the identity")
	}
	if j, _ := d2.JSON(); !bytes.Equal(j, j0) {
		c.t.Fatalf("decoded JSON differs: %s vs %s", j, j0)
	}
	return first
}

func runConcurrent(t *testing.T, seed uint64, replicas, steps int, gc bool) *cluster {
	c := newCluster(t, seed, replicas)
	for range steps {
		i := c.rng.IntN(replicas)
		switch p := c.rng.IntN(100); {
		case p < 55:
			c.apply(i)
		case p < 92:
			if len(c.log) > 0 {
				// recent deltas are more likely: out-of-order, not uniformly random
				k := len(c.log) - 1 - c.rng.IntN(min(len(c.log), 12))
				if c.rng.IntN(4) == 0 {
					k = c.rng.IntN(len(c.log))
				}
				c.deliver(i, c.log[k])
			}
		case p < 96:
			j := c.rng.IntN(replicas)
			snap, err := c.docs[j].Snapshot().MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			c.deliver(i, snap)
		case p < 98:
			// restart from the stored bytes, pending deltas included
			d, err := DecodeDoc(c.encode(c.docs[i]))
			if err != nil {
				t.Fatalf("reload replica %d: %v", c.ids[i], err)
			}
			if !bytes.Equal(c.encode(d), c.encode(c.docs[i])) {
				t.Fatal("reloaded document encodes differently")
			}
			c.docs[i] = d
		default:
			if gc {
				c.gc(i)
			}
		}
		if gc {
			c.randomAcks(i)
		}
	}
	c.finish(gc)
	return c
}

// randomAcks has replica i acknowledge its context half the time, and
// delivers a few acks, recent ones more likely: late, duplicated, some
// only at the end.
func (c *cluster) randomAcks(i int) {
	if c.rng.IntN(2) == 0 {
		c.ack(i)
	}
	for range 2 {
		if len(c.ackLog) > 0 {
			k := len(c.ackLog) - 1 - c.rng.IntN(min(len(c.ackLog), 8))
			if c.rng.IntN(4) == 0 {
				k = c.rng.IntN(len(c.ackLog))
			}
			c.deliverAck(c.rng.IntN(len(c.docs)), c.ackLog[k])
		}
	}
}

// finish delivers everything, then (with gc) exchanges acks, collects on
// every replica and checks that GC changed no value; all replicas must then
// encode identically.
func (c *cluster) finish(gc bool) {
	t := c.t
	c.dropsBefore = c.drops
	c.settle()
	if gc {
		c.settleAcks()
		for i := range c.docs {
			c.gc(i)
		}
		// GC never changes what the document reads: compare with a
		// replica that merged every delta and never collected.
		plain := NewDoc()
		for _, b := range c.log {
			x, err := DecodeDelta(b)
			if err != nil {
				t.Fatal(err)
			}
			if err := plain.Merge(x); err != nil {
				t.Fatal(err)
			}
		}
		if got, want := canon(c.docs[0].Value()), canon(plain.Value()); got != want {
			t.Fatalf("GC changed the value:\ngot  %s\nwant %s", got, want)
		}
	}
	c.assertConverged()
}

func TestConvergenceRandom(t *testing.T) {
	t.Parallel()
	for seed := range uint64(60) {
		replicas := 3 + int(seed%3)
		t.Run(fmt.Sprintf("seed%d_r%d", seed, replicas), func(t *testing.T) {
			runConcurrent(t, seed, replicas, 300, false)
		})
	}
}

func TestConvergenceWithGC(t *testing.T) {
	t.Parallel()
	total := 0
	t.Cleanup(func() {
		if total == 0 {
			t.Error("GC dropped no array element: the test exercises nothing")
		}
	})
	for seed := range uint64(40) {
		replicas := 3 + int(seed%3)
		t.Run(fmt.Sprintf("seed%d_r%d", seed, replicas), func(t *testing.T) {
			c := runConcurrent(t, 1000+seed, replicas, 300, true)
			total += c.drops
			// after GC at a stable point, no slot keeps a losing value and
			// every tombstone left has a live element below it
			walkSlots(&c.docs[0].root, func(h *node) {
				if h.sibling() != nil && !isImplicit(h) {
					t.Fatalf("slot still holds %d concurrent values after GC", slotLen(h))
				}
				if l, ok := h.val.(*list); ok {
					if n := deadLeaves(l); n > 0 {
						t.Fatalf("%d tombstones without live descendants survive a GC at a stable point", n)
					}
				}
			})
		})
	}
}

// deadLeaves counts the tombstones of l with no live element in their subtree.
func deadLeaves(l *list) int {
	n := 0
	var live func(e *elem) bool
	live = func(e *elem) bool {
		any := e.head != nil
		for _, c := range []*elem{e.left, e.right} {
			for ; c != nil; c = c.next {
				if live(c) {
					any = true
				}
			}
		}
		if !any {
			n++
		}
		return any
	}
	for c := l.top; c != nil; c = c.next {
		live(c)
	}
	return n
}

func slotLen(h *node) int {
	n := 0
	for ; h != nil; h = h.sibling() {
		n++
	}
	return n
}

func walkSlots(o *object, f func(*node)) {
	for _, fl := range o.fields {
		walkSlot(fl.head, f)
	}
}

func walkSlot(h *node, f func(*node)) {
	f(h)
	for n := h; n != nil; n = n.sibling() {
		switch v := n.val.(type) {
		case *object:
			walkSlots(v, f)
		case *list:
			v.each(func(e *elem) bool {
				if e.head != nil {
					walkSlot(e.head, f)
				}
				return true
			})
		}
	}
}

// Without concurrency, every replica reads what the sequential model reads.
func TestSequentialMatchesModel(t *testing.T) {
	t.Parallel()
	for seed := range uint64(40) {
		replicas := 3 + int(seed%3)
		t.Run(fmt.Sprintf("seed%d_r%d", seed, replicas), func(t *testing.T) {
			c := newCluster(t, 5000+seed, replicas)
			seen := make([]int, replicas) // prefix of the log each replica has merged
			model := map[string]any{}
			for range 250 {
				i := c.rng.IntN(replicas)
				// catch up first, in a scrambled order: no op is concurrent
				missing := c.rng.Perm(len(c.log) - seen[i])
				for _, k := range missing {
					c.deliver(i, c.log[seen[i]+k])
				}
				seen[i] = len(c.log)
				x, ops := c.apply(i)
				next, merr := modelApplyAll(model, ops)
				if (x == nil) != (merr != nil) {
					t.Fatalf("crdt and model disagree on validity of %+v: model err %v", ops, merr)
				}
				if x != nil {
					model = next
					seen[i] = len(c.log)
				}
				if got, want := canon(c.docs[i].Value()), canon(model); got != want {
					t.Fatalf("after %+v\ngot  %s\nwant %s", ops, got, want)
				}
				if c.rng.IntN(4) == 0 {
					// collect with every replica's current context as its ack
					var acks []VersionVector
					for _, d := range c.docs {
						acks = append(acks, d.Context())
					}
					c.docs[i].GC(acks)
					c.checkElems(i)
				}
			}
			c.finish(true) // replicas collected at different points: a final GC aligns them
			if got, want := canon(c.docs[0].Value()), canon(model); got != want {
				t.Fatalf("final\ngot  %s\nwant %s", got, want)
			}
		})
	}
}

// Concurrent runs of inserts at the same place never interleave.
func TestListRunsDoNotInterleave(t *testing.T) {
	t.Parallel()
	for seed := range uint64(60) {
		rng := rand.New(rand.NewPCG(seed, 99))
		replicas := 2 + int(seed%4)
		base := NewDoc()
		base0 := 1 + rng.IntN(5)
		items := make([]string, base0)
		for k := range items {
			items[k] = fmt.Sprintf(`"base%d"`, k)
		}
		mustApply(t, base, 100, 1, Op{Op: "set", Path: "l", Value: []byte("[" + strings.Join(items, ",") + "]")})
		// Remove some elements around the spot: new elements must anchor
		// on visible ones only (rule (a)) and still not interleave.
		for k := base0 - 1; k >= 0; k-- {
			if rng.IntN(2) == 0 {
				mustApply(t, base, 101, 1, Op{Op: "remove", Path: "l." + strconv.Itoa(k)})
			}
		}
		if seed%2 == 0 {
			base.GC([]VersionVector{base.Context()})
		}
		base0 = base.root.get("l").val.(*list).visible()
		snap := base.Snapshot()
		docs := make([]*Doc, replicas)
		var deltas []*Delta
		spot := rng.IntN(base0 + 1) // everyone types at the same place
		for r := range docs {
			docs[r] = NewDoc()
			if err := docs[r].Merge(snap); err != nil {
				t.Fatal(err)
			}
			id := ReplicaID(10 + r)
			n := 2 + rng.IntN(5)
			mode := rng.IntN(3)
			for k := range n {
				var op Op
				v := []byte(fmt.Sprintf(`"r%d-%d"`, r, k))
				switch mode {
				case 0: // typing forwards
					i := spot + k
					op = Op{Op: "insert", Path: "l", Index: &i, Value: v}
				case 1: // typing backwards
					i := spot
					op = Op{Op: "insert", Path: "l", Index: &i, Value: v}
				default:
					op = Op{Op: "append", Path: "l", Value: v}
				}
				x, err := docs[r].Apply(id, int64(200+k), op)
				if err != nil {
					t.Fatal(err)
				}
				deltas = append(deltas, x)
			}
		}
		for r, d := range docs {
			for _, k := range rng.Perm(len(deltas)) {
				if err := d.Merge(deltas[k]); err != nil {
					t.Fatal(err)
				}
			}
			arr := d.Value().(map[string]any)["l"].([]any)
			for rr := range replicas {
				prefix := fmt.Sprintf("r%d-", rr)
				first, last, count := -1, -1, 0
				for i, v := range arr {
					if strings.HasPrefix(v.(string), prefix) {
						if first < 0 {
							first = i
						}
						last = i
						count++
					}
				}
				if last-first+1 != count {
					t.Fatalf("seed %d replica %d: run of %s interleaves: %v", seed, r, prefix, arr)
				}
			}
		}
	}
}

func mustApply(t testing.TB, d *Doc, now int64, r ReplicaID, ops ...Op) *Delta {
	t.Helper()
	x, err := d.Apply(r, now, ops...)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func TestEventsAreContiguous(t *testing.T) {
	t.Parallel()
	d := NewDoc()
	mustApply(t, d, 1, 7, Op{Op: "set", Path: "x", Value: []byte("1")})
	x := mustApply(t, d, 2, 7, Op{Op: "set", Path: "a", Value: []byte(`{"b":[1,2,{"c":3}]}`)})
	ev := x.Events()
	// a, b, three elements, c: six events after the first one
	if len(ev) != 1 || ev[0] != (EventRange{7, 2, 7}) {
		t.Fatalf("events %v", ev)
	}
	if got := d.Context().Get(7); got != 7 {
		t.Fatalf("context %v", d.Context())
	}
}

// An Apply that fails after an append that split a B+ tree leaf must leave
// a list that still appends at the end.
func TestUndoAppendAcrossLeafSplit(t *testing.T) {
	t.Parallel()
	for n := bmax - 2; n <= 3*bmax+2; n++ {
		d := NewDoc()
		mustApply(t, d, 1, 1, Op{Op: "set", Path: "l", Value: []byte("[]")})
		for i := range n {
			mustApply(t, d, int64(2+i), 1, Op{Op: "append", Path: "l", Value: []byte(strconv.Itoa(i))})
		}
		before, _ := d.MarshalBinary()
		_, err := d.Apply(1, 1000, Op{Op: "append", Path: "l", Value: []byte("-1")}, Op{Op: "prepend", Path: "l", Value: []byte("-2")},
			Op{Op: "increment", Path: "l", Value: []byte("1")})
		if err == nil {
			t.Fatal("increment of an array succeeded")
		}
		if after, _ := d.MarshalBinary(); !bytes.Equal(before, after) {
			t.Fatalf("n=%d: failed Apply changed the document", n)
		}
		mustApply(t, d, 2000, 1, Op{Op: "append", Path: "l", Value: []byte("9999")})
		mustApply(t, d, 2001, 1, Op{Op: "prepend", Path: "l", Value: []byte("-9")})
		arr := d.Value().(map[string]any)["l"].([]any)
		if len(arr) != n+2 || arr[n+1] != int64(9999) || arr[0] != int64(-9) {
			t.Fatalf("n=%d: after undo, append/prepend misplaced: len %d first %v last %v", n, len(arr), arr[0], arr[len(arr)-1])
		}
	}
}

// Metadata stays bounded: rounds of concurrent overwrites of the same keys
// (and of array elements) by every replica, each round followed by a full
// exchange and a GC at the stable point, leave a document whose size does
// not grow with the number of rounds.
func TestGCBoundsMetadata(t *testing.T) {
	t.Parallel()
	const replicas = 4
	docs := make([]*Doc, replicas)
	for i := range docs {
		docs[i] = NewDoc()
	}
	x := mustApply(t, docs[0], 1, 1, Op{Op: "set", Path: "", Value: []byte(`{"k":0,"o":{"a":0},"l":[0,1,2]}`)})
	for _, d := range docs[1:] {
		if err := d.Merge(x); err != nil {
			t.Fatal(err)
		}
	}
	var sizes []int
	for round := range 200 {
		var deltas []*Delta
		for i, d := range docs {
			v := []byte(strconv.Itoa(round*10 + i))
			deltas = append(deltas, mustApply(t, d, int64(100+round), ReplicaID(i+1),
				Op{Op: "set", Path: "k", Value: v},
				Op{Op: "set", Path: "o.a", Value: v},
				Op{Op: "set", Path: "l.1", Value: v},
				Op{Op: "increment", Path: "n", Value: []byte("1")}))
		}
		for _, d := range docs {
			for _, x := range deltas {
				if err := d.Merge(x); err != nil {
					t.Fatal(err)
				}
			}
		}
		var acks []VersionVector
		for _, d := range docs {
			acks = append(acks, d.Context())
		}
		multi := 0
		walkSlots(&docs[0].root, func(h *node) {
			if h.sibling() != nil && !isImplicit(h) {
				multi++
			}
		})
		if multi != 3 {
			t.Fatalf("round %d: %d slots hold concurrent values before GC, want 3", round, multi)
		}
		for _, d := range docs {
			d.GC(acks)
		}
		walkSlots(&docs[0].root, func(h *node) {
			if h.sibling() != nil && !isImplicit(h) {
				t.Fatalf("round %d: a slot keeps %d values after GC", round, slotLen(h))
			}
		})
		b, _ := docs[0].MarshalBinary()
		for _, d := range docs[1:] {
			if b2, _ := d.MarshalBinary(); !bytes.Equal(b, b2) {
				t.Fatalf("round %d: replicas diverged", round)
			}
		}
		sizes = append(sizes, len(b))
	}
	// varints grow a little as event numbers grow; the size must not grow
	// with the number of overwritten values (4 replicas x 3 slots per round)
	if first, last := sizes[9], sizes[len(sizes)-1]; last > first+32 {
		t.Fatalf("encoded size grew from %d to %d B over %d rounds", first, last, len(sizes))
	}
	if v := docs[0].Value().(map[string]any)["n"]; v != int64(200*replicas) {
		t.Fatalf("implicit counters lost increments: %v", v)
	}
}

// Setting the root to {} creates no value; it must still be an event, or the
// document's context gains a zero entry (refused by DecodeDoc) and receivers
// ignore the delta as a duplicate (the keys it removed survive elsewhere).
func TestSetEmptyRoot(t *testing.T) {
	t.Parallel()
	a, b := NewDoc(), NewDoc()
	x := mustApply(t, a, 1, 4, Op{Op: "set", Path: "", Value: []byte(`{}`)})
	for _, d := range []*Doc{a, b} {
		if err := d.Merge(x); err != nil {
			t.Fatal(err)
		}
		for _, e := range d.Context() {
			if e.N == 0 {
				t.Fatalf("context %v has a zero entry", d.Context())
			}
		}
		enc, _ := d.MarshalBinary()
		if _, err := DecodeDoc(enc); err != nil {
			t.Fatalf("state after set {} does not decode: %v", err)
		}
	}
	if got := a.Context().Get(4); got != 1 {
		t.Fatalf("set {} took %d events, want 1", got)
	}
	y := mustApply(t, a, 2, 4, Op{Op: "set", Path: "k", Value: []byte(`1`)})
	if err := b.Merge(y); err != nil {
		t.Fatal(err)
	}
	z := mustApply(t, b, 3, 5, Op{Op: "set", Path: "", Value: []byte(`{}`)})
	if err := a.Merge(z); err != nil {
		t.Fatal(err)
	}
	for _, d := range []*Doc{a, b} {
		if j, _ := d.JSON(); string(j) != `{}` {
			t.Fatalf("after a remote set {} the document reads %s, want {}", j)
		}
	}
	ea, _ := a.MarshalBinary()
	eb, _ := b.MarshalBinary()
	if !bytes.Equal(ea, eb) {
		t.Fatal("replicas diverged after set {}")
	}
	// A zero component never enters a vector.
	if v := VersionVector(nil).Merge(VersionVector{{R: 3, N: 0}}); len(v) != 0 {
		t.Fatalf("Merge kept a zero entry: %v", v)
	}
}
