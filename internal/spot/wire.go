package spot

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/verge-edge/verge/crdt"
)

// Wire format, version 1. A request goes to <prefix>.<op> (op one of the
// names below); its body is
//
//	version  byte (1)
//	budget   uvarint  milliseconds the client will wait; the centre gives up after
//	fields   by op, strings as uvarint length + bytes, numbers as (u)varints:
//	  claim, release   app ns key owner
//	  take, restock    app counter varint(n)
//	  counter          app counter
//	  getdoc           app key
//	  updatedoc        app key uvarint(rev) uvarint(count) count × op
//	                   op: str(op) str(path) byte(has index) [varint(index)] str(value)
//	  takeonce,        app counter varint(n) id
//	  restockonce      id: uvarint(client) uvarint(seq) byte(resend) uvarint(base)
//	  counterseq       app counter
//
// A reply is
//
//	version  byte (1)
//	status   byte, then by status:
//	  ok           by op: claim byte(claimed) str(owner); release byte(released);
//	               take byte(ok) varint(remaining); restock, counter varint(remaining);
//	               getdoc, updatedoc uvarint(rev) + the JSON document (the rest);
//	               takeonce byte(ok) varint(remaining) uvarint(write sequence);
//	               restockonce, counterseq varint(remaining) uvarint(write sequence)
//	  conflict     uvarint(current revision)
//	  other        str(message) (forgotten: only in answer to a resend)
//
// A version the receiver does not know is refused with a message, so both
// ends can be upgraded independently by adding a version. The three "once"
// operations came later within version 1: a centre that predates them
// answers "unknown operation" (invalid), and the client then falls back to
// take and restock for a first send (see client.TakeOnce).
const wireVersion = 1

const (
	opClaim     = "claim"
	opRelease   = "release"
	opTake      = "take"
	opRestock   = "restock"
	opCounter   = "counter"
	opGetDoc    = "getdoc"
	opUpdateDoc = "updatedoc"

	opTakeOnce    = "takeonce"
	opRestockOnce = "restockonce"
	opCounterSeq  = "counterseq"
)

const (
	stOK byte = iota
	stConflict
	stInvalid
	stUnavailable
	stUnknown
	stBusy
	stError
	stForgotten
)

// maxMessage bounds a reply's message string.
const maxMessage = 4096

// maxOpName bounds an op name in an updatedoc request.
const maxOpName = 16

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

func (r *wreader) bool() bool {
	switch c := r.byte(); c {
	case 0:
		return false
	case 1:
		return true
	}
	if r.err == nil {
		r.err = errors.New("bad boolean")
	}
	return false
}

func (r *wreader) end() error {
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%d trailing bytes", len(r.b))
	}
	return r.err
}

func appendOps(b []byte, ops []crdt.Op) []byte {
	b = binary.AppendUvarint(b, uint64(len(ops)))
	for i := range ops {
		o := &ops[i]
		b = appendStr(b, o.Op)
		b = appendStr(b, o.Path)
		b = appendBool(b, o.Index != nil)
		if o.Index != nil {
			b = binary.AppendVarint(b, int64(*o.Index))
		}
		b = binary.AppendUvarint(b, uint64(len(o.Value)))
		b = append(b, o.Value...)
	}
	return b
}

// ops reads the operations of an updatedoc request within MaxOps and
// MaxOpsBytes: the allocation is bounded by the message, which is bounded
// by the server's maximum payload.
func (r *wreader) ops() []crdt.Op {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n == 0 || n > MaxOps {
		r.err = fmt.Errorf("%d operations, want 1 to %d", n, MaxOps)
		return nil
	}
	if n > uint64(len(r.b)) { // every op takes at least one byte
		r.err = errors.New("truncated operations")
		return nil
	}
	ops := make([]crdt.Op, n)
	for i := range ops {
		ops[i].Op = r.str(maxOpName)
		ops[i].Path = r.str(MaxOpsBytes)
		if r.bool() {
			x := r.varint()
			if x < -1<<31 || x > 1<<31-1 {
				r.err = errors.New("index out of range")
			}
			idx := int(x)
			ops[i].Index = &idx
		}
		if v := r.bytes(MaxOpsBytes); len(v) > 0 {
			ops[i].Value = append([]byte(nil), v...)
		}
		if r.err != nil {
			return nil
		}
	}
	return ops
}

// request is a decoded request.
type request struct {
	op      string
	budget  uint64 // milliseconds
	app     string
	ns      string
	key     string // claim key, counter or document key
	owner   string
	n       int64
	rev     uint64
	ops     []crdt.Op
	id      OpID
	isWrite bool
}

func appendOpID(b []byte, id OpID) []byte {
	b = binary.AppendUvarint(b, id.Client)
	b = binary.AppendUvarint(b, id.Seq)
	b = appendBool(b, id.Resend)
	return binary.AppendUvarint(b, id.Base)
}

func decodeRequest(op string, b []byte) (*request, error) {
	r := wreader{b: b}
	if v := r.byte(); r.err == nil && v != wireVersion {
		return nil, fmt.Errorf("wire version %d, this centre speaks %d; upgrade the older side", v, wireVersion)
	}
	q := &request{op: op, budget: r.uvarint()}
	// Names are read with a little slack over their limits so that the
	// engine, not the decoder, explains which limit was passed.
	q.app = r.str(MaxApp + 1)
	switch op {
	case opClaim, opRelease:
		q.ns = r.str(MaxNS + 1)
		q.key = r.str(MaxKey + 1)
		q.owner = r.str(MaxOwner + 1)
		q.isWrite = true
	case opTake, opRestock:
		q.key = r.str(MaxKey + 1)
		q.n = r.varint()
		q.isWrite = true
	case opTakeOnce, opRestockOnce:
		q.key = r.str(MaxKey + 1)
		q.n = r.varint()
		q.id = OpID{Client: r.uvarint(), Seq: r.uvarint(), Resend: r.bool(), Base: r.uvarint()}
		q.isWrite = true
	case opCounter, opGetDoc, opCounterSeq:
		q.key = r.str(MaxKey + 1)
	case opUpdateDoc:
		q.key = r.str(MaxKey + 1)
		q.rev = r.uvarint()
		q.ops = r.ops()
		q.isWrite = true
	default:
		return nil, fmt.Errorf("unknown operation %q", op)
	}
	if err := r.end(); err != nil {
		return nil, fmt.Errorf("malformed %s request: %v", op, err)
	}
	return q, nil
}
