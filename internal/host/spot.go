package host

import (
	"context"
	"errors"

	"github.com/verge-edge/verge/internal/spot"
	"github.com/verge-edge/verge/internal/wasm"
)

// The spot_* host calls reach the single point of truth (internal/spot has
// the semantics): the centre's engine, or a client of it at an edge PoP,
// through the hybrid threshold of declared stocks (internal/stock). Every
// call may cross the WAN.

var errNoSpot = errorOf(ErrUnsupported, "the central PoP's operations (spot_*) are not available in this host (no central PoP configured)")

// Host-side bounds on what a guest can make the host copy before the centre
// sees it; the centre enforces its own, smaller limits and explains them.
const (
	maxSpotName = 1 << 10 // a namespace, key, owner or counter name
	maxSpotOps  = 1 << 20 // the JSON operations of one spot_doc_update
)

func spotCapability(e spot.Engine) wasm.Capability {
	h := &spotCalls{e}
	i32, i64 := wasm.I32, wasm.I64
	return wasm.Capability{Name: "spot", Functions: []wasm.HostFunction{
		{Name: "spot_claim", Params: wasm.I32s(9), Call: h.claim},
		{Name: "spot_release", Params: wasm.I32s(6), Call: h.release},
		{Name: "spot_take", Params: wasm.Params(i32, i32, i64, i32), Call: h.take},
		{Name: "spot_restock", Params: wasm.Params(i32, i32, i64, i32), Call: h.restock},
		{Name: "spot_counter", Params: wasm.I32s(3), Call: h.counter},
		{Name: "spot_doc_get", Params: wasm.I32s(6), Call: h.docGet},
		{Name: "spot_doc_update", Params: wasm.Params(i32, i32, i64, i32, i32, i32, i32, i32, i32), Call: h.docUpdate},
	}}
}

type spotCalls struct{ engine spot.Engine }

// strings reads the guest strings at a[2i], a[2i+1] into views (valid
// during the host call only). status is MEMORY or INVALID on failure.
func (h *spotCalls) strings(c *wasm.Call, a []uint64, names ...string) ([][]byte, uint32) {
	views := make([][]byte, len(names))
	for i := range names {
		b, ok := c.Bytes(uint32(a[2*i]), uint32(a[2*i+1]))
		if !ok {
			return nil, wasm.StatusMemory
		}
		views[i] = b
	}
	for i, b := range views {
		if len(b) > maxSpotName {
			return nil, c.Refuse(wasm.StatusInvalid, "the %s is %d bytes, more than the maximum of %d", names[i], len(b), maxSpotName)
		}
	}
	return views, wasm.StatusOK
}

// spot_claim(ns, ns_len, key, key_len, owner, owner_len, buf, cap, len_out):
// OK, the caller owns the key; CONFLICT, someone else does. Either way buf
// gets the owner.
func (h *spotCalls) claim(ctx context.Context, c *wasm.Call, a []uint64) uint32 {
	args, st := h.strings(c, a, "namespace", "key", "owner")
	if st != wasm.StatusOK {
		return st
	}
	ptr, capacity, lenOut := uint32(a[6]), uint32(a[7]), uint32(a[8])
	if !c.OutBuf(ptr, capacity, lenOut) {
		return wasm.StatusMemory
	}
	if h.engine == nil {
		return fail(c, errNoSpot)
	}
	if r, ok := c.Retrieve("spot_claim", 0, args); ok {
		return c.Deliver(r.Status, r.Out, 0, ptr, capacity, lenOut, "spot_claim", 0, args)
	}
	ns, key, owner := string(args[0]), string(args[1]), string(args[2])
	var claim spot.Claim
	var err error
	wasm.Blocking(ctx, func(ctx context.Context) { claim, err = h.engine.Claim(ctx, c.App(), ns, key, owner) })
	if err != nil {
		return fail(c, err)
	}
	status := uint32(wasm.StatusOK)
	if !claim.Claimed {
		status = c.Refuse(wasm.StatusConflict, "key %q of namespace %q is claimed by %q", key, ns, claim.Owner)
	}
	return c.Deliver(status, []byte(claim.Owner), 0, ptr, capacity, lenOut, "spot_claim", 0, args)
}

// spot_release(ns, ns_len, key, key_len, owner, owner_len): OK, released;
// NOT_FOUND, owner did not own the key.
func (h *spotCalls) release(ctx context.Context, c *wasm.Call, a []uint64) uint32 {
	args, st := h.strings(c, a, "namespace", "key", "owner")
	if st != wasm.StatusOK {
		return st
	}
	if h.engine == nil {
		return fail(c, errNoSpot)
	}
	ns, key, owner := string(args[0]), string(args[1]), string(args[2])
	var released bool
	var err error
	wasm.Blocking(ctx, func(ctx context.Context) { released, err = h.engine.Release(ctx, c.App(), ns, key, owner) })
	if err != nil {
		return fail(c, err)
	}
	if !released {
		return c.Refuse(wasm.StatusNotFound, "%q does not own key %q of namespace %q", owner, key, ns)
	}
	return wasm.StatusOK
}

// counter reads the counter name at a[0], a[1] and checks the i64 output at
// a[outArg]. status is non-zero on failure.
func (h *spotCalls) counterArgs(c *wasm.Call, a []uint64, outArg int) (string, uint32) {
	args, st := h.strings(c, a, "counter name")
	if st != wasm.StatusOK {
		return "", st
	}
	if !c.Writable(uint32(a[outArg]), 8) {
		return "", wasm.StatusMemory
	}
	if h.engine == nil {
		return "", fail(c, errNoSpot)
	}
	return string(args[0]), wasm.StatusOK
}

func checkAmount(c *wasm.Call, n int64) uint32 {
	if n <= 0 {
		return c.Refuse(wasm.StatusInvalid, "the amount must be positive, got %d", n)
	}
	return wasm.StatusOK
}

// spot_take(name, name_len, n: i64, remaining_out): OK, taken; CONFLICT,
// fewer than n remain and nothing changed. *remaining_out (i64) is the stock
// after the call in both cases.
func (h *spotCalls) take(ctx context.Context, c *wasm.Call, a []uint64) uint32 {
	name, st := h.counterArgs(c, a, 3)
	if st != wasm.StatusOK {
		return st
	}
	n := int64(a[2])
	if st := checkAmount(c, n); st != wasm.StatusOK {
		return st
	}
	var t spot.Take
	var err error
	wasm.Blocking(ctx, func(ctx context.Context) { t, err = h.engine.Take(ctx, c.App(), name, n) })
	if err != nil {
		return fail(c, err)
	}
	c.PutUint64(uint32(a[3]), uint64(t.Remaining))
	if !t.OK {
		return c.Refuse(wasm.StatusConflict, "counter %q has %d left, fewer than the %d asked", name, t.Remaining, n)
	}
	return wasm.StatusOK
}

// spot_restock(name, name_len, n: i64, remaining_out): adds n to the stock.
func (h *spotCalls) restock(ctx context.Context, c *wasm.Call, a []uint64) uint32 {
	name, st := h.counterArgs(c, a, 3)
	if st != wasm.StatusOK {
		return st
	}
	n := int64(a[2])
	if st := checkAmount(c, n); st != wasm.StatusOK {
		return st
	}
	var remaining int64
	var err error
	wasm.Blocking(ctx, func(ctx context.Context) { remaining, err = h.engine.Restock(ctx, c.App(), name, n) })
	if err != nil {
		return fail(c, err)
	}
	c.PutUint64(uint32(a[3]), uint64(remaining))
	return wasm.StatusOK
}

// spot_counter(name, name_len, remaining_out): what remains of the stock.
func (h *spotCalls) counter(ctx context.Context, c *wasm.Call, a []uint64) uint32 {
	name, st := h.counterArgs(c, a, 2)
	if st != wasm.StatusOK {
		return st
	}
	var remaining int64
	var err error
	wasm.Blocking(ctx, func(ctx context.Context) { remaining, err = h.engine.Counter(ctx, c.App(), name) })
	if err != nil {
		return fail(c, err)
	}
	c.PutUint64(uint32(a[2]), uint64(remaining))
	return wasm.StatusOK
}

// spot_doc_get(key, key_len, buf, cap, len_out, rev_out): the document's
// JSON and, in *rev_out (i64), its revision; NOT_FOUND with revision 0.
func (h *spotCalls) docGet(ctx context.Context, c *wasm.Call, a []uint64) uint32 {
	args, st := h.strings(c, a, "document key")
	if st != wasm.StatusOK {
		return st
	}
	ptr, capacity, lenOut, revOut := uint32(a[2]), uint32(a[3]), uint32(a[4]), uint32(a[5])
	if !c.OutBuf(ptr, capacity, lenOut) || !c.Writable(revOut, 8) {
		return wasm.StatusMemory
	}
	if h.engine == nil {
		return fail(c, errNoSpot)
	}
	key := string(args[0])
	var doc []byte
	var rev uint64
	var err error
	wasm.Blocking(ctx, func(ctx context.Context) { doc, rev, err = h.engine.GetDoc(ctx, c.App(), key) })
	if err != nil {
		return fail(c, err)
	}
	if doc == nil {
		c.PutUint64(revOut, 0)
		return c.Refuse(wasm.StatusNotFound, "central document %q does not exist", key)
	}
	c.PutUint64(revOut, rev)
	// Reading has no effect: a retry reads again rather than keeping.
	return c.Out(doc, ptr, capacity, lenOut)
}

// spot_doc_update(key, key_len, rev: i64, ops, ops_len, buf, cap, len_out,
// rev_out): applies the JSON operations if the document is at revision rev
// (0: create it). OK: buf gets the new document, *rev_out its revision.
// CONFLICT: the document is at *rev_out; NOT_FOUND: it does not exist.
func (h *spotCalls) docUpdate(ctx context.Context, c *wasm.Call, a []uint64) uint32 {
	args, st := h.strings(c, a, "document key")
	if st != wasm.StatusOK {
		return st
	}
	rev := a[2]
	raw, ok := c.Bytes(uint32(a[3]), uint32(a[4]))
	if !ok {
		return wasm.StatusMemory
	}
	ptr, capacity, lenOut, revOut := uint32(a[5]), uint32(a[6]), uint32(a[7]), uint32(a[8])
	if !c.OutBuf(ptr, capacity, lenOut) || !c.Writable(revOut, 8) {
		return wasm.StatusMemory
	}
	if len(raw) > maxSpotOps {
		return c.Refuse(wasm.StatusInvalid, "the operations are %d bytes, more than the maximum of %d", len(raw), maxSpotOps)
	}
	if h.engine == nil {
		return fail(c, errNoSpot)
	}
	callArgs := [][]byte{args[0], raw}
	if r, ok := c.Retrieve("spot_doc_update", rev, callArgs); ok {
		c.PutUint64(revOut, r.Num)
		return c.Deliver(r.Status, r.Out, r.Num, ptr, capacity, lenOut, "spot_doc_update", rev, callArgs)
	}
	ops, err := decodeOps(raw)
	if err != nil {
		return fail(c, err)
	}
	key := string(args[0])
	var doc []byte
	var newRev uint64
	wasm.Blocking(ctx, func(ctx context.Context) { doc, newRev, err = h.engine.UpdateDoc(ctx, c.App(), key, rev, ops) })
	var conflict *spot.ConflictError
	if errors.As(err, &conflict) {
		c.PutUint64(revOut, conflict.Current)
		st := fail(c, err)
		if conflict.Current == 0 {
			st = wasm.StatusNotFound
		}
		return st
	}
	if err != nil {
		return fail(c, err)
	}
	c.PutUint64(revOut, newRev)
	return c.Deliver(wasm.StatusOK, doc, newRev, ptr, capacity, lenOut, "spot_doc_update", rev, callArgs)
}
