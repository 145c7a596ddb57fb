// Package wire is the encoding of the messages PoPs exchange for
// replication. It depends on nothing but the standard library, so that its
// decoders, which read peers' bytes, can be fuzzed fast.
//
// Every message starts with a version byte; strings and byte fields are
// uvarint-length-prefixed. Messages come from peers and are decoded as
// untrusted input: every length is checked against what is left and against
// a limit, so a damaged message is an error, never a panic or a large
// allocation.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Version is the format version this build speaks.
const Version = 1

// Limits on decoded fields.
const (
	MaxName = 1024     // an origin, app, collection or document name
	MaxItem = 16 << 20 // a delta or a document state
)

// Key names a document.
type Key struct{ App, Collection, Doc string }

// Item is one document's delta, or its whole state, in a batch.
type Item struct {
	Key   Key
	Delta []byte
}

// Batch is one window's worth of an origin's log for one peer: the log
// entries From..To that concern the peer, coalesced per document.
type Batch struct {
	Origin   string
	From, To uint64
	// Reset: the origin no longer has entries below From (its log was
	// truncated); the receiver accepts the batch despite the gap and relies
	// on anti-entropy for what it missed.
	Reset bool
	Items []Item
}

// Ack is a receiver's answer to a batch: its durable watermark for the
// origin, and whether the batch was refused for a gap.
type Ack struct {
	Watermark uint64
	Gap       bool
}

// Writer appends fields to B.
type Writer struct{ B []byte }

// NewWriter starts a message with the version byte.
func NewWriter() *Writer { return &Writer{B: []byte{Version}} }

func (w *Writer) U64(v uint64) { w.B = binary.AppendUvarint(w.B, v) }

func (w *Writer) Bytes(p []byte) {
	w.U64(uint64(len(p)))
	w.B = append(w.B, p...)
}

func (w *Writer) Str(s string) {
	w.U64(uint64(len(s)))
	w.B = append(w.B, s...)
}

func (w *Writer) Bool(v bool) {
	if v {
		w.U64(1)
	} else {
		w.U64(0)
	}
}

// Reader reads fields; the first failure sticks in Err and later reads
// return zero values.
type Reader struct {
	b   []byte
	Err error
}

// NewReader checks the version byte and reads the rest of p.
func NewReader(p []byte) *Reader {
	r := &Reader{b: p}
	if len(p) == 0 {
		r.Fail("empty")
	} else if p[0] != Version {
		r.Fail("version %d, this build speaks %d: upgrade the older PoP", p[0], Version)
	} else {
		r.b = p[1:]
	}
	return r
}

func (r *Reader) Fail(format string, args ...any) {
	if r.Err == nil {
		r.Err = fmt.Errorf("replication message: "+format, args...)
	}
}

// Left is the number of bytes not read yet.
func (r *Reader) Left() int { return len(r.b) }

func (r *Reader) U64() uint64 {
	if r.Err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 || (n > 1 && r.b[n-1] == 0) {
		// Non-minimal encodings are refused so that a message has one
		// encoding (round-trips are exact).
		r.Fail("truncated or overlong number")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *Reader) Bool() bool {
	switch v := r.U64(); v {
	case 0:
		return false
	case 1:
		return true
	default:
		r.Fail("%d is not a boolean", v)
		return false
	}
}

// Bytes returns a field of at most max bytes (a view into the message).
func (r *Reader) Bytes(max int) []byte {
	n := r.U64()
	if r.Err != nil {
		return nil
	}
	if n > uint64(len(r.b)) || n > uint64(max) {
		r.Fail("a field of %d bytes, %d left (limit %d)", n, len(r.b), max)
		return nil
	}
	p := r.b[:n:n]
	r.b = r.b[n:]
	return p
}

func (r *Reader) Str(max int) string { return string(r.Bytes(max)) }

// Count reads a number of elements, each taking at least min bytes, and
// refuses counts the rest of the message cannot hold.
func (r *Reader) Count(min int) int {
	n := r.U64()
	if r.Err == nil && n > uint64(len(r.b)/min) {
		r.Fail("%d elements in %d bytes", n, len(r.b))
		return 0
	}
	return int(n)
}

// Done reports the first error, or trailing bytes.
func (r *Reader) Done() error {
	if r.Err == nil && len(r.b) != 0 {
		r.Fail("%d trailing bytes", len(r.b))
	}
	return r.Err
}

// A batch ends with a CRC-32C of the rest: its items are merged into stored
// documents, so a damaged one must be refused whole rather than merged as a
// different, valid-looking delta.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Encode encodes the batch.
func (b *Batch) Encode() []byte {
	w := NewWriter()
	w.Str(b.Origin)
	w.U64(b.From)
	w.U64(b.To)
	w.Bool(b.Reset)
	w.U64(uint64(len(b.Items)))
	for _, it := range b.Items {
		w.Str(it.Key.App)
		w.Str(it.Key.Collection)
		w.Str(it.Key.Doc)
		w.Bytes(it.Delta)
	}
	return binary.LittleEndian.AppendUint32(w.B, crc32.Checksum(w.B, castagnoli))
}

// DecodeBatch decodes a batch; item bytes are views into p.
func DecodeBatch(p []byte) (*Batch, error) {
	if len(p) < 4 || crc32.Checksum(p[:len(p)-4], castagnoli) != binary.LittleEndian.Uint32(p[len(p)-4:]) {
		return nil, errors.New("replication message: checksum mismatch (damaged in transit)")
	}
	r := NewReader(p[:len(p)-4])
	b := &Batch{Origin: r.Str(MaxName), From: r.U64(), To: r.U64(), Reset: r.Bool()}
	n := r.Count(4) // an item takes at least 4 bytes
	if r.Err != nil {
		return nil, r.Err
	}
	b.Items = make([]Item, 0, n)
	for range n {
		k := Key{App: r.Str(MaxName), Collection: r.Str(MaxName), Doc: r.Str(MaxName)}
		d := r.Bytes(MaxItem)
		if r.Err != nil {
			break
		}
		b.Items = append(b.Items, Item{Key: k, Delta: d})
	}
	if err := r.Done(); err != nil {
		return nil, err
	}
	if b.From == 0 || b.To < b.From {
		return nil, errors.New("replication message: invalid sequence range")
	}
	return b, nil
}

// Encode encodes the ack.
func (a Ack) Encode() []byte {
	w := NewWriter()
	w.U64(a.Watermark)
	w.Bool(a.Gap)
	return w.B
}

// DecodeAck decodes an ack.
func DecodeAck(p []byte) (Ack, error) {
	r := NewReader(p)
	a := Ack{Watermark: r.U64(), Gap: r.Bool()}
	return a, r.Done()
}

// State is one document's state in a repair reply.
type State struct {
	Doc   string
	State []byte
}

// EncodeStates encodes a repair reply.
func EncodeStates(states []State) []byte {
	w := NewWriter()
	w.U64(uint64(len(states)))
	for _, s := range states {
		w.Str(s.Doc)
		w.Bytes(s.State)
	}
	return w.B
}

// DecodeStates decodes a repair reply.
func DecodeStates(p []byte) ([]State, error) {
	r := NewReader(p)
	n := r.Count(2)
	var out []State
	for i := 0; i < n && r.Err == nil; i++ {
		d := r.Str(MaxName)
		st := r.Bytes(MaxItem)
		if r.Err == nil {
			out = append(out, State{d, st})
		}
	}
	return out, r.Done()
}
