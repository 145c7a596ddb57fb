package wasm

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/tetratelabs/wazero/api"
)

// A Capability is a set of host functions of the "verge" module that reach
// one service of the PoP: documents, the SPOT, central functions... The
// engine serves the request itself (core functions: the request, the
// response, logging, the last error); everything else a guest can call is
// a Capability passed in Options.Capabilities. internal/host holds every
// capability the PoP offers: adding one is adding its functions there and
// registering it in one place (see ARCHITECTURE.md).
type Capability struct {
	Name      string // what it is, for errors: "documents", "spot", ...
	Functions []HostFunction
}

// HostFunction is one function of the "verge" module. Every parameter is an
// i32 or an i64 and the result is one i32 status (the Status constants).
type HostFunction struct {
	Name   string
	Params []ValueType
	// Call runs the function for the request c is serving; args are its
	// parameters. It must not keep views of guest memory past its return.
	Call func(ctx context.Context, c *Call, args []uint64) uint32
}

// ValueType is the type of a host function's parameter: I32 or I64.
type ValueType = api.ValueType

// Parameter types.
const (
	I32 = api.ValueTypeI32
	I64 = api.ValueTypeI64
)

// Params is a host function's parameter list, for readable tables.
func Params(t ...ValueType) []ValueType { return t }

// I32s is n i32 parameters.
func I32s(n int) []ValueType { return i32s(n) }

// functionTable joins the core functions and the capabilities', refusing a
// name defined twice.
func functionTable(caps []Capability) ([]HostFunction, error) {
	seen := map[string]string{}
	var out []HostFunction
	for _, c := range append([]Capability{coreFunctions}, caps...) {
		for _, f := range c.Functions {
			if other, dup := seen[f.Name]; dup {
				return nil, fmt.Errorf("host function %q is defined by both the %s and the %s capability", f.Name, other, c.Name)
			}
			seen[f.Name] = c.Name
			out = append(out, f)
		}
	}
	return out, nil
}

// ---- what a host function sees of its request ----

// App is the app whose function is running: everything a capability
// reaches is that app's own.
func (c *Call) App() string { return c.app }

// Request is the request being served.
func (c *Call) Request() *Request { return c.req }

// Value returns the request's state kept under key by a capability (nil:
// none yet); SetValue keeps it. State lives until the request ends.
func (c *Call) Value(key any) any { return c.values[key] }

// SetValue keeps v under key for the rest of the request.
func (c *Call) SetValue(key, v any) {
	if c.values == nil {
		c.values = map[any]any{}
	}
	c.values[key] = v
}

// OnEnd runs fn when the request ends (in the reverse order of the calls),
// whatever way it ends: a capability closes what the guest left open.
func (c *Call) OnEnd(fn func()) { c.ends = append(c.ends, fn) }

// BodyLimit is the function's response body limit, which also bounds what a
// function sends out through a host call.
func (c *Call) BodyLimit() int64 { return c.bodyLimit }

// Bytes returns the guest bytes [ptr, ptr+n) without copying, or ok=false
// when any of it lies outside memory. The view is valid only during the host
// call.
func (c *Call) Bytes(ptr, n uint32) ([]byte, bool) {
	if c.mem == nil {
		return nil, false
	}
	return c.mem.Read(ptr, n)
}

// Writable reports whether the guest bytes [ptr, ptr+n) lie inside memory.
// Calls with effects check their outputs before acting, so that MEMORY always
// means nothing happened.
func (c *Call) Writable(ptr, n uint32) bool {
	_, ok := c.Bytes(ptr, n)
	return ok
}

// OutBuf reports whether an output buffer (ptr, cap) and its *len_out lie
// inside memory.
func (c *Call) OutBuf(ptr, capacity, lenOut uint32) bool {
	return c.Writable(ptr, capacity) && c.Writable(lenOut, 4)
}

// PutUint32 and PutUint64 write little-endian integers to checked outputs.
func (c *Call) PutUint32(ptr, v uint32)        { c.mem.WriteUint32Le(ptr, v) }
func (c *Call) PutUint64(ptr uint32, v uint64) { c.mem.WriteUint64Le(ptr, v) }

// Out copies src to the guest buffer (ptr, cap) and its length to *lenOut.
// When the buffer is too small it writes only the required length and
// returns StatusTooSmall, so a guest can size its buffer and call again.
func (c *Call) Out(src []byte, ptr, capacity, lenOut uint32) uint32 {
	if !c.Writable(lenOut, 4) {
		return StatusMemory
	}
	if uint64(len(src)) > uint64(capacity) {
		c.PutUint32(lenOut, uint32(len(src)))
		return StatusTooSmall
	}
	if !c.Writable(ptr, capacity) {
		return StatusMemory
	}
	c.mem.Write(ptr, src)
	c.PutUint32(lenOut, uint32(len(src)))
	return StatusOK
}

// Fail records err as the request's last error, readable with last_error,
// and returns status.
func (c *Call) Fail(status uint32, err error) uint32 {
	c.lastErr = err.Error()
	return status
}

// Refuse records an explanation as the last error and returns status.
func (c *Call) Refuse(status uint32, format string, args ...any) uint32 {
	c.lastErr = fmt.Sprintf(format, args...)
	return status
}

// Blocking runs fn, a host call's wait for I/O (a durable write, a round trip
// to another PoP), without holding a guest slot: a slot stands for a P
// executing guest code, and holding it while blocked would stall every other
// guest behind one fsync. fn's context carries the request's deadline.
func Blocking(ctx context.Context, fn func(context.Context)) { blocking(ctx, fn) }

// IsContextError reports whether err is a context's end (the request's
// deadline, the client gone): the guest gets StatusUnavailable for it.
func IsContextError(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// ---- results of calls with effects ----

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

// Kept is a result kept for a retry: its status, output and numeric output.
type Kept struct {
	Status uint32
	Out    []byte
	Num    uint64
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

// Retrieve returns the kept result of this very call (name, numeric argument
// and byte arguments), if any, and forgets whatever was kept.
func (c *Call) Retrieve(name string, num uint64, args [][]byte) (Kept, bool) {
	r := c.kept
	c.kept = nil
	if r == nil || r.key != callKey(name, num, args) {
		return Kept{}, false
	}
	return Kept{Status: r.status, Out: r.out, Num: r.num}, true
}

// Deliver writes out to the guest's buffer with the output-buffer protocol
// and returns status, or TOO_SMALL after keeping the result (with num) for
// the retry of the same call (name, argNum, args). The outputs were checked
// with OutBuf.
func (c *Call) Deliver(status uint32, out []byte, num uint64, ptr, capacity, lenOut uint32, name string, argNum uint64, args [][]byte) uint32 {
	if uint64(len(out)) > uint64(capacity) {
		c.kept = &keptResult{key: callKey(name, argNum, args), status: status, out: out, num: num}
		c.PutUint32(lenOut, uint32(len(out)))
		return StatusTooSmall
	}
	c.mem.Write(ptr, out)
	c.PutUint32(lenOut, uint32(len(out)))
	return status
}
