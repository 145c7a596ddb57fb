package wasm

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/verge-edge/verge/internal/jsonapi"
)

// Kinds of request failure. They name the limit or fault in the JSON body of
// the error response, so they are part of the public contract (docs/abi.md,
// "Errors the client sees").
const (
	KindCPUTime      = "cpu_time"
	KindWallTime     = "wall_time"
	KindMemory       = "memory"
	KindRequestBody  = "request_body"
	KindResponseBody = "response_body"
	KindConcurrency  = "concurrency"
	KindTrap         = "trap"
	KindExit         = "exit"
	KindBadResponse  = "bad_response"
	KindUnavailable  = "unavailable"
)

// Error is a request that the function could not serve. Status is the HTTP
// status the gateway answers with.
type Error struct {
	Kind   string
	Status int
	Msg    string
	Err    error
	// CPU is the CPU time the guest used before it failed.
	CPU time.Duration
}

// withCPU records the guest's CPU time on a request's error.
func withCPU(err error, cpu time.Duration) error {
	var e *Error
	if errors.As(err, &e) {
		e.CPU = cpu
	}
	return err
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Kind, e.Msg, e.Err)
	}
	return e.Kind + ": " + e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// IsLimit reports whether the failure is a request exceeding a configured limit,
// as opposed to a guest fault.
func (e *Error) IsLimit() bool {
	switch e.Kind {
	case KindCPUTime, KindWallTime, KindMemory, KindRequestBody, KindResponseBody, KindConcurrency:
		return true
	}
	return false
}

func limitError(kind string, status int, format string, args ...any) *Error {
	return &Error{Kind: kind, Status: status, Msg: fmt.Sprintf(format, args...)}
}

// AsError returns err as an *Error, wrapping unknown errors as internal faults.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Kind: "internal", Status: http.StatusInternalServerError, Msg: "internal error", Err: err}
}

// Response is how a failed request is answered: e's status and the JSON
// error body naming the kind (and the limit, for a limit) and the request.
// The gateway answers HTTP clients with it, and a function invoking a
// central function that failed receives it.
func (e *Error) Response(requestID string) *Response {
	body := jsonapi.ErrorBody{Error: e.Msg, Kind: e.Kind, RequestID: requestID}
	if e.IsLimit() {
		body.Limit = e.Kind
	}
	status := e.Status
	if status < 100 || status > 999 {
		status = http.StatusInternalServerError
	}
	return &Response{Status: status, Header: http.Header{"Content-Type": {"application/json"}}, Body: body.Encode()}
}
