package wasm

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strconv"

	"github.com/tetratelabs/wazero/api"

	"github.com/verge-edge/verge/crdt"
)

// Documents is what the document host calls reach: the PoP's data service.
// Reads see the PoP's own acknowledged writes; Update and Delete return once
// the change is durable.
type Documents interface {
	Get(app, coll, key string) (doc []byte, found bool, err error)
	Update(ctx context.Context, app, coll, key string, ops []crdt.Op) ([]byte, error)
	Delete(ctx context.Context, app, coll, key string) (found bool, err error)
	List(app, coll, after string, limit int) (keys []string, next string, err error)
}

// DocError lets a Documents implementation say which ABI status an error
// maps to; other errors are StatusInternal.
// Follower is implemented by Documents whose documents may have to be
// fetched from another PoP before this request can use them (a `local`
// document that followed its user here). Follow must be cheap and do no
// I/O: it returns nil when nothing is to be fetched, else the function that
// fetches, which the runtime runs outside the guest's CPU slot.
type Follower interface {
	Follow(ctx context.Context, app, coll, key string) func(context.Context) error
}

// follow runs the Follower's fetch, if any, for a document call.
func follow(ctx context.Context, cs *callState, coll, key string) error {
	f, ok := cs.docs.(Follower)
	if !ok {
		return nil
	}
	fetch := f.Follow(ctx, cs.app, coll, key)
	if fetch == nil {
		return nil
	}
	var err error
	blocking(ctx, func(ctx context.Context) { err = fetch(ctx) })
	return err
}

type DocError interface {
	error
	Status() uint32 // one of the Status constants
}

// Document errors with their ABI status.
var (
	ErrDocNotFound  = docErr{StatusNotFound, "document not found"}
	errNoDocuments  = docErr{StatusUnsupported, "documents are not available in this host (no data service configured)"}
	errDocMalformed = docErr{StatusInvalid, "operations must be a JSON array of {\"op\", \"path\", \"index\", \"value\"} objects"}
)

type docErr struct {
	status uint32
	msg    string
}

func (e docErr) Error() string  { return e.msg }
func (e docErr) Status() uint32 { return e.status }

// LimitDoc wraps a refusal for size (a document too large): StatusLimit.
func LimitDoc(err error) error { return docErr{StatusLimit, err.Error()} }

// InvalidDoc wraps a caller mistake (bad op, bad path, unknown collection)
// so that the guest gets StatusInvalid and the message.
func InvalidDoc(err error) error { return docErr{StatusInvalid, err.Error()} }

// fail records err as the request's last error, readable with last_error,
// and returns its status.
func (c *callState) fail(err error) uint32 {
	c.lastErr = err.Error()
	var de DocError
	if errors.As(err, &de) {
		return de.Status()
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return StatusUnavailable
	}
	return StatusInternal
}

// strArg reads a guest string argument.
func strArg(m api.Memory, ptr, n uint64) (string, bool) {
	b, ok := read(m, uint32(ptr), uint32(n))
	return string(b), ok
}

// docCall reads the (collection, key) pair every document call starts with
// and checks that documents are available. status is non-zero on failure.
func docCall(m api.Memory, cs *callState, a []uint64) (coll, key string, status uint32) {
	coll, ok1 := strArg(m, a[0], a[1])
	key, ok2 := strArg(m, a[2], a[3])
	if !ok1 || !ok2 {
		return "", "", StatusMemory
	}
	if cs.docs == nil {
		return "", "", cs.fail(errNoDocuments)
	}
	return coll, key, StatusOK
}

// doc_get(coll, coll_len, key, key_len, buf, cap, len_out): the document's JSON.
func hostDocGet(ctx context.Context, m api.Memory, cs *callState, a []uint64) uint32 {
	coll, key, st := docCall(m, cs, a)
	if st != StatusOK {
		return st
	}
	if err := follow(ctx, cs, coll, key); err != nil {
		return cs.fail(err)
	}
	doc, found, err := cs.docs.Get(cs.app, coll, key)
	if err != nil {
		return cs.fail(err)
	}
	if !found {
		return cs.fail(ErrDocNotFound)
	}
	return writeOut(m, doc, uint32(a[4]), uint32(a[5]), uint32(a[6]))
}

// doc_update(coll, coll_len, key, key_len, ops, ops_len): applies a JSON
// array of operations atomically; returns once durable.
func hostDocUpdate(ctx context.Context, m api.Memory, cs *callState, a []uint64) uint32 {
	raw, ok := read(m, uint32(a[4]), uint32(a[5]))
	if !ok {
		return StatusMemory
	}
	coll, key, st := docCall(m, cs, a)
	if st != StatusOK {
		return st
	}
	if err := crdt.CheckJSONText(raw); err != nil { // before encoding/json puts U+FFFD in its place
		return cs.fail(InvalidDoc(err))
	}
	var ops []crdt.Op
	if err := json.Unmarshal(raw, &ops); err != nil {
		return cs.fail(errDocMalformed)
	}
	if err := follow(ctx, cs, coll, key); err != nil {
		return cs.fail(err)
	}
	var err error
	blocking(ctx, func(ctx context.Context) { _, err = cs.docs.Update(ctx, cs.app, coll, key, ops) })
	if err != nil {
		return cs.fail(err)
	}
	return StatusOK
}

// doc_delete(coll, coll_len, key, key_len): durable; NOT_FOUND if absent.
func hostDocDelete(ctx context.Context, m api.Memory, cs *callState, a []uint64) uint32 {
	coll, key, st := docCall(m, cs, a)
	if st != StatusOK {
		return st
	}
	if err := follow(ctx, cs, coll, key); err != nil {
		return cs.fail(err)
	}
	var found bool
	var err error
	blocking(ctx, func(ctx context.Context) { found, err = cs.docs.Delete(ctx, cs.app, coll, key) })
	if err != nil {
		return cs.fail(err)
	}
	if !found {
		return cs.fail(ErrDocNotFound)
	}
	return StatusOK
}

// doc_list(coll, coll_len, after, after_len, limit, buf, cap, len_out): keys
// after `after`, encoded as u32 count, that many strings, then the string to
// pass as `after` for the next page ("" at the end).
func hostDocList(ctx context.Context, m api.Memory, cs *callState, a []uint64) uint32 {
	coll, after, st := docCall(m, cs, a)
	if st != StatusOK {
		return st
	}
	limit := int(uint32(a[4]))
	if limit <= 0 || limit > 1000 {
		cs.lastErr = "limit must be between 1 and 1000, got " + strconv.Itoa(limit)
		return StatusInvalid
	}
	keys, next, err := cs.docs.List(cs.app, coll, after, limit)
	if err != nil {
		return cs.fail(err)
	}
	out := binary.LittleEndian.AppendUint32(nil, uint32(len(keys)))
	for _, k := range keys {
		out = appendString(out, k)
	}
	out = appendString(out, next)
	return writeOut(m, out, uint32(a[5]), uint32(a[6]), uint32(a[7]))
}

// last_error(buf, cap, len_out): the message of the last failed call.
func hostLastError(_ context.Context, m api.Memory, cs *callState, a []uint64) uint32 {
	return writeOut(m, []byte(cs.lastErr), uint32(a[0]), uint32(a[1]), uint32(a[2]))
}
