package crdt

import (
	"fmt"
	"math"
	"math/bits"
	"slices"
)

// PNCounter is a counter that any replica may increment or decrement;
// concurrent changes add up. Each replica owns one grow-only pair of totals,
// so a join is a pointwise maximum and the metadata is one entry per replica.
type PNCounter struct {
	c counter
}

// Add adds n (negative to subtract) as replica r and returns the delta: r's
// entry alone. Each replica's totals of increments and of decrements only
// grow and are uint64: keeping either below 2^64 is the caller's concern.
func (p *PNCounter) Add(r ReplicaID, n int64) *PNCounter {
	p.c.add(r, n)
	i, _ := p.c.entry(r)
	return &PNCounter{c: counter{ents: []ctrEnt{p.c.ents[i]}}}
}

// Value returns the sum of all increments minus all decrements, computed
// exactly; a sum outside the int64 range (concurrent replicas' changes can
// add up past it) reads as math.MaxInt64 or math.MinInt64 rather than
// wrapping around.
func (p *PNCounter) Value() int64 {
	s := p.c.net()
	if v, ok := s.int64(); ok {
		return v
	}
	if s.hi < 0 {
		return math.MinInt64
	}
	return math.MaxInt64
}

// Merge joins a delta or another replica's state into p.
func (p *PNCounter) Merge(o *PNCounter) { p.c.join(&o.c) }

// MarshalBinary encodes the counter (version 1).
func (p *PNCounter) MarshalBinary() ([]byte, error) {
	w := &writer{}
	w.header(kindPNCounter)
	w.uvarint(uint64(len(p.c.ents)))
	for _, e := range p.c.ents {
		w.uvarint(uint64(e.R))
		w.uvarint(e.Inc)
		w.uvarint(e.Dec)
	}
	return w.b, nil
}

// DecodePNCounter decodes a PNCounter; hostile input yields an error.
func DecodePNCounter(b []byte) (*PNCounter, error) {
	r := newReader(b)
	r.header(kindPNCounter, "PN counter")
	n := r.count("counter entry")
	p := &PNCounter{c: counter{ents: make([]ctrEnt, 0, n)}}
	for i := 0; i < n && r.err == nil; i++ {
		e := ctrEnt{R: ReplicaID(r.u32("replica")), Inc: r.uvarint(), Dec: r.uvarint()}
		if i > 0 && e.R <= p.c.ents[i-1].R {
			r.fail("entries not sorted by replica")
		}
		p.c.ents = append(p.c.ents, e)
	}
	r.end("PN counter")
	if r.err != nil {
		return nil, fmt.Errorf("decode PN counter: %w", r.err)
	}
	return p, nil
}

// BCounter is a bounded counter that never goes below zero without any
// coordination on the decrement path (escrow, after Balegas et al., "Putting
// consistency back into eventual consistency", 2015). Increments create
// rights for the replica that makes them; a replica decrements only within
// its own rights and hands rights to another replica with Transfer.
//
// Every replica's row (its increments, decrements and outgoing transfers)
// only grows and is written only by that replica, so a join is a pointwise
// maximum. Deltas are the whole counter (O(replicas²) numbers, a few dozen
// bytes): a delta then always carries the increments and incoming transfers
// its sender's rights came from, which is what makes the value non-negative
// on every replica under any delivery order, not only causal delivery.
type BCounter struct {
	rows []bcRow      // sorted by replica
	xfer []bcTransfer // sorted by (From, To)
}

type bcRow struct {
	R        ReplicaID
	Inc, Dec uint64
}

type bcTransfer struct {
	From, To ReplicaID
	N        uint64
}

// maxBC bounds every total so sums of rights never overflow.
const maxBC = math.MaxInt64 / 2

func (b *BCounter) row(r ReplicaID) *bcRow {
	i, ok := slices.BinarySearchFunc(b.rows, r, func(e bcRow, r ReplicaID) int { return cmpReplica(e.R, r) })
	if !ok {
		b.rows = slices.Insert(b.rows, i, bcRow{R: r})
	}
	return &b.rows[i]
}

func cmpXfer(a bcTransfer, from, to ReplicaID) int {
	if c := cmpReplica(a.From, from); c != 0 {
		return c
	}
	return cmpReplica(a.To, to)
}

func (b *BCounter) transfer(from, to ReplicaID) *bcTransfer {
	i, ok := slices.BinarySearchFunc(b.xfer, bcTransfer{From: from, To: to}, func(e, k bcTransfer) int { return cmpXfer(e, k.From, k.To) })
	if !ok {
		b.xfer = slices.Insert(b.xfer, i, bcTransfer{From: from, To: to})
	}
	return &b.xfer[i]
}

// Rights returns how much replica r may still decrement or transfer.
func (b *BCounter) Rights(r ReplicaID) int64 {
	var have, spent uint64
	for _, e := range b.rows {
		if e.R == r {
			have += e.Inc
			spent += e.Dec
		}
	}
	for _, t := range b.xfer {
		if t.To == r {
			have += t.N
		}
		if t.From == r {
			spent += t.N
		}
	}
	return int64(have) - int64(spent)
}

// Value returns increments minus decrements: the sum of every replica's rights.
func (b *BCounter) Value() int64 {
	var inc, dec uint64
	for _, e := range b.rows {
		inc += e.Inc
		dec += e.Dec
	}
	return int64(inc) - int64(dec)
}

// Replicas returns the replicas that appear in the counter.
func (b *BCounter) Replicas() []ReplicaID {
	var out []ReplicaID
	for _, e := range b.rows {
		out = append(out, e.R)
	}
	for _, t := range b.xfer {
		out = append(out, t.From, t.To)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (b *BCounter) clone() *BCounter {
	return &BCounter{rows: slices.Clone(b.rows), xfer: slices.Clone(b.xfer)}
}

func checkAmount(n uint64, total uint64) error {
	if s, c := bits.Add64(n, total, 0); c != 0 || s > maxBC {
		return fmt.Errorf("amount %d would take the counter past %d", n, uint64(maxBC))
	}
	return nil
}

// Increment adds n as replica r, which gains n rights. It returns the delta.
func (b *BCounter) Increment(r ReplicaID, n uint64) (*BCounter, error) {
	var total uint64
	for _, e := range b.rows {
		total += e.Inc
	}
	if err := checkAmount(n, total); err != nil {
		return nil, err
	}
	b.row(r).Inc += n
	return b.clone(), nil
}

// Decrement subtracts n as replica r, within r's rights. It returns the delta.
func (b *BCounter) Decrement(r ReplicaID, n uint64) (*BCounter, error) {
	if have := b.Rights(r); have < 0 || uint64(have) < n {
		return nil, fmt.Errorf("replica %d holds %d rights, cannot decrement by %d; obtain a transfer from another replica or take at the central PoP", r, max(have, 0), n)
	}
	b.row(r).Dec += n
	return b.clone(), nil
}

// Transfer moves n of from's rights to replica to. It returns the delta.
func (b *BCounter) Transfer(from, to ReplicaID, n uint64) (*BCounter, error) {
	if from == to {
		return nil, fmt.Errorf("transfer from replica %d to itself", from)
	}
	if have := b.Rights(from); have < 0 || uint64(have) < n {
		return nil, fmt.Errorf("replica %d holds %d rights, cannot transfer %d", from, max(have, 0), n)
	}
	b.transfer(from, to).N += n
	return b.clone(), nil
}

// Merge joins a delta or another replica's state into b.
func (b *BCounter) Merge(o *BCounter) {
	for _, e := range o.rows {
		r := b.row(e.R)
		r.Inc = max(r.Inc, e.Inc)
		r.Dec = max(r.Dec, e.Dec)
	}
	for _, t := range o.xfer {
		x := b.transfer(t.From, t.To)
		x.N = max(x.N, t.N)
	}
}

// MarshalBinary encodes the counter (version 1).
func (b *BCounter) MarshalBinary() ([]byte, error) {
	w := &writer{}
	w.header(kindBCounter)
	w.uvarint(uint64(len(b.rows)))
	for _, e := range b.rows {
		w.uvarint(uint64(e.R))
		w.uvarint(e.Inc)
		w.uvarint(e.Dec)
	}
	w.uvarint(uint64(len(b.xfer)))
	for _, t := range b.xfer {
		w.uvarint(uint64(t.From))
		w.uvarint(uint64(t.To))
		w.uvarint(t.N)
	}
	return w.b, nil
}

// DecodeBCounter decodes a BCounter. Besides the format it checks the
// escrow invariant (no replica's rights below zero, no total beyond 2^62),
// so a decoded counter can be merged without breaking it.
func DecodeBCounter(b []byte) (*BCounter, error) {
	r := newReader(b)
	r.header(kindBCounter, "bounded counter")
	n := r.count("row")
	c := &BCounter{rows: make([]bcRow, 0, n)}
	for i := 0; i < n && r.err == nil; i++ {
		e := bcRow{R: ReplicaID(r.u32("replica")), Inc: r.uvarint(), Dec: r.uvarint()}
		if i > 0 && e.R <= c.rows[i-1].R {
			r.fail("rows not sorted by replica")
		}
		c.rows = append(c.rows, e)
	}
	n = r.count("transfer")
	c.xfer = make([]bcTransfer, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		t := bcTransfer{From: ReplicaID(r.u32("replica")), To: ReplicaID(r.u32("replica")), N: r.uvarint()}
		if t.From == t.To {
			r.fail("transfer from replica %d to itself", t.From)
		}
		if i > 0 && cmpXfer(c.xfer[i-1], t.From, t.To) >= 0 {
			r.fail("transfers not sorted")
		}
		c.xfer = append(c.xfer, t)
	}
	r.end("bounded counter")
	if r.err != nil {
		return nil, fmt.Errorf("decode bounded counter: %w", r.err)
	}
	var inc, moved uint64
	for _, e := range c.rows {
		if checkAmount(e.Inc, inc) != nil {
			return nil, fmt.Errorf("decode bounded counter: increments exceed %d", uint64(maxBC))
		}
		inc += e.Inc
	}
	for _, t := range c.xfer {
		if checkAmount(t.N, moved) != nil {
			return nil, fmt.Errorf("decode bounded counter: transfers exceed %d", uint64(maxBC))
		}
		moved += t.N
	}
	for _, e := range c.rows {
		if e.Dec > maxBC {
			return nil, fmt.Errorf("decode bounded counter: replica %d decrements exceed %d", e.R, uint64(maxBC))
		}
	}
	for _, id := range c.Replicas() {
		if c.Rights(id) < 0 {
			return nil, fmt.Errorf("decode bounded counter: replica %d spent more rights than it held", id)
		}
	}
	return c, nil
}
