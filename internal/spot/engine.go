package spot

import (
	"context"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/verge-edge/verge/crdt"
)

// Engine is the strongly consistent store of the central PoP. Every method is
// linearizable: it takes effect atomically at one instant between its call
// and its return, and a method that returns ErrUnavailable had no effect.
//
// Names (app, namespace, key, owner, counter) are non-empty UTF-8 strings
// within the Max* limits; the namespace may be empty.
type Engine interface {
	// Claim makes owner the owner of (app, ns, key) if nobody owns it.
	// Claiming a key one already owns succeeds again (Claimed true); a key
	// owned by someone else reports Claimed false and the current owner.
	Claim(ctx context.Context, app, ns, key, owner string) (Claim, error)
	// Release frees (app, ns, key) if owner owns it and reports whether it did.
	Release(ctx context.Context, app, ns, key, owner string) (bool, error)

	// Take removes n (> 0) from a bounded stock. When fewer than n remain it
	// changes nothing and reports OK false with what remains: a stock never
	// goes below zero.
	Take(ctx context.Context, app, counter string, n int64) (Take, error)
	// Restock adds n (> 0) to a stock and returns what remains.
	Restock(ctx context.Context, app, counter string, n int64) (remaining int64, err error)
	// Counter returns what remains of a stock; 0 for a stock never restocked.
	Counter(ctx context.Context, app, counter string) (remaining int64, err error)

	// GetDoc returns a document as JSON and its revision; (nil, 0, nil) when
	// the document does not exist.
	GetDoc(ctx context.Context, app, key string) (doc []byte, rev uint64, err error)
	// UpdateDoc applies ops atomically if the document is still at revision
	// rev (0: the document must not exist yet) and returns the new document
	// and revision (rev+1). Otherwise it changes nothing and returns a
	// *ConflictError carrying the current revision (errors.Is ErrConflict).
	UpdateDoc(ctx context.Context, app, key string, rev uint64, ops []crdt.Op) (doc []byte, newRev uint64, err error)
}

// Claim is the outcome of Engine.Claim.
type Claim struct {
	Claimed bool   // the caller owns the key now
	Owner   string // the owner now: the caller when Claimed, else the other owner
}

// Take is the outcome of Engine.Take.
type Take struct {
	OK        bool  // n was taken; false: not enough stock, nothing changed
	Remaining int64 // the stock after the call
	// Local: served from the units this PoP holds in escrow (internal/stock),
	// with no round trip to the centre. The centre's engine never sets it.
	Local bool
	// Seq is the counter's write sequence after the call (TakeOnce only):
	// the Base of the client's next change.
	Seq uint64
}

// Limits on inputs. They keep every KV key within NATS's subject limits and
// every value and message within the default 1 MiB payload.
const (
	MaxApp      = 128       // bytes in an app name
	MaxNS       = 128       // bytes in a claim namespace
	MaxKey      = 512       // bytes in a claim key, counter name or document key
	MaxOwner    = 256       // bytes in an owner
	MaxOps      = 1024      // operations in one UpdateDoc
	MaxOpsBytes = 256 << 10 // bytes of paths and values in one UpdateDoc
	MaxDocBytes = 512 << 10 // bytes of a document, encoded or as JSON
)

var (
	// ErrInvalid is matched (errors.Is) by errors about the caller's input:
	// a name too long, n <= 0, an overflow, an op that does not apply.
	// Retrying the same call fails the same way.
	ErrInvalid = errors.New("spot: invalid request")

	// ErrConflict is matched by the *ConflictError of UpdateDoc.
	ErrConflict = errors.New("spot: revision conflict")

	// ErrUnavailable is matched by errors returned when the central PoP or
	// its store cannot be reached. Unless the error also matches
	// ErrUnknownOutcome, the operation was not applied and may be retried.
	ErrUnavailable = errors.New("spot: central PoP unavailable")

	// ErrUnknownOutcome is matched by errors returned when a change was sent
	// but no answer came back: it may or may not have been applied, now or
	// later. Such errors also match ErrUnavailable. Read the state before
	// deciding to retry (Counter, GetDoc; Claim is idempotent per owner).
	ErrUnknownOutcome = errors.New("spot: outcome unknown")

	// ErrBusy is matched by errors returned when the centre refuses work
	// because it is overloaded or a key is too contended; nothing was
	// applied. Such errors also match ErrUnavailable.
	ErrBusy = errors.New("spot: central PoP busy")
)

// ConflictError is returned by UpdateDoc when the document is not at the
// expected revision.
type ConflictError struct {
	Key      string
	Expected uint64 // the revision the caller asked for
	Current  uint64 // the document's revision now; 0: it does not exist
}

func (e *ConflictError) Error() string {
	if e.Current == 0 {
		return fmt.Sprintf("spot: document %q does not exist (expected revision %d); create it with revision 0", e.Key, e.Expected)
	}
	if e.Expected == 0 {
		return fmt.Sprintf("spot: document %q already exists at revision %d; read it and update that revision", e.Key, e.Current)
	}
	return fmt.Sprintf("spot: document %q is at revision %d, not %d; read it again and retry", e.Key, e.Current, e.Expected)
}

func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// twoKinds is an error that matches two sentinels: an unknown outcome or a
// busy centre is also an unavailable one, so callers that only care about
// "the centre did not do it for me" check ErrUnavailable alone.
type twoKinds struct {
	kind, also error
	msg        string
}

func (e *twoKinds) Error() string        { return e.kind.Error() + ": " + e.msg }
func (e *twoKinds) Is(target error) bool { return target == e.kind || target == e.also }

func unknownOutcome(format string, args ...any) error {
	return &twoKinds{ErrUnknownOutcome, ErrUnavailable, fmt.Sprintf(format, args...)}
}

func busy(format string, args ...any) error {
	return &twoKinds{ErrBusy, ErrUnavailable, fmt.Sprintf(format, args...)}
}

func checkName(what, s string, max int, empty bool) error {
	if s == "" && !empty {
		return invalid("%s is empty", what)
	}
	if len(s) > max {
		return invalid("%s is %d bytes, more than the maximum of %d", what, len(s), max)
	}
	if !utf8.ValidString(s) {
		return invalid("%s is not valid UTF-8", what)
	}
	return nil
}

func checkClaim(app, ns, key, owner string) error {
	if err := checkName("app", app, MaxApp, false); err != nil {
		return err
	}
	if err := checkName("namespace", ns, MaxNS, true); err != nil {
		return err
	}
	if err := checkName("key", key, MaxKey, false); err != nil {
		return err
	}
	return checkName("owner", owner, MaxOwner, false)
}

func checkCounter(app, counter string) error {
	if err := checkName("app", app, MaxApp, false); err != nil {
		return err
	}
	return checkName("counter", counter, MaxKey, false)
}

func checkAmount(n int64) error {
	if n <= 0 {
		return invalid("amount %d must be positive", n)
	}
	return nil
}

// checkChange checks a take or restock of n units of a counter.
func checkChange(app, counter string, n int64) error {
	if err := checkCounter(app, counter); err != nil {
		return err
	}
	return checkAmount(n)
}

// checkChangeOnce checks a take or restock sent with its id.
func checkChangeOnce(app, counter string, n int64, id OpID) error {
	if err := checkChange(app, counter, n); err != nil {
		return err
	}
	return checkOpID(id)
}

func checkDocKey(app, key string) error {
	if err := checkName("app", app, MaxApp, false); err != nil {
		return err
	}
	return checkName("document key", key, MaxKey, false)
}

func checkOps(ops []crdt.Op) error {
	if len(ops) == 0 {
		return invalid("no operations")
	}
	if len(ops) > MaxOps {
		return invalid("%d operations, more than the maximum of %d in one update", len(ops), MaxOps)
	}
	size := 0
	for i := range ops {
		size += len(ops[i].Op) + len(ops[i].Path) + len(ops[i].Value)
	}
	if size > MaxOpsBytes {
		return invalid("operations carry %d bytes, more than the maximum of %d", size, MaxOpsBytes)
	}
	return nil
}

// addStock returns a+n or an error when the sum would overflow.
func addStock(a, n int64) (int64, error) {
	if a > math.MaxInt64-n {
		return 0, invalid("restocking %d onto %d overflows the counter (max %d)", n, a, int64(math.MaxInt64))
	}
	return a + n, nil
}
