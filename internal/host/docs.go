package host

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/verge-edge/verge/crdt"
	"github.com/verge-edge/verge/internal/documents"
	"github.com/verge-edge/verge/internal/obs"
	"github.com/verge-edge/verge/internal/spot"
	"github.com/verge-edge/verge/internal/wasm"
)

// Documents is what the doc_* host calls reach: the PoP's document service
// (internal/documents). Reads see the PoP's own acknowledged writes; Update
// and Delete return once the change is durable. Errors match the
// documents.Err* sentinels (see status.go).
type Documents interface {
	Get(app, coll, key string) (doc []byte, found bool, err error)
	Update(ctx context.Context, app, coll, key string, ops []crdt.Op) ([]byte, error)
	Delete(ctx context.Context, app, coll, key string) (found bool, err error)
	List(app, coll, after string, limit int) (keys []string, next string, err error)
}

var (
	errNoDocuments  = errorOf(ErrUnsupported, "documents are not available in this host (no data service configured)")
	errDocMalformed = errorOf(documents.ErrInvalid, "operations must be a JSON array of {\"op\", \"path\", \"index\", \"value\"} objects")
)

// decodeOps decodes a guest's JSON operations. The raw bytes are checked
// first: encoding/json would silently put U+FFFD in place of invalid UTF-8
// and escaped lone surrogates.
func decodeOps(raw []byte) ([]crdt.Op, error) {
	if err := crdt.CheckJSONText(raw); err != nil {
		return nil, errorOf(documents.ErrInvalid, err.Error())
	}
	if ops, ok := fastOps(raw); ok {
		return ops, nil
	}
	var ops []crdt.Op
	if err := json.Unmarshal(raw, &ops); err != nil {
		return nil, errDocMalformed
	}
	return ops, nil
}

func documentsCapability(d Documents, f *Follower) wasm.Capability {
	h := &docCalls{docs: d, follow: f}
	return wasm.Capability{Name: "documents", Functions: []wasm.HostFunction{
		{Name: "doc_get", Params: wasm.I32s(7), Call: h.get},
		{Name: "doc_update", Params: wasm.I32s(6), Call: h.update},
		{Name: "doc_delete", Params: wasm.I32s(4), Call: h.delete},
		{Name: "doc_list", Params: wasm.I32s(8), Call: h.list},
	}}
}

type docCalls struct {
	docs   Documents
	follow *Follower
}

// args reads the (collection, key) pair every document call starts with
// and checks that documents are available. status is non-zero on failure.
func (h *docCalls) args(c *wasm.Call, a []uint64) (coll, key string, status uint32) {
	cb, ok1 := c.Bytes(uint32(a[0]), uint32(a[1]))
	kb, ok2 := c.Bytes(uint32(a[2]), uint32(a[3]))
	if !ok1 || !ok2 {
		return "", "", wasm.StatusMemory
	}
	if h.docs == nil {
		return "", "", fail(c, errNoDocuments)
	}
	return string(cb), string(kb), wasm.StatusOK
}

// doc_get(coll, coll_len, key, key_len, buf, cap, len_out): the document's JSON.
func (h *docCalls) get(ctx context.Context, c *wasm.Call, a []uint64) uint32 {
	coll, key, st := h.args(c, a)
	if st != wasm.StatusOK {
		return st
	}
	if err := h.follow.fetch(ctx, c.App(), coll, key); err != nil {
		return fail(c, err)
	}
	doc, found, err := h.docs.Get(c.App(), coll, key)
	if err != nil {
		return fail(c, err)
	}
	if !found {
		return fail(c, documents.ErrNotFound)
	}
	return c.Out(doc, uint32(a[4]), uint32(a[5]), uint32(a[6]))
}

// doc_update(coll, coll_len, key, key_len, ops, ops_len): applies a JSON
// array of operations atomically; returns once durable.
func (h *docCalls) update(ctx context.Context, c *wasm.Call, a []uint64) uint32 {
	raw, ok := c.Bytes(uint32(a[4]), uint32(a[5]))
	if !ok {
		return wasm.StatusMemory
	}
	coll, key, st := h.args(c, a)
	if st != wasm.StatusOK {
		return st
	}
	ops, err := decodeOps(raw)
	if err != nil {
		return fail(c, err)
	}
	if err := h.follow.fetch(ctx, c.App(), coll, key); err != nil {
		return fail(c, err)
	}
	sctx, span := obs.Child(ctx, "doc_update", attribute.String("verge.collection", coll))
	wasm.Blocking(sctx, func(ctx context.Context) { _, err = h.docs.Update(ctx, c.App(), coll, key, ops) })
	endSpan(span, err)
	if err != nil {
		return fail(c, err)
	}
	return wasm.StatusOK
}

// endSpan ends a host call's span, marking it failed with err.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// doc_delete(coll, coll_len, key, key_len): durable; NOT_FOUND if absent.
func (h *docCalls) delete(ctx context.Context, c *wasm.Call, a []uint64) uint32 {
	coll, key, st := h.args(c, a)
	if st != wasm.StatusOK {
		return st
	}
	if err := h.follow.fetch(ctx, c.App(), coll, key); err != nil {
		return fail(c, err)
	}
	var found bool
	var err error
	sctx, span := obs.Child(ctx, "doc_delete", attribute.String("verge.collection", coll))
	wasm.Blocking(sctx, func(ctx context.Context) { found, err = h.docs.Delete(ctx, c.App(), coll, key) })
	endSpan(span, err)
	if err != nil {
		return fail(c, err)
	}
	if !found {
		return fail(c, documents.ErrNotFound)
	}
	return wasm.StatusOK
}

// doc_list(coll, coll_len, after, after_len, limit, buf, cap, len_out): keys
// after `after`, encoded as u32 count, that many strings, then the string to
// pass as `after` for the next page ("" at the end).
func (h *docCalls) list(ctx context.Context, c *wasm.Call, a []uint64) uint32 {
	coll, after, st := h.args(c, a)
	if st != wasm.StatusOK {
		return st
	}
	limit := int(uint32(a[4]))
	if limit <= 0 || limit > documents.MaxListLimit {
		return c.Refuse(wasm.StatusInvalid, "limit must be between 1 and %d, got %d", documents.MaxListLimit, limit)
	}
	keys, next, err := h.docs.List(c.App(), coll, after, limit)
	if err != nil {
		return fail(c, err)
	}
	out := binary.LittleEndian.AppendUint32(nil, uint32(len(keys)))
	for _, k := range keys {
		out = wasm.AppendString(out, k)
	}
	out = wasm.AppendString(out, next)
	return c.Out(out, uint32(a[5]), uint32(a[6]), uint32(a[7]))
}

// ---- data that follows its user ----

// Follower pulls `local` documents that follow their user (docs/network.md).
// A client carries its home PoP, the PoP that last served it; when one of
// its requests reaches another PoP, each `local` document the function
// touches is first fetched from the home PoP (or from the centre if the
// home does not answer) and merged here. The PoP's HTTP handler marks such
// requests with WithHome.
type Follower struct {
	Self    string // this PoP
	Central string // the central PoP, which backs up every local document
	// Local reports whether app's collection coll has local scope.
	Local func(app, coll string) bool
	// Fetch pulls a document from the PoP peer into this PoP's store.
	Fetch func(ctx context.Context, peer, app, coll, key string) error
	// HomeTimeout is the part of a fetch's budget the home PoP gets: a PoP
	// that just died can hold a request until its link is declared down,
	// and the centre must still get its chance. CentralTimeout is the
	// centre's.
	HomeTimeout, CentralTimeout time.Duration
	Log                         *slog.Logger
}

type homeKey struct{}

// requestHome is one request's follow state: its client's home and the
// documents already fetched for it.
type requestHome struct {
	home    string
	mu      sync.Mutex
	fetched map[[2]string]bool
}

// WithHome marks a request whose client's home PoP is home (not this PoP):
// its local documents are fetched from there on first use.
func WithHome(ctx context.Context, home string) context.Context {
	return context.WithValue(ctx, homeKey{}, &requestHome{home: home, fetched: map[[2]string]bool{}})
}

// fetch pulls the document if the request's client has another home and
// the document is local, once per request. It waits without a guest slot.
func (f *Follower) fetch(ctx context.Context, app, coll, key string) error {
	h, _ := ctx.Value(homeKey{}).(*requestHome)
	if f == nil || h == nil || h.home == f.Self || !f.Local(app, coll) {
		return nil
	}
	h.mu.Lock()
	done := h.fetched[[2]string{coll, key}]
	h.fetched[[2]string{coll, key}] = true
	h.mu.Unlock()
	if done {
		return nil
	}
	var err error
	wasm.Blocking(ctx, func(ctx context.Context) { err = f.pull(ctx, h.home, app, coll, key) })
	return err
}

func (f *Follower) pull(ctx context.Context, home, app, coll, key string) error {
	hctx, cancel := context.WithTimeout(ctx, f.HomeTimeout)
	err := f.Fetch(hctx, home, app, coll, key)
	cancel()
	if err == nil {
		return nil
	}
	ctx, cancel = context.WithTimeout(ctx, f.CentralTimeout)
	defer cancel()
	// Unavailable, whatever the fetch's own error: the document is
	// elsewhere and nothing here changed, so the guest may retry later.
	if home == f.Central || f.Central == f.Self {
		return Errorf(spot.ErrUnavailable, "document %q of %s follows its user from PoP %s, which does not answer: %v", key, coll, home, err)
	}
	f.Log.Info("home PoP unreachable; fetching from the centre", "home", home, "coll", coll, "err", err)
	if err2 := f.Fetch(ctx, f.Central, app, coll, key); err2 != nil {
		return Errorf(spot.ErrUnavailable, "document %q of %s follows its user, but neither its home PoP %s (%v) nor the centre %s (%v) answers",
			key, coll, home, err, f.Central, err2)
	}
	return nil
}
