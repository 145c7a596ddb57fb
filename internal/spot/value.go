package spot

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
)

// Kinds of KV entries. The kind is the first token of the KV key and the
// third byte of the value, so a value read back under the wrong key is
// detected instead of misread.
const (
	kindClaim   byte = 'c'
	kindCounter byte = 'n'
	kindDoc     byte = 'd'
)

const valueVersion = 1

// window is how many recent writes a value remembers (their op ids and
// results). It must hold at least one batch (maxBatch) and leaves room for
// writes by other central servers between an uncertain write and the read
// that resolves it.
const window = 32

// opID names one operation: the engine incarnation that runs it and a
// sequence number within that incarnation.
type opID struct{ inc, seq uint64 }

type entry struct {
	id  opID
	res int64 // the operation's result: the stock after it; 0 for claims and documents
}

// value is the decoded state of one key.
//
//	'S' version kind
//	seq     uvarint  writes ever committed to the key (a document's revision)
//	n       uvarint  entries in the window, oldest first: they are the writes
//	                 seq-n+1 .. seq
//	entries n × (uvarint inc, uvarint seq, varint res)
//	payload claim: uvarint len + owner ("" = free); counter: uvarint stock;
//	        document: the crdt.Doc encoding (the rest)
type value struct {
	kind  byte
	seq   uint64
	win   []entry
	owner string
	stock int64
	doc   []byte
}

// clone returns a copy that shares nothing mutable with v (doc bytes are
// never modified in place, only replaced).
func (v *value) clone() *value {
	c := *v
	c.win = append(make([]entry, 0, len(v.win)+maxBatch), v.win...)
	return &c
}

// record appends a committed-to-be write to the window.
func (v *value) record(id opID, res int64) {
	v.seq++
	v.win = append(v.win, entry{id, res})
}

// find returns the window entry of id and the write sequence it had.
func (v *value) find(id opID) (entry, uint64, bool) {
	for i := len(v.win) - 1; i >= 0; i-- {
		if v.win[i].id == id {
			return v.win[i], v.seq - uint64(len(v.win)-1-i), true
		}
	}
	return entry{}, 0, false
}

// covers reports whether the window still holds every write made after
// write sequence base: then an operation missing from it was not applied
// after base.
func (v *value) covers(base uint64) bool {
	return v.seq-uint64(len(v.win)) <= base
}

func (v *value) encode() []byte {
	b := make([]byte, 0, 16+len(v.win)*12+len(v.owner)+len(v.doc))
	b = append(b, 'S', valueVersion, v.kind)
	b = binary.AppendUvarint(b, v.seq)
	win := v.win
	if len(win) > window {
		win = win[len(win)-window:]
	}
	b = binary.AppendUvarint(b, uint64(len(win)))
	for _, e := range win {
		b = binary.AppendUvarint(b, e.id.inc)
		b = binary.AppendUvarint(b, e.id.seq)
		b = binary.AppendVarint(b, e.res)
	}
	switch v.kind {
	case kindClaim:
		b = binary.AppendUvarint(b, uint64(len(v.owner)))
		b = append(b, v.owner...)
	case kindCounter:
		b = binary.AppendUvarint(b, uint64(v.stock))
	case kindDoc:
		b = append(b, v.doc...)
	}
	return b
}

var errCorrupt = errors.New("corrupt value")

// decodeValue parses a stored value. Values come from our own writes, but
// the bucket is reachable by any NATS client with access, so a bad one is
// an error, never a panic or an unbounded allocation.
func decodeValue(kind byte, b []byte) (*value, error) {
	if len(b) < 3 || b[0] != 'S' {
		return nil, fmt.Errorf("%w: missing header", errCorrupt)
	}
	if b[1] != valueVersion {
		return nil, fmt.Errorf("%w: format version %d, this build reads %d", errCorrupt, b[1], valueVersion)
	}
	if b[2] != kind {
		return nil, fmt.Errorf("%w: kind %q under a %q key", errCorrupt, b[2], kind)
	}
	r := wreader{b: b[3:]}
	v := &value{kind: kind}
	v.seq = r.uvarint()
	n := r.uvarint()
	if n > window || n > v.seq {
		return nil, fmt.Errorf("%w: window of %d entries at write %d", errCorrupt, n, v.seq)
	}
	v.win = make([]entry, n, int(n)+maxBatch)
	for i := range v.win {
		v.win[i] = entry{opID{r.uvarint(), r.uvarint()}, r.varint()}
	}
	switch kind {
	case kindClaim:
		v.owner = string(r.bytes(MaxOwner))
	case kindCounter:
		s := r.uvarint()
		if s > 1<<63-1 {
			r.err = errors.New("stock out of range")
		}
		v.stock = int64(s)
	case kindDoc:
		v.doc = r.rest()
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = errors.New("trailing bytes")
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: %v", errCorrupt, r.err)
	}
	return v, nil
}

// wreader reads the varint encodings shared by values and wire messages.
// After the first error every read returns zero and err stays set.
type wreader struct {
	b   []byte
	err error
}

func (r *wreader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	x, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errors.New("truncated or overlong varint")
		return 0
	}
	r.b = r.b[n:]
	return x
}

func (r *wreader) varint() int64 {
	if r.err != nil {
		return 0
	}
	x, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errors.New("truncated or overlong varint")
		return 0
	}
	r.b = r.b[n:]
	return x
}

func (r *wreader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.err = errors.New("truncated")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// bytes reads a length-prefixed byte string of at most max bytes. The
// result aliases the input.
func (r *wreader) bytes(max int) []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(max) {
		r.err = fmt.Errorf("string of %d bytes, more than the maximum of %d", n, max)
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = errors.New("truncated string")
		return nil
	}
	s := r.b[:n:n]
	r.b = r.b[n:]
	return s
}

func (r *wreader) str(max int) string { return string(r.bytes(max)) }

func (r *wreader) rest() []byte {
	if r.err != nil {
		return nil
	}
	s := r.b
	r.b = nil
	return s
}

// kvKey encodes names into a KV key. NATS KV keys allow only
// [-/_=.a-zA-Z0-9] with '.' separating tokens, so each name becomes one
// unpadded base64url token; the empty namespace becomes "-", which no
// base64 encoding produces. The app stays its own token so that one app's
// keys can be listed or purged with a wildcard ("c.<app>.>").
func kvKey(kind byte, names ...string) string {
	n := 1
	for _, s := range names {
		n += 1 + base64.RawURLEncoding.EncodedLen(len(s)) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, kind)
	for _, s := range names {
		b = append(b, '.')
		if s == "" {
			b = append(b, '-')
			continue
		}
		b = base64.RawURLEncoding.AppendEncode(b, []byte(s))
	}
	return string(b)
}
