package stock

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/verge-edge/verge/internal/spot"
)

// change is a change of the centre's counter that this PoP sent, or is
// about to send, and has no answer to yet: a grant (a take whose units go
// into the escrow), a take for a caller, the return of the escrow or a
// caller's restock. It is stored with the escrow's units before it is
// sent, and sent again with its id (spot.OpID) until the centre answers,
// which it does at most once per id; so neither a lost answer nor a crash
// of this PoP or of the centre leaves a unit in two places or in none.
type change struct {
	kind byte
	id   spot.OpID
	n    int64
	// caller: a caller waits for this take's units. When it gives up (or
	// after a restart) the change is settled in the background and the
	// units, if the centre took them, go into the escrow.
	caller bool
	// busy: a goroutine is sending it (the caller, a refill, a return, or
	// the rebalancer settling what nobody waits for).
	busy bool
}

const (
	chTake    byte = 't'
	chRestock byte = 'r'
)

// outcome of sending a change.
type outcome int

const (
	applied    outcome = iota // the centre answered (a take may have found too little)
	notApplied                // refused before it could apply: nothing changed
	forgotten                 // the centre no longer knows (spot.ErrForgotten)
	unsettled                 // no answer yet: still pending
)

// maxSends bounds the sends of a change by one goroutine; the rebalancer
// takes over from there.
const maxSends = 8

// escrowHeader starts an escrow record that has pending changes. A record
// without them is the 8 bytes of its units, as before changes were
// recorded, so an older build reads what a newer one writes in the common
// case.
var escrowHeader = []byte{'E', 1}

func encodeEscrow(units int64, pend []*change) []byte {
	if len(pend) == 0 {
		return binary.LittleEndian.AppendUint64(nil, uint64(units))
	}
	b := append([]byte(nil), escrowHeader...)
	b = binary.AppendUvarint(b, uint64(units))
	b = binary.AppendUvarint(b, uint64(len(pend)))
	for _, c := range pend {
		b = append(b, c.kind)
		b = binary.AppendUvarint(b, c.id.Client)
		b = binary.AppendUvarint(b, c.id.Seq)
		b = binary.AppendUvarint(b, c.id.Base)
		b = binary.AppendUvarint(b, uint64(c.n))
	}
	return b
}

// decodeEscrow reads an escrow record. Pending changes come back as
// resends nobody waits for: whoever waited did not survive the restart.
func decodeEscrow(b []byte) (int64, []*change, error) {
	if len(b) == 8 {
		return int64(binary.LittleEndian.Uint64(b)), nil, nil
	}
	if len(b) < len(escrowHeader) || string(b[:len(escrowHeader)]) != string(escrowHeader) {
		return 0, nil, fmt.Errorf("%d bytes in an unknown format", len(b))
	}
	b = b[len(escrowHeader):]
	var bad bool
	next := func() uint64 {
		x, n := binary.Uvarint(b)
		if n <= 0 {
			bad = true
			return 0
		}
		b = b[n:]
		return x
	}
	units := next()
	count := next()
	if bad || units > 1<<62 || count > uint64(len(b)) {
		return 0, nil, errors.New("corrupt escrow record")
	}
	pend := make([]*change, 0, count)
	for range count {
		if len(b) == 0 {
			return 0, nil, errors.New("truncated escrow record")
		}
		c := &change{kind: b[0]}
		b = b[1:]
		c.id = spot.OpID{Client: next(), Seq: next(), Base: next(), Resend: true}
		n := next()
		if bad || (c.kind != chTake && c.kind != chRestock) || n == 0 || n > 1<<62 {
			return 0, nil, errors.New("corrupt change in escrow record")
		}
		c.n = int64(n)
		pend = append(pend, c)
	}
	if len(b) != 0 {
		return 0, nil, errors.New("trailing bytes in escrow record")
	}
	return int64(units), pend, nil
}

// once returns the centre's engine if it applies changes once by id.
func (s *Stock) onceEngine() (spot.Once, bool) {
	o, ok := s.opts.Central.(spot.Once)
	return o, ok
}

// begin gives c an id and records it durably with the escrow, together
// with what mutate changes (under e.mu), before it is sent. On failure
// nothing was recorded and c is dropped; the caller undoes mutate.
func (s *Stock) begin(ctx context.Context, k [2]string, e *escrow, c *change, mutate func()) error {
	e.mu.Lock()
	if mutate != nil {
		mutate()
	}
	c.id = spot.OpID{Client: s.client, Seq: s.seq.Add(1), Base: e.wseq}
	c.busy = true
	e.pend = append(e.pend, c)
	e.mu.Unlock()
	if err := s.persist(ctx, k, e); err != nil {
		e.mu.Lock()
		e.drop(c)
		e.mu.Unlock()
		return err
	}
	return nil
}

func (e *escrow) drop(c *change) {
	for i, p := range e.pend {
		if p == c {
			e.pend = append(e.pend[:i:i], e.pend[i+1:]...)
			return
		}
	}
}

// send sends c, then resends it with the same id while no answer comes,
// until ctx ends or maxSends.
func (s *Stock) send(ctx context.Context, k [2]string, c *change) (spot.Take, outcome, error) {
	o, _ := s.onceEngine()
	for try := 0; ; try++ {
		var t spot.Take
		var err error
		if c.kind == chTake {
			t, err = o.TakeOnce(ctx, k[0], k[1], c.n, c.id)
		} else {
			t.Remaining, t.Seq, err = o.RestockOnce(ctx, k[0], k[1], c.n, c.id)
			t.OK = err == nil
		}
		switch {
		case err == nil:
			return t, applied, nil
		case errors.Is(err, spot.ErrForgotten):
			return t, forgotten, err
		case errors.Is(err, spot.ErrInvalid):
			// Refused as a request (never applied); a resend can only be
			// refused so by a centre that changed under us: give up on it.
			if c.id.Resend {
				return t, forgotten, err
			}
			return t, notApplied, err
		case !c.id.Resend && !errors.Is(err, spot.ErrUnknownOutcome):
			// The first send was not applied (not sent, no server, busy).
			return t, notApplied, err
		}
		// From now on the change may have been applied: every later send
		// is a resend, whatever happens to it.
		c.id.Resend = true
		if try+1 >= maxSends || ctx.Err() != nil {
			return t, unsettled, err
		}
		select {
		case <-ctx.Done():
			return t, unsettled, err
		case <-time.After(min(25*time.Millisecond<<try, time.Second)):
		}
	}
}

// settle applies the outcome of c to the escrow and drops c durably. It
// returns the take as its caller gets it: a take answered while its caller
// waits goes to the caller only once dropped durably, for a resend after a
// restart would otherwise put the same units into the escrow as well.
func (s *Stock) settle(ctx context.Context, k [2]string, e *escrow, c *change, oc outcome, t spot.Take, err error) (spot.Take, error) {
	e.mu.Lock()
	e.drop(c)
	c.busy = false
	if oc == applied {
		e.central, e.seen = t.Remaining, true
		e.wseq = max(e.wseq, t.Seq)
		if c.kind == chTake && t.OK && !c.caller {
			e.units += c.n // a grant, or a take whose caller gave up
			e.granted = true
		}
	}
	if oc == notApplied && c.kind == chRestock && !c.caller {
		e.units += c.n // a return that did not happen: the units are still here
	}
	e.mu.Unlock()
	if oc == forgotten {
		s.opts.Logger.Error("stock: the centre no longer knows whether a change was applied (more writes than its window since); its units may be lost (undersold), never doubled",
			"app", k[0], "counter", k[1], "kind", string(c.kind), "units", c.n, "err", err)
	}
	if perr := s.persist(context.WithoutCancel(ctx), k, e); perr != nil {
		if oc == applied && c.kind == chTake && t.OK && c.caller {
			// Still recorded as pending: keep the units here, where a
			// resend after a crash would put them, not with the caller.
			e.mu.Lock()
			e.units += c.n
			e.mu.Unlock()
			return spot.Take{}, fmt.Errorf("%w: recording a take: %v", spot.ErrUnavailable, perr)
		}
		s.opts.Logger.Error("stock: recording the answer to a change failed; it is resent after a restart (applied once)", "app", k[0], "counter", k[1], "err", perr)
	}
	return t, err
}

// exchange sends a recorded change and settles it, or leaves it to the
// rebalancer when no answer came.
func (s *Stock) exchange(ctx context.Context, k [2]string, e *escrow, c *change) (spot.Take, outcome, error) {
	t, oc, err := s.send(ctx, k, c)
	if oc == unsettled {
		e.mu.Lock()
		c.busy, c.caller = false, false
		e.mu.Unlock()
		return t, oc, err
	}
	t, err = s.settle(ctx, k, e, c, oc, t, err)
	return t, oc, err
}

// centralTake takes n units at the centre for a caller, once.
func (s *Stock) centralTake(ctx context.Context, k [2]string, e *escrow, n int64) (spot.Take, error) {
	if _, ok := s.onceEngine(); !ok {
		return s.opts.Central.Take(ctx, k[0], k[1], n)
	}
	c := &change{kind: chTake, n: n, caller: true}
	if err := s.begin(ctx, k, e, c, nil); err != nil {
		return spot.Take{}, err
	}
	t, oc, err := s.exchange(ctx, k, e, c)
	if oc == unsettled {
		return spot.Take{}, fmt.Errorf("%w: no answer from the central PoP (%v); if it took the units, they go into this PoP's escrow", spot.ErrUnavailable, err)
	}
	return t, err
}

// settlePending resends the changes nobody is sending any more (their
// caller gave up, or they were found at start), a few times each.
func (s *Stock) settlePending(ctx context.Context, k [2]string, e *escrow) {
	e.mu.Lock()
	var todo []*change
	for _, c := range e.pend {
		if !c.busy {
			c.busy = true
			todo = append(todo, c)
		}
	}
	e.mu.Unlock()
	for _, c := range todo {
		s.exchange(ctx, k, e, c)
	}
}

// Pending returns how many changes of a stock this PoP has sent to the
// centre without an answer yet.
func (s *Stock) Pending(app, counter string) int {
	e := s.escrow([2]string{app, counter})
	if e == nil {
		return 0
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.pend)
}
