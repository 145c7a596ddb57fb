package crdt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"testing"
)

// A run-length encoded array expands far beyond its bytes; the decoder must
// still accept every state Apply produced (the old budget of 2^18 + 8 per
// byte refused 270,000 appends, which encode in a few dozen bytes).
func TestManyAppendsRoundTrip(t *testing.T) {
	t.Parallel()
	const n = 270_000
	d := NewDoc()
	mustApply(t, d, 1, 1, Op{Op: "set", Path: "l", Value: []byte(`[]`)})
	var last *Delta
	for i := range n {
		last = mustApply(t, d, int64(2+i), 1, Op{Op: "append", Path: "l", Value: []byte(strconv.Itoa(i))})
	}
	enc, _ := d.MarshalBinary()
	if len(enc) > 100 {
		t.Fatalf("%d appends encode in %d bytes; the test wants the compact case", n, len(enc))
	}
	d2, err := DecodeDoc(enc)
	if err != nil {
		t.Fatalf("%d appends (%d bytes) do not decode: %v", n, len(enc), err)
	}
	if enc2, _ := d2.MarshalBinary(); !bytes.Equal(enc, enc2) {
		t.Fatal("decode/encode is not the identity")
	}
	snap, _ := d.Snapshot().MarshalBinary()
	x, err := DecodeDelta(snap)
	if err != nil {
		t.Fatalf("snapshot of %d appends does not decode: %v", n, err)
	}
	e := NewDoc()
	if err := e.Merge(x); err != nil {
		t.Fatal(err)
	}
	// the decoded document keeps accepting appends and merges
	if err := d2.Merge(last); err != nil {
		t.Fatal(err)
	}
	mustApply(t, d2, int64(n+10), 2, Op{Op: "append", Path: "l", Value: []byte(`1`)})
}

// TestMaxElements fills a document to exactly MaxElements array elements:
// the state round-trips; one element more is refused by Apply, by Merge and
// by the decoders. Not parallel: it holds a few hundred MB.
func TestMaxElements(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates a few hundred MB")
	}
	arr := "[" + strings.Repeat("0,", MaxElements-2) + "0]" // MaxElements-1 elements
	d := NewDoc()
	mustApply(t, d, 1, 1, Op{Op: "set", Path: "l", Value: []byte(arr)})
	mustApply(t, d, 2, 1, Op{Op: "set", Path: "m", Value: []byte(`[]`)})
	mustApply(t, d, 3, 1, Op{Op: "append", Path: "m", Value: []byte(`{"a":1}`)}) // the last one
	// a remote element, created concurrently, that this document has no room for
	other := NewDoc()
	remote := mustApply(t, other, 4, 2, Op{Op: "set", Path: "r", Value: []byte(`[1]`)})

	enc, _ := d.MarshalBinary()
	d2, err := DecodeDoc(enc)
	if err != nil {
		t.Fatalf("a document of exactly MaxElements elements does not decode: %v", err)
	}
	snap, _ := d.Snapshot().MarshalBinary()
	if _, err := DecodeDelta(snap); err != nil {
		t.Fatalf("its snapshot does not decode: %v", err)
	}

	for _, op := range []Op{
		{Op: "append", Path: "m", Value: []byte(`1`)},
		{Op: "prepend", Path: "l", Value: []byte(`1`)},
		{Op: "set", Path: "k", Value: []byte(`[1]`)},
		{Op: "set", Path: "m.0.a", Value: []byte(`{"b":[1,2]}`)},
	} {
		if _, err := d.Apply(1, 5, op); err == nil || !strings.Contains(err.Error(), "maximum of "+strconv.Itoa(MaxElements)) {
			t.Fatalf("Apply %+v on a full document: err %v, want the MaxElements error", op, err)
		}
	}
	// multi-op: rolled back as a whole, the document still encodes the same
	if _, err := d.Apply(1, 5, Op{Op: "set", Path: "x", Value: []byte(`1`)}, Op{Op: "append", Path: "m", Value: []byte(`1`)}); err == nil {
		t.Fatal("a multi-op Apply past MaxElements succeeded")
	}
	if after, _ := d.MarshalBinary(); !bytes.Equal(after, enc) {
		t.Fatal("a refused Apply changed the document")
	}
	// non-array changes still apply
	mustApply(t, d, 6, 1, Op{Op: "set", Path: "m.0.a", Value: []byte(`2`)})
	// replacing an array reuses its room, even for a value larger than what is left
	mustApply(t, d, 7, 1, Op{Op: "set", Path: "l", Value: []byte(`[1,2,3]`)})
	mustApply(t, d, 8, 1, Op{Op: "append", Path: "m", Value: []byte(`1`)})
	mustApply(t, d, 9, 1, Op{Op: "set", Path: "", Value: []byte(`{"l":` + arr + `}`)})
	if enc, _ := d.MarshalBinary(); func() error { _, err := DecodeDoc(enc); return err }() != nil {
		t.Fatal("the document after replacing its arrays does not decode")
	}

	if err := d2.Merge(remote); err == nil || !strings.Contains(err.Error(), "maximum of") {
		t.Fatalf("Merge past MaxElements: err %v", err)
	}
	if after, _ := d2.MarshalBinary(); !bytes.Equal(after, enc) {
		t.Fatal("a refused Merge changed the document")
	}

	// One element more, built behind Apply's back: both decoders refuse it.
	over := d2.root.get("r")
	if over != nil {
		t.Fatal("the refused merge left a value")
	}
	l := d2.root.get("m").val.(*list)
	id := Dot{1, d2.ctx.Get(1) + 1}
	l.attachRight(l.last(), &elem{id: id, head: &node{id: Dot{1, id.S + 1}, val: int64(7)}})
	d2.ctx = d2.ctx.set(1, id.S+1)
	big, _ := d2.MarshalBinary()
	if _, err := DecodeDoc(big); err == nil || !strings.Contains(err.Error(), "MaxElements") {
		t.Fatalf("DecodeDoc of MaxElements+1 elements: err %v", err)
	}
	bigSnap, _ := d2.Snapshot().MarshalBinary()
	if _, err := DecodeDelta(bigSnap); err == nil || !strings.Contains(err.Error(), "MaxElements") {
		t.Fatalf("DecodeDelta of MaxElements+1 elements: err %v", err)
	}
	if len(big) > 200 {
		t.Logf("note: the over-limit input is %d bytes", len(big))
	}
}

// A tiny hostile input whose arrays each stay under MaxElements but together
// pass it is refused: the element budget is shared by every array.
func TestDecodeElementBudgetIsShared(t *testing.T) {
	t.Parallel()
	run := func(r ReplicaID, n int) *node {
		f := &fragList{elems: make([]fragElem, n)}
		for k := range f.elems {
			id := Dot{r, uint32(k + 1)}
			f.elems[k] = fragElem{id: id, pos: true, head: &node{id: id, val: int64(0)}}
			if k > 0 {
				f.elems[k].parent = Dot{r, uint32(k)}
			}
		}
		return &node{id: Dot{9, uint32(r)}, val: f}
	}
	half := MaxElements/2 + 1
	x := &Delta{ts: 1, ctx: dotSet{{1, 1, uint32(half)}, {2, 1, uint32(half)}, {9, 1, 2}}, root: &object{fields: []field{
		{key: "a", head: run(1, half)},
		{key: "b", head: run(2, half)},
	}}}
	b, _ := x.MarshalBinary()
	if len(b) > 100 {
		t.Fatalf("the hostile input is %d bytes; the test wants a tiny one", len(b))
	}
	if _, err := DecodeDelta(b); err == nil || !strings.Contains(err.Error(), "MaxElements") {
		t.Fatalf("DecodeDelta of 2 × %d elements in %d bytes: err %v", half, len(b), err)
	}
	// one array alone is within the limit and decodes
	x.root.fields = x.root.fields[:1]
	b, _ = x.MarshalBinary()
	y, err := DecodeDelta(b)
	if err != nil {
		t.Fatal(err)
	}
	if got := fragElems(y.root); got != half {
		t.Fatalf("decoded %d elements, want %d", got, half)
	}
}

// Deltas waiting for a missing predecessor are encoded with the document, so
// together they stay within MaxElements too: past it Merge asks for a
// snapshot, and the document with what it did queue still decodes.
func TestQueuedDeltasWithinMaxElements(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates a few hundred MB")
	}
	half := MaxElements / 2
	arr := func(n int) []byte { return []byte("[" + strings.Repeat("0,", n-1) + "0]") }
	a := NewDoc()
	mustApply(t, a, 1, 1, Op{Op: "set", Path: "x", Value: []byte(`1`)}) // never delivered
	d1 := mustApply(t, a, 2, 1, Op{Op: "set", Path: "l", Value: arr(half)})
	rm := mustApply(t, a, 3, 1, Op{Op: "remove", Path: "l"})
	d2 := mustApply(t, a, 4, 1, Op{Op: "set", Path: "m", Value: arr(half + 1)}) // a holds half+1

	b := NewDoc()
	for _, x := range []*Delta{d1, rm} {
		if err := b.Merge(x); err != nil {
			t.Fatal(err)
		}
	}
	if b.Pending() != 2 {
		t.Fatalf("%d pending, want 2", b.Pending())
	}
	if err := b.Merge(d2); err == nil || !strings.Contains(err.Error(), "send a snapshot") {
		t.Fatalf("queueing past MaxElements: err %v", err)
	}
	enc, _ := b.MarshalBinary()
	b2, err := DecodeDoc(enc)
	if err != nil {
		t.Fatalf("a document with %d queued elements does not decode: %v", half, err)
	}
	if b2.Pending() != 2 {
		t.Fatalf("decoded %d pending deltas, want 2", b2.Pending())
	}
	// the repair the error asks for
	snap := a.Snapshot()
	if err := b2.Merge(snap); err != nil {
		t.Fatal(err)
	}
	if b2.Pending() != 0 {
		t.Fatalf("%d deltas still pending after the snapshot", b2.Pending())
	}
	ja, _ := a.JSON()
	jb, _ := b2.JSON()
	if !bytes.Equal(ja, jb) {
		t.Fatal("the snapshot did not repair the replica")
	}
}

// nestedCounts is a hostile object encoding: levels of objects, each a field
// "" holding one object, every length prefix claiming count items. Each
// prefix fits the bytes left, but they add up past the decode budget.
func nestedCounts(levels, count int) []byte {
	var b []byte
	for range levels {
		b = binary.AppendUvarint(b, uint64(count)) // object fields
		b = append(b, 0)                           // key ""
		b = binary.AppendUvarint(b, uint64(count)) // slot values
		b = append(b, 1, 1, 0, tObject)            // replica 1, event 1, time 0, an object
	}
	return append(b, make([]byte, count)...)
}

// The decoders' refusal of input that expands past their budget matches
// ErrExpansion (package documents relies on it), directly and through a
// pending delta of a document; other decode errors do not.
func TestErrExpansion(t *testing.T) {
	t.Parallel()
	nest := nestedCounts(300, 1000)
	doc := append([]byte{'V', kindDoc, formatVersion, 0, 0}, nest...)
	delta := append([]byte{'V', kindDelta, formatVersion, 0, 0, 0, 0}, nest...)
	withPending := []byte{'V', kindDoc, formatVersion, 0, 0, 0, 1}
	withPending = binary.AppendUvarint(withPending, uint64(len(delta)))
	withPending = append(withPending, delta...)
	for name, dec := range map[string]func() error{
		"DecodeDoc":            func() error { _, err := DecodeDoc(doc); return err },
		"DecodeDelta":          func() error { _, err := DecodeDelta(delta); return err },
		"DecodeDoc of pending": func() error { _, err := DecodeDoc(withPending); return err },
	} {
		err := dec()
		if !errors.Is(err, ErrExpansion) || !strings.Contains(err.Error(), "input expands to more than") {
			t.Errorf("%s: err %v, want ErrExpansion with its message", name, err)
		}
	}
	if _, err := DecodeDoc(doc[:40]); err == nil || errors.Is(err, ErrExpansion) {
		t.Errorf("a truncated document: err %v, want an error that is not ErrExpansion", err)
	}
}
