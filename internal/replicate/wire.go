package replicate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/verge-edge/verge/internal/store"
)

// Wire format of replication messages. Every message starts with a version
// byte; strings and byte fields are uvarint-length-prefixed. Messages come
// from peers and are decoded as untrusted input: every length is checked
// against what is left, so a corrupt message is an error, never a panic or
// a large allocation.
const wireVersion = 1

// batch is one window's worth of an origin's log for one peer: the log
// entries from..to that concern the peer, coalesced per document.
type batch struct {
	Origin   string
	From, To uint64
	// Reset: the origin no longer has entries below From (its log was
	// truncated); the receiver accepts the batch despite the gap and relies
	// on anti-entropy for what it missed.
	Reset bool
	Items []store.BatchItem // Delta: a crdt delta or a whole document state
}

type writer struct{ b []byte }

func (w *writer) u64(v uint64)   { w.b = binary.AppendUvarint(w.b, v) }
func (w *writer) bytes(p []byte) { w.u64(uint64(len(p))); w.b = append(w.b, p...) }
func (w *writer) str(s string)   { w.u64(uint64(len(s))); w.b = append(w.b, s...) }

type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("replication message: "+format, args...)
	}
}

func (r *reader) u64() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("truncated or overlong number")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes(max int) []byte {
	n := r.u64()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) || n > uint64(max) {
		r.fail("a field of %d bytes, %d left (limit %d)", n, len(r.b), max)
		return nil
	}
	p := r.b[:n:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) str(max int) string { return string(r.bytes(max)) }

func (r *reader) header() {
	if len(r.b) == 0 {
		r.fail("empty")
		return
	}
	if r.b[0] != wireVersion {
		r.fail("version %d, this build speaks %d: upgrade the older PoP", r.b[0], wireVersion)
		return
	}
	r.b = r.b[1:]
}

func (r *reader) done() error {
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d trailing bytes", len(r.b))
	}
	return r.err
}

const (
	maxName = 1024
	maxItem = 16 << 20
)

func (b *batch) encode() []byte {
	w := writer{b: make([]byte, 0, 64)}
	w.b = append(w.b, wireVersion)
	w.str(b.Origin)
	w.u64(b.From)
	w.u64(b.To)
	if b.Reset {
		w.u64(1)
	} else {
		w.u64(0)
	}
	w.u64(uint64(len(b.Items)))
	for _, it := range b.Items {
		w.str(it.Key.App)
		w.str(it.Key.Collection)
		w.str(it.Key.Doc)
		w.bytes(it.Delta)
	}
	return binary.LittleEndian.AppendUint32(w.b, crc32.Checksum(w.b, castagnoli))
}

// A batch ends with a CRC-32C of the rest: its items are merged into
// stored documents, so a damaged one must be refused whole rather than
// merged as a different, valid-looking delta.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func decodeBatch(p []byte) (*batch, error) {
	if len(p) < 4 || crc32.Checksum(p[:len(p)-4], castagnoli) != binary.LittleEndian.Uint32(p[len(p)-4:]) {
		return nil, errors.New("replication message: checksum mismatch (damaged in transit)")
	}
	r := reader{b: p[:len(p)-4]}
	r.header()
	b := &batch{Origin: r.str(maxName), From: r.u64(), To: r.u64()}
	b.Reset = r.u64() == 1
	n := r.u64()
	if r.err == nil && n > uint64(len(r.b)/4) { // an item takes at least 4 bytes
		r.fail("%d items in %d bytes", n, len(r.b))
	}
	if r.err != nil {
		return nil, r.err
	}
	b.Items = make([]store.BatchItem, 0, n)
	for range n {
		k := store.Key{App: r.str(maxName), Collection: r.str(maxName), Doc: r.str(maxName)}
		d := r.bytes(maxItem)
		if r.err != nil {
			break
		}
		b.Items = append(b.Items, store.BatchItem{Key: k, Delta: d})
	}
	if err := r.done(); err != nil {
		return nil, err
	}
	if b.From == 0 || b.To < b.From {
		return nil, errors.New("replication message: invalid sequence range")
	}
	return b, nil
}

// ack is a receiver's answer to a batch: its durable watermark for the
// origin, and whether the batch was refused for a gap.
type ack struct {
	Watermark uint64
	Gap       bool
}

func (a ack) encode() []byte {
	w := writer{b: []byte{wireVersion}}
	w.u64(a.Watermark)
	if a.Gap {
		w.u64(1)
	} else {
		w.u64(0)
	}
	return w.b
}

func decodeAck(p []byte) (ack, error) {
	r := reader{b: p}
	r.header()
	a := ack{Watermark: r.u64(), Gap: r.u64() == 1}
	return a, r.done()
}
