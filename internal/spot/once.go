package spot

import (
	"context"
	"errors"
	"fmt"
)

// OpID names one change of a counter, chosen by the client that sends it,
// so that the change can be sent again after a lost answer and be applied
// at most once: the centre keeps the ids of a key's recent writes in its
// value (a window of them, durably, with the write), and answers a resend
// whose id it finds with the result the first send had.
//
// The client picks Client at random when it starts and numbers its changes
// (Seq, from 1); it records the id before the first send (an edge PoP
// stores it with its escrow), so that a crash of the client, too, ends in a
// resend rather than in doubt.
type OpID struct {
	Client, Seq uint64
	// Resend: the change may have been sent before. A first send is
	// applied at once; a resend is first looked up.
	Resend bool
	// Base is the counter's write sequence (Take.Seq, CounterSeq) the
	// client knew before it first sent the change, 0 if none. A change is
	// applied after its first send, so after write Base: a resend that the
	// window does not hold although it holds every write since Base was
	// never applied, and is applied now. When more writes than the window
	// holds came since Base, the centre cannot tell and answers
	// ErrForgotten.
	Base uint64
}

// Once is implemented by the engines that apply counter changes exactly
// once per OpID (the JetStream engine and its client).
type Once interface {
	TakeOnce(ctx context.Context, app, counter string, n int64, id OpID) (Take, error)
	// RestockOnce returns what remains and the counter's write sequence.
	RestockOnce(ctx context.Context, app, counter string, n int64, id OpID) (remaining int64, seq uint64, err error)
	// CounterSeq is Counter with the counter's write sequence, a Base for
	// the next change.
	CounterSeq(ctx context.Context, app, counter string) (remaining int64, seq uint64, err error)
}

// ErrForgotten is matched by the error of a resend the centre can no longer
// settle: its id is not in the key's window and more writes than the window
// holds came after the change's Base. It was applied once or never; it will
// not be applied now. It also matches ErrUnknownOutcome and ErrUnavailable.
var ErrForgotten = errors.New("spot: change forgotten")

// kinds is an error matching several sentinels.
type kinds struct {
	is  []error
	msg string
}

func (e *kinds) Error() string { return e.is[0].Error() + ": " + e.msg }
func (e *kinds) Is(target error) bool {
	for _, k := range e.is {
		if target == k {
			return true
		}
	}
	return false
}

func forgotten(format string, args ...any) error {
	return &kinds{[]error{ErrForgotten, ErrUnknownOutcome, ErrUnavailable}, fmt.Sprintf(format, args...)}
}

func checkOpID(id OpID) error {
	if id.Client == 0 || id.Seq == 0 {
		return invalid("operation id %d/%d: client and sequence must be non-zero", id.Client, id.Seq)
	}
	return nil
}

// resent looks a change up in v: found reports the result and write
// sequence it had; err is ErrForgotten when v can no longer tell. A first
// send is looked up too: the centre serves each request on its own
// goroutine, so a resend can overtake the first send it repeats.
func resent(v *value, id OpID, key string) (ent entry, seq uint64, found bool, err error) {
	if ent, seq, ok := v.find(opID{id.Client, id.Seq}); ok {
		return ent, seq, true, nil
	}
	if id.Resend && !v.covers(id.Base) {
		return entry{}, 0, false, forgotten("key %s: change %d/%d is not among its last %d writes, and %d writes came after write %d the client knew: applied once or never, not now",
			key, id.Client, id.Seq, len(v.win), v.seq-id.Base, id.Base)
	}
	return entry{}, 0, false, nil
}

func (e *JetStream) TakeOnce(ctx context.Context, app, counter string, n int64, id OpID) (Take, error) {
	if err := checkChangeOnce(app, counter, n, id); err != nil {
		return Take{}, err
	}
	key := kvKey(kindCounter, app, counter)
	var dup bool
	var at uint64
	p, err := e.doID(ctx, key, kindCounter, opID{id.Client, id.Seq}, func(v *value) (int64, bool, error) {
		ent, seq, found, err := resent(v, id, key)
		if err != nil {
			return 0, false, err
		}
		if dup, at = found, seq; found {
			return ent.res, false, nil
		}
		at = v.seq
		return v.take(n)
	})
	if err != nil {
		return Take{}, err
	}
	if p.wrote {
		at = p.seq
	}
	return Take{OK: p.wrote || dup, Remaining: p.res, Seq: at}, nil
}

func (e *JetStream) RestockOnce(ctx context.Context, app, counter string, n int64, id OpID) (int64, uint64, error) {
	if err := checkChangeOnce(app, counter, n, id); err != nil {
		return 0, 0, err
	}
	key := kvKey(kindCounter, app, counter)
	var at uint64
	p, err := e.doID(ctx, key, kindCounter, opID{id.Client, id.Seq}, func(v *value) (int64, bool, error) {
		ent, seq, found, err := resent(v, id, key)
		if err != nil {
			return 0, false, err
		}
		if found {
			at = seq
			return ent.res, false, nil
		}
		s, err := addStock(v.stock, n)
		if err != nil {
			return 0, false, err
		}
		v.stock = s
		return s, true, nil
	})
	if err != nil {
		return 0, 0, err
	}
	if p.wrote {
		at = p.seq
	}
	return p.res, at, nil
}

func (e *JetStream) CounterSeq(ctx context.Context, app, counter string) (int64, uint64, error) {
	if err := checkCounter(app, counter); err != nil {
		return 0, 0, err
	}
	_, v, err := e.read(ctx, kvKey(kindCounter, app, counter), kindCounter)
	if err != nil {
		return 0, 0, err
	}
	return v.stock, v.seq, nil
}

var _ Once = (*JetStream)(nil)
