package crdt

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
)

// seedDocs returns encodings of a few varied documents for the corpora.
func seedDocs(t testing.TB) (docs [][]byte, deltas [][]byte) {
	for seed := range uint64(3) {
		c := newCluster(&testing.T{}, 77+seed, 3)
		for range 60 {
			i := c.rng.IntN(3)
			c.apply(i)
			if len(c.log) > 0 {
				c.deliver(c.rng.IntN(3), c.log[c.rng.IntN(len(c.log))])
			}
		}
		b, _ := c.docs[0].MarshalBinary()
		docs = append(docs, b)
		deltas = append(deltas, c.log[len(c.log)-1])
		s, _ := c.docs[1].Snapshot().MarshalBinary()
		deltas = append(deltas, s)
	}
	a, _ := appendDoc(t, 300).MarshalBinary()
	docs = append(docs, a)
	return docs, deltas
}

func FuzzDecodeDoc(f *testing.F) {
	docs, _ := seedDocs(f)
	for _, d := range docs {
		f.Add(d)
	}
	f.Add([]byte("VD\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := DecodeDoc(b)
		if err != nil {
			return
		}
		// whatever decodes must re-encode to something that decodes the same
		enc, err := d.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		d2, err := DecodeDoc(enc)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		enc2, _ := d2.MarshalBinary()
		if !bytes.Equal(enc, enc2) {
			t.Fatal("encoding is not stable")
		}
		if _, err := d.JSON(); err != nil {
			t.Fatalf("decoded document has no JSON: %v", err)
		}
		// a decoded document stays usable: an Apply either fails and changes
		// nothing, or leaves a state that decodes
		if _, err := d.Apply(9, 1, Op{Op: "set", Path: "fuzz", Value: json.RawMessage("1")}); err != nil {
			if after, _ := d.MarshalBinary(); !bytes.Equal(enc, after) {
				t.Fatalf("failed Apply changed the document: %v", err)
			}
		} else if after, err := d.MarshalBinary(); err != nil {
			t.Fatal(err)
		} else if _, err := DecodeDoc(after); err != nil {
			t.Fatalf("state after an Apply does not decode: %v", err)
		}
		d.GC([]VersionVector{d.Context()})
	})
}

func FuzzDecodeDelta(f *testing.F) {
	docs, deltas := seedDocs(f)
	for _, d := range deltas {
		f.Add(d)
	}
	base := docs[0]
	f.Fuzz(func(t *testing.T, b []byte) {
		x, err := DecodeDelta(b)
		if err != nil {
			return
		}
		enc, _ := x.MarshalBinary()
		x2, err := DecodeDelta(enc)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if enc2, _ := x2.MarshalBinary(); !bytes.Equal(enc, enc2) {
			t.Fatal("delta encoding is not stable")
		}
		// merging hostile deltas never panics, and a rejected merge changes nothing
		for _, start := range [][]byte{nil, base} {
			d := NewDoc()
			if start != nil {
				d, _ = DecodeDoc(start)
			}
			before, _ := d.MarshalBinary()
			if err := d.Merge(x); err != nil {
				if after, _ := d.MarshalBinary(); !bytes.Equal(before, after) {
					t.Fatalf("failed merge changed the document: %v", err)
				}
				continue
			}
			if _, err := d.JSON(); err != nil {
				t.Fatal(err)
			}
			if _, err := d.MarshalBinary(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// FuzzRoundTrip interprets the input as a script of operations on three
// replicas with arbitrary delivery, then checks convergence and that every
// encoding round-trips.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte("append items; remove; set; increment n"))
	f.Add(bytes.Repeat([]byte{0x13, 0x77, 0xff, 0x02}, 40))
	f.Fuzz(func(t *testing.T, script []byte) {
		if len(script) > 4096 {
			return
		}
		var seed uint64
		if len(script) >= 8 {
			seed = binary.LittleEndian.Uint64(script)
		}
		c := newCluster(t, seed, 3)
		c.rng = rand.New(&byteSource{b: script})
		for step := 0; step < len(script)/2 && step < 300; step++ {
			i := c.rng.IntN(3)
			if c.rng.IntN(2) == 0 {
				c.apply(i)
			} else if len(c.log) > 0 {
				c.deliver(i, c.log[c.rng.IntN(len(c.log))])
				// every state Merge produces decodes too (Apply's: see c.apply)
				if _, err := DecodeDoc(c.encode(c.docs[i])); err != nil {
					t.Fatalf("state after a merge does not decode: %v", err)
				}
			}
		}
		c.settle()
		enc := c.assertConverged()
		j, _ := c.docs[0].JSON()
		var v any
		if err := json.Unmarshal(j, &v); err != nil {
			t.Fatalf("JSON output invalid: %v", err)
		}
		// the converged state, sent as a snapshot to an empty replica,
		// arrives whole: the same bytes (what repair by snapshot relies on)
		snap, err := c.docs[0].Snapshot().MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		x, err := DecodeDelta(snap)
		if err != nil {
			t.Fatalf("snapshot does not decode: %v", err)
		}
		fresh := NewDoc()
		if err := fresh.Merge(x); err != nil {
			t.Fatalf("snapshot does not merge into an empty document: %v", err)
		}
		if !bytes.Equal(c.encode(fresh), enc) {
			t.Fatal("a snapshot of the converged document, merged into an empty one, encodes differently")
		}
	})
}

// byteSource feeds a fuzz input to math/rand, then zeros.
type byteSource struct {
	b   []byte
	off int
}

func (s *byteSource) Uint64() uint64 {
	var v uint64
	for k := 0; k < 8; k++ {
		v <<= 8
		if s.off < len(s.b) {
			v |= uint64(s.b[s.off])
			s.off++
		}
	}
	return v ^ uint64(s.off)*0x9E3779B97F4A7C15
}

// ---- hostile input, deterministic ----

// Not parallel: it measures allocations.
func TestDecodeHugeLengthPrefix(t *testing.T) {
	huge := binary.AppendUvarint(nil, 1<<40)
	cases := map[string][]byte{
		"doc fields":      append([]byte("VD\x01\x00\x00"), huge...),
		"delta ctx":       append([]byte("Vd\x01\x00\x00\x00"), huge...),
		"array elements":  append([]byte("VD\x01\x00\x00\x01\x01a\x01\x01\x01\x00\x07"), huge...),
		"string":          append([]byte("VD\x01\x00\x00\x01"), huge...),
		"pending delta":   append([]byte("VD\x01\x00\x00\x00"), huge...),
		"element run len": append([]byte("VD\x01\x00\x00\x01\x01a\x01\x01\x01\x00\x07\x05\x01"), huge...),
	}
	for name, b := range cases {
		allocs := testing.AllocsPerRun(5, func() {
			var err error
			switch b[1] {
			case 'D':
				_, err = DecodeDoc(b)
			case 'd':
				_, err = DecodeDelta(b)
			}
			if err == nil {
				t.Errorf("%s: decoded a 2^40 length prefix", name)
			}
		})
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		_, _ = DecodeDoc(b)
		_, _ = DecodeDelta(b)
		runtime.ReadMemStats(&m1)
		if allocs > 50 || m1.TotalAlloc-m0.TotalAlloc > 1<<20 {
			t.Errorf("%s: %v allocations, %d bytes for a tiny hostile input", name, allocs, m1.TotalAlloc-m0.TotalAlloc)
		}
	}
}

func TestDecodeErrorsAreClear(t *testing.T) {
	t.Parallel()
	d := NewDoc()
	mustApply(t, d, 1, 1, Op{Op: "set", Path: "a", Value: json.RawMessage(`[1,2,3]`)})
	b, _ := d.MarshalBinary()
	_, err := DecodeDoc(append([]byte("VD\x09"), b[3:]...))
	if err == nil || !strings.Contains(err.Error(), "version 9 is not supported") {
		t.Fatalf("future version: %v", err)
	}
	if _, err := DecodeDoc([]byte("{}")); err == nil || !strings.Contains(err.Error(), "not a Verge document") {
		t.Fatalf("wrong kind: %v", err)
	}
	if _, err := DecodeDelta(b); err == nil || !strings.Contains(err.Error(), "not a Verge delta") {
		t.Fatalf("doc as delta: %v", err)
	}
	// every truncation fails cleanly
	for i := range len(b) {
		if _, err := DecodeDoc(b[:i]); err == nil {
			t.Fatalf("truncated to %d bytes decoded", i)
		}
	}
	// bit flips never panic
	rng := rand.New(rand.NewPCG(4, 4))
	for range 2000 {
		c := bytes.Clone(b)
		c[rng.IntN(len(c))] ^= byte(1 << rng.IntN(8))
		if d, err := DecodeDoc(c); err == nil {
			if _, err := d.JSON(); err != nil {
				t.Fatalf("decoded document has no JSON: %v", err)
			}
		}
	}
}

func TestDeltaRoundTrip(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 42, 3)
	for range 200 {
		c.apply(c.rng.IntN(3))
	}
	for _, b := range c.log {
		x, err := DecodeDelta(b)
		if err != nil {
			t.Fatal(err)
		}
		enc, _ := x.MarshalBinary()
		if !bytes.Equal(enc, b) {
			t.Fatal("delta round trip differs")
		}
	}
	for i := range c.docs {
		s, _ := c.docs[i].Snapshot().MarshalBinary()
		x, err := DecodeDelta(s)
		if err != nil {
			t.Fatal(err)
		}
		fresh := NewDoc()
		if err := fresh.Merge(x); err != nil {
			t.Fatal(err)
		}
		a, _ := fresh.MarshalBinary()
		b, _ := c.docs[i].MarshalBinary()
		if !bytes.Equal(a, b) {
			t.Fatal("a snapshot merged into an empty document is not the document")
		}
	}
}

func TestApplyErrors(t *testing.T) {
	t.Parallel()
	d := NewDoc()
	mustApply(t, d, 1, 1, Op{Op: "set", Path: "cart", Value: json.RawMessage(`{"items":[{"qty":1}],"note":"x"}`)})
	before, _ := d.MarshalBinary()
	idx := 5
	cases := []struct {
		ops  []Op
		want string
	}{
		{[]Op{{Op: "set", Path: "cart.n", Value: json.RawMessage("1")}, {Op: "set", Path: "a", Value: json.RawMessage("2")}, {Op: "increment", Path: "cart.items", Value: json.RawMessage("1")}},
			`op 2 (increment "cart.items"): path points at an array, increment needs a number`},
		{[]Op{{Op: "append", Path: "cart.note", Value: json.RawMessage("1")}}, `op 0 (append "cart.note"): path points at a string, not an array`},
		{[]Op{{Op: "insert", Path: "cart.items", Index: &idx, Value: json.RawMessage("1")}}, `index 5 out of range`},
		{[]Op{{Op: "set", Path: "cart.items.x", Value: json.RawMessage("1")}}, `"cart.items" is an array, "x" is not an index into it`},
		{[]Op{{Op: "set", Path: "nope.x", Value: json.RawMessage("1")}}, `"nope" does not exist`},
		{[]Op{{Op: "set", Path: "cart.note.x", Value: json.RawMessage("1")}}, `"cart.note" is a string, not an object or array`},
		{[]Op{{Op: "increment", Path: "cart.items.0.qty", Value: json.RawMessage("1.5")}}, `increment needs an integer`},
		{[]Op{{Op: "set", Path: "a", Value: json.RawMessage("{")}}, `not valid JSON`},
		{[]Op{{Op: "frobnicate", Path: "a"}}, `unknown op`},
		{[]Op{{Op: "remove", Path: ""}}, `cannot remove the root`},
		{[]Op{{Op: "append", Path: "cart.items", Value: json.RawMessage(strings.Repeat("[", 600) + strings.Repeat("]", 600))}}, `deeper than`},
	}
	for _, c := range cases {
		_, err := d.Apply(1, 2, c.ops...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v, want %q", err, c.want)
		}
		if after, _ := d.MarshalBinary(); !bytes.Equal(before, after) {
			t.Fatalf("failed Apply %v changed the document", c.ops)
		}
	}
}

func TestHLC(t *testing.T) {
	t.Parallel()
	a, b := NewDoc(), NewDoc()
	// b's physical clock is far behind; its write still wins once it has seen a's
	x := mustApply(t, a, 1_000_000, 1, Op{Op: "set", Path: "k", Value: json.RawMessage(`"a"`)})
	if err := b.Merge(x); err != nil {
		t.Fatal(err)
	}
	y := mustApply(t, b, 5, 2, Op{Op: "set", Path: "k", Value: json.RawMessage(`"b"`)})
	if b.Clock() <= 1_000_000 {
		t.Fatalf("clock %d did not advance past the merged timestamp", b.Clock())
	}
	if err := a.Merge(y); err != nil {
		t.Fatal(err)
	}
	if got := a.Value().(map[string]any)["k"]; got != "b" {
		t.Fatalf("causally later write lost: %v", got)
	}
}
