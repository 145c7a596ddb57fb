package spot

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/verge-edge/verge/crdt"
)

// client is the edge side of SPOT: one request/reply per operation over a
// connection to the central PoP.
type client struct {
	nc      *nats.Conn
	prefix  string
	timeout time.Duration
}

// NewClient returns an Engine that sends every operation to the central
// PoP serving prefix (see Serve) over nc and waits at most timeout (or the
// context's deadline, if sooner) for the answer.
//
// It never retries. When the centre cannot be reached it fails fast with an
// error matching ErrUnavailable: at once when nc is not connected or no
// server serves prefix (the operation was not applied), else after the
// timeout. A change that timed out may still have been applied; its error
// also matches ErrUnknownOutcome.
func NewClient(nc *nats.Conn, prefix string, timeout time.Duration) Engine {
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	return &client{nc: nc, prefix: prefix + ".", timeout: timeout}
}

func (c *client) Claim(ctx context.Context, app, ns, key, owner string) (Claim, error) {
	if err := checkClaim(app, ns, key, owner); err != nil {
		return Claim{}, err
	}
	r, err := c.call(ctx, opClaim, true, func(b []byte) []byte {
		return appendStr(appendStr(appendStr(appendStr(b, app), ns), key), owner)
	})
	if err != nil {
		return Claim{}, err
	}
	out := Claim{Claimed: r.bool(), Owner: r.str(MaxOwner)}
	return out, c.end(r, opClaim)
}

func (c *client) Release(ctx context.Context, app, ns, key, owner string) (bool, error) {
	if err := checkClaim(app, ns, key, owner); err != nil {
		return false, err
	}
	r, err := c.call(ctx, opRelease, true, func(b []byte) []byte {
		return appendStr(appendStr(appendStr(appendStr(b, app), ns), key), owner)
	})
	if err != nil {
		return false, err
	}
	ok := r.bool()
	return ok, c.end(r, opRelease)
}

func (c *client) Take(ctx context.Context, app, counter string, n int64) (Take, error) {
	if err := checkChange(app, counter, n); err != nil {
		return Take{}, err
	}
	r, err := c.call(ctx, opTake, true, func(b []byte) []byte {
		return binary.AppendVarint(appendStr(appendStr(b, app), counter), n)
	})
	if err != nil {
		return Take{}, err
	}
	out := Take{OK: r.bool(), Remaining: r.varint()}
	return out, c.end(r, opTake)
}

func (c *client) Restock(ctx context.Context, app, counter string, n int64) (int64, error) {
	if err := checkChange(app, counter, n); err != nil {
		return 0, err
	}
	r, err := c.call(ctx, opRestock, true, func(b []byte) []byte {
		return binary.AppendVarint(appendStr(appendStr(b, app), counter), n)
	})
	if err != nil {
		return 0, err
	}
	v := r.varint()
	return v, c.end(r, opRestock)
}

func (c *client) Counter(ctx context.Context, app, counter string) (int64, error) {
	if err := checkCounter(app, counter); err != nil {
		return 0, err
	}
	r, err := c.call(ctx, opCounter, false, func(b []byte) []byte {
		return appendStr(appendStr(b, app), counter)
	})
	if err != nil {
		return 0, err
	}
	v := r.varint()
	return v, c.end(r, opCounter)
}

func (c *client) GetDoc(ctx context.Context, app, key string) ([]byte, uint64, error) {
	if err := checkDocKey(app, key); err != nil {
		return nil, 0, err
	}
	r, err := c.call(ctx, opGetDoc, false, func(b []byte) []byte {
		return appendStr(appendStr(b, app), key)
	})
	if err != nil {
		return nil, 0, err
	}
	rev := r.uvarint()
	doc := r.rest()
	if err := c.end(r, opGetDoc); err != nil {
		return nil, 0, err
	}
	if rev == 0 {
		return nil, 0, nil
	}
	return doc, rev, nil
}

func (c *client) UpdateDoc(ctx context.Context, app, key string, rev uint64, ops []crdt.Op) ([]byte, uint64, error) {
	if err := checkDocKey(app, key); err != nil {
		return nil, 0, err
	}
	if err := checkOps(ops); err != nil {
		return nil, 0, err
	}
	r, err := c.call(ctx, opUpdateDoc, true, func(b []byte) []byte {
		b = binary.AppendUvarint(appendStr(appendStr(b, app), key), rev)
		return appendOps(b, ops)
	})
	var ce *ConflictError
	if errors.As(err, &ce) {
		ce.Key, ce.Expected = key, rev
	}
	if err != nil {
		return nil, 0, err
	}
	nrev := r.uvarint()
	doc := r.rest()
	return doc, nrev, c.end(r, opUpdateDoc)
}

// call sends one request and returns a reader positioned on the fields of
// an ok reply, or the error the reply (or its absence) stands for.
func (c *client) call(ctx context.Context, op string, write bool, fields func([]byte) []byte) (*wreader, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// While reconnecting, nats.go would buffer the request and send it
	// whenever the link comes back: fail now instead, nothing was sent.
	if st := c.nc.Status(); st != nats.CONNECTED {
		return nil, fmt.Errorf("%w: not connected to the central PoP (connection %s); %s was not sent: retry later or answer without the centre", ErrUnavailable, st, op)
	}
	timeout := c.timeout
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = time.Until(d)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	b := make([]byte, 0, 64)
	b = append(b, wireVersion)
	b = binary.AppendUvarint(b, uint64(timeout/time.Millisecond)+1)
	b = fields(b)
	m, err := c.nc.RequestWithContext(ctx, c.prefix+op, b)
	if err != nil {
		switch {
		case errors.Is(err, nats.ErrNoResponders):
			return nil, fmt.Errorf("%w: no SPOT server answers on %s*; %s was not applied: is the central PoP up?", ErrUnavailable, c.prefix, op)
		case errors.Is(err, nats.ErrMaxPayload):
			return nil, fmt.Errorf("%w: %s request of %d bytes is larger than the server accepts", ErrInvalid, op, len(b))
		case write:
			return nil, unknownOutcome("no answer from the central PoP within %v (%v); %s may or may not have been applied: read the state before retrying", timeout, err, op)
		}
		return nil, fmt.Errorf("%w: no answer from the central PoP within %v: %v", ErrUnavailable, timeout, err)
	}
	r := &wreader{b: m.Data}
	if v := r.byte(); r.err != nil || v != wireVersion {
		return nil, fmt.Errorf("spot: %s: reply in wire version %d, this client speaks %d", op, v, wireVersion)
	}
	st := r.byte()
	if st == stOK {
		return r, nil
	}
	if st == stConflict {
		cur := r.uvarint()
		if err := r.end(); err != nil {
			return nil, fmt.Errorf("spot: %s: malformed reply: %v", op, err)
		}
		return nil, &ConflictError{Current: cur}
	}
	msg := r.str(maxMessage)
	if err := r.end(); err != nil {
		return nil, fmt.Errorf("spot: %s: malformed reply: %v", op, err)
	}
	// The centre's messages start with the sentinel the status stands for.
	for _, s := range []error{ErrInvalid, ErrUnavailable, ErrUnknownOutcome, ErrBusy, ErrForgotten} {
		msg = strings.TrimPrefix(msg, s.Error()+": ")
	}
	switch st {
	case stInvalid:
		return nil, fmt.Errorf("%w: %s", ErrInvalid, msg)
	case stUnavailable:
		return nil, fmt.Errorf("%w: %s", ErrUnavailable, msg)
	case stUnknown:
		return nil, unknownOutcome("%s", msg)
	case stBusy:
		return nil, busy("%s", msg)
	case stForgotten:
		return nil, forgotten("%s", msg)
	}
	return nil, fmt.Errorf("spot: %s failed at the central PoP: %s", op, msg)
}

func (c *client) end(r *wreader, op string) error {
	if err := r.end(); err != nil {
		return fmt.Errorf("spot: %s: malformed reply: %v", op, err)
	}
	return nil
}

// TakeOnce sends a take with its id. A centre that predates the "once"
// operations refuses them; a first send then goes as a plain take (its
// outcome, if lost, cannot be settled later: the caller's resend is
// answered ErrForgotten), so that edges can be upgraded before the centre.
func (c *client) TakeOnce(ctx context.Context, app, counter string, n int64, id OpID) (Take, error) {
	if err := checkChangeOnce(app, counter, n, id); err != nil {
		return Take{}, err
	}
	r, err := c.call(ctx, opTakeOnce, true, func(b []byte) []byte {
		return appendOpID(binary.AppendVarint(appendStr(appendStr(b, app), counter), n), id)
	})
	if oldCentre(err, opTakeOnce) {
		if id.Resend {
			return Take{}, forgotten("the central PoP predates changes by id: a take resent cannot be settled")
		}
		return c.Take(ctx, app, counter, n)
	}
	if err != nil {
		return Take{}, err
	}
	out := Take{OK: r.bool(), Remaining: r.varint(), Seq: r.uvarint()}
	return out, c.end(r, opTakeOnce)
}

// RestockOnce is TakeOnce's counterpart for restocks.
func (c *client) RestockOnce(ctx context.Context, app, counter string, n int64, id OpID) (int64, uint64, error) {
	if err := checkChangeOnce(app, counter, n, id); err != nil {
		return 0, 0, err
	}
	r, err := c.call(ctx, opRestockOnce, true, func(b []byte) []byte {
		return appendOpID(binary.AppendVarint(appendStr(appendStr(b, app), counter), n), id)
	})
	if oldCentre(err, opRestockOnce) {
		if id.Resend {
			return 0, 0, forgotten("the central PoP predates changes by id: a restock resent cannot be settled")
		}
		rem, err := c.Restock(ctx, app, counter, n)
		return rem, 0, err
	}
	if err != nil {
		return 0, 0, err
	}
	rem, seq := r.varint(), r.uvarint()
	return rem, seq, c.end(r, opRestockOnce)
}

func (c *client) CounterSeq(ctx context.Context, app, counter string) (int64, uint64, error) {
	if err := checkCounter(app, counter); err != nil {
		return 0, 0, err
	}
	r, err := c.call(ctx, opCounterSeq, false, func(b []byte) []byte {
		return appendStr(appendStr(b, app), counter)
	})
	if oldCentre(err, opCounterSeq) {
		rem, err := c.Counter(ctx, app, counter)
		return rem, 0, err
	}
	if err != nil {
		return 0, 0, err
	}
	rem, seq := r.varint(), r.uvarint()
	return rem, seq, c.end(r, opCounterSeq)
}

// oldCentre reports whether err is a centre's refusal of op as unknown.
func oldCentre(err error, op string) bool {
	return errors.Is(err, ErrInvalid) && strings.Contains(err.Error(), fmt.Sprintf("unknown operation %q", op))
}

var _ Once = (*client)(nil)
