package wasm

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/tetratelabs/wazero/api"

	"github.com/verge-edge/verge/crdt"
)

// Spot is what the spot_* host calls reach: the strongly consistent
// operations of the central PoP, the single point of truth (internal/spot
// has the semantics; this interface keeps the runtime free of it). Every
// method may cross the WAN. Errors that implement DocError give the guest
// their status (UNAVAILABLE, INVALID, ...); context errors give UNAVAILABLE;
// any other error INTERNAL.
type Spot interface {
	// Claim makes owner the owner of (app, ns, key) unless someone else
	// owns it; owner is then the current owner.
	Claim(ctx context.Context, app, ns, key, owner string) (claimed bool, current string, err error)
	// Release frees (app, ns, key) if owner owns it.
	Release(ctx context.Context, app, ns, key, owner string) (released bool, err error)
	// Take removes n (> 0) from a stock unless fewer than n remain.
	Take(ctx context.Context, app, counter string, n int64) (ok bool, remaining int64, err error)
	// Restock adds n (> 0) to a stock.
	Restock(ctx context.Context, app, counter string, n int64) (remaining int64, err error)
	// Counter returns what remains of a stock.
	Counter(ctx context.Context, app, counter string) (remaining int64, err error)
	// GetDoc returns a document and its revision; (nil, 0, nil) when it
	// does not exist.
	GetDoc(ctx context.Context, app, key string) (doc []byte, rev uint64, err error)
	// UpdateDoc applies ops if the document is at revision rev (0: it must
	// not exist) and returns the new document and revision. When it is not,
	// the error is a SpotConflict carrying the current revision.
	UpdateDoc(ctx context.Context, app, key string, rev uint64, ops []crdt.Op) (doc []byte, newRev uint64, err error)
}

// SpotConflict is the error Spot.UpdateDoc returns when the document is not
// at the revision asked; current is its revision now, 0 if it does not
// exist. The guest gets CONFLICT, or NOT_FOUND when the document does not
// exist, and current in *rev_out; err is the explanation (last_error).
func SpotConflict(current uint64, err error) error {
	return &spotConflict{current: current, err: err}
}

type spotConflict struct {
	current uint64
	err     error
}

func (e *spotConflict) Error() string  { return e.err.Error() }
func (e *spotConflict) Unwrap() error  { return e.err }
func (e *spotConflict) Status() uint32 { return StatusConflict }

var errNoSpot = docErr{StatusUnsupported, "the central PoP's operations (spot_*) are not available in this host (no central PoP configured)"}

// Host-side bounds on what a guest can make the host copy before the centre
// sees it; the centre enforces its own, smaller limits and explains them.
const (
	maxSpotName = 1 << 10 // a namespace, key, owner or counter name
	maxSpotOps  = 1 << 20 // the JSON operations of one spot_doc_update
)

// spotStrings reads the guest strings at a[2i], a[2i+1] into views (valid
// during the host call only). status is MEMORY or INVALID on failure.
func spotStrings(m api.Memory, cs *callState, a []uint64, names ...string) ([][]byte, uint32) {
	views := make([][]byte, len(names))
	for i := range names {
		b, ok := read(m, uint32(a[2*i]), uint32(a[2*i+1]))
		if !ok {
			return nil, StatusMemory
		}
		views[i] = b
	}
	for i, b := range views {
		if len(b) > maxSpotName {
			cs.lastErr = fmt.Sprintf("the %s is %d bytes, more than the maximum of %d", names[i], len(b), maxSpotName)
			return nil, StatusInvalid
		}
	}
	return views, StatusOK
}

// outBuf reports whether the output buffer (ptr, cap) and *len_out lie
// inside memory, outI64 whether an i64 output does. Calls with effects check
// their outputs before acting, so that MEMORY always means nothing happened.
func outBuf(m api.Memory, ptr, capacity, lenOut uint32) bool {
	_, ok1 := read(m, ptr, capacity)
	_, ok2 := read(m, lenOut, 4)
	return ok1 && ok2
}

func outI64(m api.Memory, p uint32) bool {
	_, ok := read(m, p, 8)
	return ok
}

// keptResult is the result of a call with effects (spot_claim,
// spot_doc_update, invoke) whose output did not fit the guest's buffer. The
// guest's retry with a larger buffer must not repeat the effect (take a
// claim again, apply ops twice, run a function twice), so the next such call
// with the same arguments gets the kept result instead; any other such call
// forgets it, as does the end of the request.
type keptResult struct {
	key    [sha256.Size]byte // the call's name and arguments
	status uint32
	out    []byte
	num    uint64 // the call's numeric output (a revision, an HTTP status)
}

func callKey(name string, num uint64, args [][]byte) [sha256.Size]byte {
	h := sha256.New()
	var b [8]byte
	for _, s := range append([][]byte{[]byte(name)}, args...) {
		binary.LittleEndian.PutUint64(b[:], uint64(len(s)))
		h.Write(b[:])
		h.Write(s)
	}
	binary.LittleEndian.PutUint64(b[:], num)
	h.Write(b[:])
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// retrieve returns the kept result of this very call, if any, and forgets
// whatever was kept.
func (c *callState) retrieve(name string, num uint64, args [][]byte) *keptResult {
	r := c.kept
	c.kept = nil
	if r == nil || r.key != callKey(name, num, args) {
		return nil
	}
	return r
}

// deliver writes out to the guest's buffer with the output-buffer protocol
// and returns status, or TOO_SMALL after keeping the result for the retry.
// The outputs were checked with outBuf.
func (c *callState) deliver(m api.Memory, status uint32, out []byte, num uint64, ptr, capacity, lenOut uint32, name string, argNum uint64, args [][]byte) uint32 {
	if uint64(len(out)) > uint64(capacity) {
		c.kept = &keptResult{key: callKey(name, argNum, args), status: status, out: out, num: num}
		m.WriteUint32Le(lenOut, uint32(len(out)))
		return StatusTooSmall
	}
	m.Write(ptr, out)
	m.WriteUint32Le(lenOut, uint32(len(out)))
	return status
}

// spot_claim(ns, ns_len, key, key_len, owner, owner_len, buf, cap, len_out):
// OK, the caller owns the key; CONFLICT, someone else does. Either way buf
// gets the owner.
func hostSpotClaim(ctx context.Context, m api.Memory, cs *callState, a []uint64) uint32 {
	args, st := spotStrings(m, cs, a, "namespace", "key", "owner")
	if st != StatusOK {
		return st
	}
	ptr, capacity, lenOut := uint32(a[6]), uint32(a[7]), uint32(a[8])
	if !outBuf(m, ptr, capacity, lenOut) {
		return StatusMemory
	}
	if cs.spot == nil {
		return cs.fail(errNoSpot)
	}
	if r := cs.retrieve("spot_claim", 0, args); r != nil {
		return cs.deliver(m, r.status, r.out, 0, ptr, capacity, lenOut, "spot_claim", 0, args)
	}
	ns, key, owner := string(args[0]), string(args[1]), string(args[2])
	var claimed bool
	var current string
	var err error
	blocking(ctx, func(ctx context.Context) { claimed, current, err = cs.spot.Claim(ctx, cs.app, ns, key, owner) })
	if err != nil {
		return cs.fail(err)
	}
	status := uint32(StatusOK)
	if !claimed {
		status = StatusConflict
		cs.lastErr = fmt.Sprintf("key %q of namespace %q is claimed by %q", key, ns, current)
	}
	return cs.deliver(m, status, []byte(current), 0, ptr, capacity, lenOut, "spot_claim", 0, args)
}

// spot_release(ns, ns_len, key, key_len, owner, owner_len): OK, released;
// NOT_FOUND, owner did not own the key.
func hostSpotRelease(ctx context.Context, m api.Memory, cs *callState, a []uint64) uint32 {
	args, st := spotStrings(m, cs, a, "namespace", "key", "owner")
	if st != StatusOK {
		return st
	}
	if cs.spot == nil {
		return cs.fail(errNoSpot)
	}
	ns, key, owner := string(args[0]), string(args[1]), string(args[2])
	var released bool
	var err error
	blocking(ctx, func(ctx context.Context) { released, err = cs.spot.Release(ctx, cs.app, ns, key, owner) })
	if err != nil {
		return cs.fail(err)
	}
	if !released {
		cs.lastErr = fmt.Sprintf("%q does not own key %q of namespace %q", owner, key, ns)
		return StatusNotFound
	}
	return StatusOK
}

// counterCall reads the counter name at a[0], a[1] and checks the i64
// output at a[outArg]. status is non-zero on failure.
func counterCall(m api.Memory, cs *callState, a []uint64, outArg int) (string, uint32) {
	args, st := spotStrings(m, cs, a, "counter name")
	if st != StatusOK {
		return "", st
	}
	if !outI64(m, uint32(a[outArg])) {
		return "", StatusMemory
	}
	if cs.spot == nil {
		return "", cs.fail(errNoSpot)
	}
	return string(args[0]), StatusOK
}

func checkAmount(cs *callState, n int64) uint32 {
	if n <= 0 {
		cs.lastErr = fmt.Sprintf("the amount must be positive, got %d", n)
		return StatusInvalid
	}
	return StatusOK
}

// spot_take(name, name_len, n: i64, remaining_out): OK, taken; CONFLICT,
// fewer than n remain and nothing changed. *remaining_out (i64) is the stock
// after the call in both cases.
func hostSpotTake(ctx context.Context, m api.Memory, cs *callState, a []uint64) uint32 {
	name, st := counterCall(m, cs, a, 3)
	if st != StatusOK {
		return st
	}
	n := int64(a[2])
	if st := checkAmount(cs, n); st != StatusOK {
		return st
	}
	var ok bool
	var remaining int64
	var err error
	blocking(ctx, func(ctx context.Context) { ok, remaining, err = cs.spot.Take(ctx, cs.app, name, n) })
	if err != nil {
		return cs.fail(err)
	}
	m.WriteUint64Le(uint32(a[3]), uint64(remaining))
	if !ok {
		cs.lastErr = fmt.Sprintf("counter %q has %d left, fewer than the %d asked", name, remaining, n)
		return StatusConflict
	}
	return StatusOK
}

// spot_restock(name, name_len, n: i64, remaining_out): adds n to the stock.
func hostSpotRestock(ctx context.Context, m api.Memory, cs *callState, a []uint64) uint32 {
	name, st := counterCall(m, cs, a, 3)
	if st != StatusOK {
		return st
	}
	n := int64(a[2])
	if st := checkAmount(cs, n); st != StatusOK {
		return st
	}
	var remaining int64
	var err error
	blocking(ctx, func(ctx context.Context) { remaining, err = cs.spot.Restock(ctx, cs.app, name, n) })
	if err != nil {
		return cs.fail(err)
	}
	m.WriteUint64Le(uint32(a[3]), uint64(remaining))
	return StatusOK
}

// spot_counter(name, name_len, remaining_out): what remains of the stock.
func hostSpotCounter(ctx context.Context, m api.Memory, cs *callState, a []uint64) uint32 {
	name, st := counterCall(m, cs, a, 2)
	if st != StatusOK {
		return st
	}
	var remaining int64
	var err error
	blocking(ctx, func(ctx context.Context) { remaining, err = cs.spot.Counter(ctx, cs.app, name) })
	if err != nil {
		return cs.fail(err)
	}
	m.WriteUint64Le(uint32(a[2]), uint64(remaining))
	return StatusOK
}

// spot_doc_get(key, key_len, buf, cap, len_out, rev_out): the document's
// JSON and, in *rev_out (i64), its revision; NOT_FOUND with revision 0.
func hostSpotDocGet(ctx context.Context, m api.Memory, cs *callState, a []uint64) uint32 {
	args, st := spotStrings(m, cs, a, "document key")
	if st != StatusOK {
		return st
	}
	ptr, capacity, lenOut, revOut := uint32(a[2]), uint32(a[3]), uint32(a[4]), uint32(a[5])
	if !outBuf(m, ptr, capacity, lenOut) || !outI64(m, revOut) {
		return StatusMemory
	}
	if cs.spot == nil {
		return cs.fail(errNoSpot)
	}
	key := string(args[0])
	var doc []byte
	var rev uint64
	var err error
	blocking(ctx, func(ctx context.Context) { doc, rev, err = cs.spot.GetDoc(ctx, cs.app, key) })
	if err != nil {
		return cs.fail(err)
	}
	if doc == nil {
		m.WriteUint64Le(revOut, 0)
		cs.lastErr = fmt.Sprintf("central document %q does not exist", key)
		return StatusNotFound
	}
	m.WriteUint64Le(revOut, rev)
	// Reading has no effect: a retry reads again rather than keeping.
	return writeOut(m, doc, ptr, capacity, lenOut)
}

// spot_doc_update(key, key_len, rev: i64, ops, ops_len, buf, cap, len_out,
// rev_out): applies the JSON operations if the document is at revision rev
// (0: create it). OK: buf gets the new document, *rev_out its revision.
// CONFLICT: the document is at *rev_out; NOT_FOUND: it does not exist.
func hostSpotDocUpdate(ctx context.Context, m api.Memory, cs *callState, a []uint64) uint32 {
	args, st := spotStrings(m, cs, a, "document key")
	if st != StatusOK {
		return st
	}
	rev := a[2]
	raw, ok := read(m, uint32(a[3]), uint32(a[4]))
	if !ok {
		return StatusMemory
	}
	ptr, capacity, lenOut, revOut := uint32(a[5]), uint32(a[6]), uint32(a[7]), uint32(a[8])
	if !outBuf(m, ptr, capacity, lenOut) || !outI64(m, revOut) {
		return StatusMemory
	}
	if len(raw) > maxSpotOps {
		cs.lastErr = fmt.Sprintf("the operations are %d bytes, more than the maximum of %d", len(raw), maxSpotOps)
		return StatusInvalid
	}
	if cs.spot == nil {
		return cs.fail(errNoSpot)
	}
	callArgs := [][]byte{args[0], raw}
	if r := cs.retrieve("spot_doc_update", rev, callArgs); r != nil {
		m.WriteUint64Le(revOut, r.num)
		return cs.deliver(m, r.status, r.out, r.num, ptr, capacity, lenOut, "spot_doc_update", rev, callArgs)
	}
	var ops []crdt.Op
	if err := json.Unmarshal(raw, &ops); err != nil {
		return cs.fail(errDocMalformed)
	}
	key := string(args[0])
	var doc []byte
	var newRev uint64
	var err error
	blocking(ctx, func(ctx context.Context) { doc, newRev, err = cs.spot.UpdateDoc(ctx, cs.app, key, rev, ops) })
	var conflict *spotConflict
	if errors.As(err, &conflict) {
		m.WriteUint64Le(revOut, conflict.current)
		st := cs.fail(err)
		if conflict.current == 0 {
			st = StatusNotFound
		}
		return st
	}
	if err != nil {
		return cs.fail(err)
	}
	m.WriteUint64Le(revOut, newRev)
	return cs.deliver(m, StatusOK, doc, newRev, ptr, capacity, lenOut, "spot_doc_update", rev, callArgs)
}
