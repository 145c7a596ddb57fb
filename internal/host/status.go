package host

import (
	"context"
	"errors"
	"fmt"

	"github.com/verge-edge/verge/internal/documents"
	"github.com/verge-edge/verge/internal/fetch"
	"github.com/verge-edge/verge/internal/spot"
	"github.com/verge-edge/verge/internal/wasm"
)

// ErrUnsupported is a call to a capability this host lacks.
var ErrUnsupported = errors.New("not available in this host")

// statuses maps service errors to the ABI status a guest gets for them
// (docs/abi.md); the first row the error matches (errors.Is) wins, and an
// error matching none is INTERNAL.
var statuses = []struct {
	err    error
	status uint32
}{
	{ErrUnsupported, wasm.StatusUnsupported},
	// documents
	{documents.ErrNotFound, wasm.StatusNotFound},
	{documents.ErrTooLarge, wasm.StatusLimit},
	{documents.ErrInvalid, wasm.StatusInvalid},
	{documents.ErrUnknownCollection, wasm.StatusInvalid},
	{documents.ErrUnknownApp, wasm.StatusInvalid},
	// the single point of truth, and the central PoP in general
	{spot.ErrConflict, wasm.StatusConflict},
	{spot.ErrInvalid, wasm.StatusInvalid},
	{spot.ErrUnknownOutcome, wasm.StatusUnknown}, // before ErrUnavailable, which it also matches
	{spot.ErrUnavailable, wasm.StatusUnavailable},
	// central functions
	{ErrNoFunction, wasm.StatusNotFound},
	// outbound fetch: a timeout is the backend not answering in time
	{fetch.ErrNotDeclared, wasm.StatusNotFound},
	{fetch.ErrForbiddenAddress, wasm.StatusInvalid},
	{fetch.ErrInvalid, wasm.StatusInvalid},
	{fetch.ErrTooLarge, wasm.StatusLimit},
	{fetch.ErrTooManyFetches, wasm.StatusLimit},
	{fetch.ErrTimeout, wasm.StatusUnavailable},
	{fetch.ErrUnavailable, wasm.StatusUnavailable},
	// rooms
	{ErrNoConnection, wasm.StatusNotFound},
	{ErrNoAlarm, wasm.StatusNotFound},
	{ErrRoomInvalid, wasm.StatusInvalid},
	{ErrRoomLimit, wasm.StatusLimit},
	{ErrNotOwner, wasm.StatusUnavailable},
	// the request's own end: its deadline, or the client gone
	{context.DeadlineExceeded, wasm.StatusUnavailable},
	{context.Canceled, wasm.StatusUnavailable},
}

// Status is the ABI status of err.
func Status(err error) uint32 {
	if err == nil {
		return wasm.StatusOK
	}
	for _, s := range statuses {
		if errors.Is(err, s.err) {
			return s.status
		}
	}
	return wasm.StatusInternal
}

// fail records err as the call's last error and returns its status.
func fail(c *wasm.Call, err error) uint32 { return c.Fail(Status(err), err) }

// kindError is an error that matches a sentinel (errors.Is) while keeping
// its own message: host-made errors say what happened, the sentinel says
// which status it is.
type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

func errorOf(kind error, msg string) error { return &kindError{kind, msg} }

// Errorf returns an error that matches kind (errors.Is), so that it gets
// kind's status, with its own message.
func Errorf(kind error, format string, args ...any) error {
	return &kindError{kind, fmt.Sprintf(format, args...)}
}
