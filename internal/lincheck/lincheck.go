// Package lincheck records histories of SPOT operations (claims, bounded
// counters, conditional document updates) made by concurrent clients and
// checks them for linearizability with porcupine, against sequential models
// partitioned by key.
//
// An operation whose outcome is unknown (sent, never answered) is recorded
// as pending: it may take effect at any point after its call, or never.
// Operations that certainly had no effect are not recorded at all.
//
// Both the engine's tests (internal/spot, through its client) and the
// network's tests (cmd/verge, through PoPs' admin APIs) drive the same
// Workload through a Target, so the checks are the same at every level.
package lincheck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/verge-edge/verge/crdt"
)

// Target is one client's view of the SPOT of one app.
type Target interface {
	Claim(ctx context.Context, ns, key, owner string) (claimed bool, current string, err error)
	Release(ctx context.Context, ns, key, owner string) (bool, error)
	Take(ctx context.Context, counter string, n int64) (ok bool, remaining int64, err error)
	Restock(ctx context.Context, counter string, n int64) (int64, error)
	Counter(ctx context.Context, counter string) (int64, error)
	// GetDoc returns a nil document at revision 0 when there is none.
	GetDoc(ctx context.Context, key string) ([]byte, uint64, error)
	UpdateDoc(ctx context.Context, key string, rev uint64, ops []crdt.Op) ([]byte, uint64, error)
}

// A Target's errors say what became of the operation.
var (
	// ErrNotApplied: the operation certainly had no effect.
	ErrNotApplied = errors.New("lincheck: not applied")
	// ErrUnknown: the operation may or may not have taken effect.
	ErrUnknown = errors.New("lincheck: outcome unknown")
)

// ConflictError is an update refused because the document is at Current.
type ConflictError struct{ Current uint64 }

func (e *ConflictError) Error() string {
	return fmt.Sprintf("lincheck: conflict: the document is at revision %d", e.Current)
}

// Kind is an operation.
type Kind int

const (
	Claim Kind = iota
	Release
	Take
	Restock
	Counter
	GetDoc
	UpdateDoc
)

// In is an operation's input.
type In struct {
	Op    Kind
	Key   string
	Owner string // claim, release; the tag an update writes
	N     int64
	Rev   uint64
}

// Out is an operation's output.
type Out struct {
	Unknown  bool
	OK       bool
	Owner    string
	N        int64
	Rev      uint64
	Conflict bool
	DocN     int64
	DocLast  string
}

// PendingReturn is the return time of an operation whose outcome is unknown.
const PendingReturn = 1 << 62

// History is the operations recorded so far.
type History struct {
	mu    sync.Mutex
	start time.Time
	Ops   []porcupine.Operation // read once the clients are done

	Unavailable atomic.Int64 // operations refused: certainly not applied
}

func NewHistory() *History { return &History{start: time.Now()} }

// Now is the time to record as an operation's call.
func (h *History) Now() int64 { return int64(time.Since(h.start)) }

func (h *History) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.Ops)
}

// Add records an operation called at call that returns now (or never, when
// out.Unknown).
func (h *History) Add(client int, in In, call int64, out Out) {
	ret := h.Now()
	if out.Unknown {
		ret = PendingReturn
	}
	h.mu.Lock()
	h.Ops = append(h.Ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
	h.mu.Unlock()
}

// Pending counts the operations whose outcome is unknown.
func (h *History) Pending() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, op := range h.Ops {
		if op.Return == PendingReturn {
			n++
		}
	}
	return n
}

// outcome sorts an error: record it (possibly as pending), drop it (it
// certainly had no effect), or fail the test.
func (h *History) outcome(t testing.TB, err error) (record, unknown bool) {
	var ce *ConflictError
	switch {
	case err == nil, errors.As(err, &ce):
		return true, false
	case errors.Is(err, ErrUnknown):
		return true, true
	case errors.Is(err, ErrNotApplied):
		h.Unavailable.Add(1)
		return false, false
	}
	t.Errorf("unexpected error: %v", err)
	return false, false
}

// Workload is a random mix of operations on a few keys.
type Workload struct {
	ClaimKeys []string
	Counters  []string
	Docs      []string
	Releases  bool // off: claim keys are claim-only, for a no-two-owners check
	Owners    int
	Stop      chan struct{} // if set, closing it ends the run early
}

func (w *Workload) stopped() bool {
	if w.Stop == nil {
		return false
	}
	select {
	case <-w.Stop:
		return true
	default:
		return false
	}
}

// step runs one random operation through x and records it.
func (w *Workload) step(t testing.TB, ctx context.Context, h *History, client int, x Target, rng *rand.Rand) {
	call := h.Now()
	switch c := rng.IntN(3); {
	case c == 0 && len(w.ClaimKeys) > 0:
		key := w.ClaimKeys[rng.IntN(len(w.ClaimKeys))]
		owner := fmt.Sprintf("o%d", rng.IntN(w.Owners))
		if w.Releases && rng.IntN(2) == 0 {
			ok, err := x.Release(ctx, "ns", key, owner)
			if rec, unk := h.outcome(t, err); rec {
				h.Add(client, In{Op: Release, Key: key, Owner: owner}, call, Out{Unknown: unk, OK: ok})
			}
			return
		}
		claimed, cur, err := x.Claim(ctx, "ns", key, owner)
		if rec, unk := h.outcome(t, err); rec {
			h.Add(client, In{Op: Claim, Key: key, Owner: owner}, call, Out{Unknown: unk, OK: claimed, Owner: cur})
		}
	case c == 1 && len(w.Counters) > 0:
		key := w.Counters[rng.IntN(len(w.Counters))]
		switch r := rng.IntN(10); {
		case r < 6:
			n := int64(1 + rng.IntN(3))
			ok, rem, err := x.Take(ctx, key, n)
			if rec, unk := h.outcome(t, err); rec {
				h.Add(client, In{Op: Take, Key: key, N: n}, call, Out{Unknown: unk, OK: ok, N: rem})
			}
		case r < 8:
			n := int64(1 + rng.IntN(4))
			rem, err := x.Restock(ctx, key, n)
			if rec, unk := h.outcome(t, err); rec {
				h.Add(client, In{Op: Restock, Key: key, N: n}, call, Out{Unknown: unk, N: rem})
			}
		default:
			rem, err := x.Counter(ctx, key)
			if err == nil {
				h.Add(client, In{Op: Counter, Key: key}, call, Out{N: rem})
			} else {
				h.outcome(t, err)
			}
		}
	case len(w.Docs) > 0:
		key := w.Docs[rng.IntN(len(w.Docs))]
		doc, rev, err := x.GetDoc(ctx, key)
		if err != nil {
			h.outcome(t, err)
			return
		}
		out := Out{Rev: rev}
		out.DocN, out.DocLast = ParseDoc(t, doc)
		h.Add(client, In{Op: GetDoc, Key: key}, call, out)
		// Update what was read; sometimes a stale revision, to conflict.
		if rng.IntN(4) == 0 && rev > 0 {
			rev--
		}
		tag := fmt.Sprintf("c%d-%d", client, rng.Uint32())
		call = h.Now()
		doc, nrev, err := x.UpdateDoc(ctx, key, rev, DocOps(tag))
		rec, unk := h.outcome(t, err)
		if !rec {
			return
		}
		out = Out{Unknown: unk}
		var ce *ConflictError
		if errors.As(err, &ce) {
			out.Conflict, out.Rev = true, ce.Current
		} else if err == nil {
			out.OK, out.Rev = true, nrev
			out.DocN, out.DocLast = ParseDoc(t, doc)
		}
		h.Add(client, In{Op: UpdateDoc, Key: key, Rev: rev, Owner: tag}, call, out)
	}
}

// DocOps is what the workload's updates do: count, and tag the last writer.
func DocOps(tag string) []crdt.Op {
	v, _ := json.Marshal(tag)
	return []crdt.Op{
		{Op: "increment", Path: "n", Value: json.RawMessage(`1`)},
		{Op: "set", Path: "last", Value: v},
	}
}

// ParseDoc reads a document DocOps wrote.
func ParseDoc(t testing.TB, doc []byte) (int64, string) {
	if doc == nil {
		return 0, ""
	}
	var d struct {
		N    int64  `json:"n"`
		Last string `json:"last"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Errorf("document %q: %v", doc, err)
	}
	return d.N, d.Last
}

// Run drives the workload from workers spread over targets until d has
// passed, maxOps operations per worker, w.Stop or ctx's end.
func (w *Workload) Run(t testing.TB, ctx context.Context, h *History, targets []Target, workers, maxOps int, d time.Duration) {
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
			x := targets[i%len(targets)]
			for n := 0; n < maxOps && time.Now().Before(deadline) && !w.stopped() && ctx.Err() == nil && !t.Failed(); n++ {
				before := h.Len()
				w.step(t, ctx, h, i, x, rng)
				if h.Len() == before {
					// Nothing recorded: the centre was unreachable. Do not spin.
					time.Sleep(5 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
}

func partitionByKey(ops []porcupine.Operation) [][]porcupine.Operation {
	m := map[string][]porcupine.Operation{}
	for _, op := range ops {
		k := op.Input.(In).Key
		m[k] = append(m[k], op)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([][]porcupine.Operation, 0, len(m))
	for _, k := range keys {
		out = append(out, m[k])
	}
	return out
}

// ClaimModel: a key has at most one owner; claiming an owned key returns
// its owner, releasing needs the owner.
var ClaimModel = porcupine.Model{
	Partition: partitionByKey,
	Init:      func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(string), input.(In), output.(Out)
		switch in.Op {
		case Claim:
			next := st
			if st == "" {
				next = in.Owner
			}
			if out.Unknown {
				return true, next
			}
			want := Out{OK: next == in.Owner, Owner: next}
			return out == want, next
		case Release:
			next := st
			if st == in.Owner {
				next = ""
			}
			if out.Unknown {
				return true, next
			}
			return out.OK == (st == in.Owner), next
		}
		return false, st
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(In), output.(Out)
		if out.Unknown {
			return fmt.Sprintf("%d(%s) → ?", in.Op, in.Owner)
		}
		return fmt.Sprintf("%d(%s) → %v %s", in.Op, in.Owner, out.OK, out.Owner)
	},
}

// CounterModel: a bounded counter that never goes below zero.
var CounterModel = porcupine.Model{
	Partition: partitionByKey,
	Init:      func() any { return int64(0) },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(int64), input.(In), output.(Out)
		switch in.Op {
		case Take:
			if st < in.N {
				return out.Unknown || (!out.OK && out.N == st), st
			}
			return out.Unknown || (out.OK && out.N == st-in.N), st - in.N
		case Restock:
			return out.Unknown || out.N == st+in.N, st + in.N
		case Counter:
			return out.N == st, st
		}
		return false, st
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(In), output.(Out)
		return fmt.Sprintf("%d(%d) → unknown=%v %v %d", in.Op, in.N, out.Unknown, out.OK, out.N)
	},
}

type docState struct {
	rev  uint64
	n    int64
	last string
}

// DocModel: an update applies only at the revision it names, and moves the
// revision by one.
var DocModel = porcupine.Model{
	Partition: partitionByKey,
	Init:      func() any { return docState{} },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(docState), input.(In), output.(Out)
		switch in.Op {
		case GetDoc:
			return out.Rev == st.rev && out.DocN == st.n && out.DocLast == st.last, st
		case UpdateDoc:
			if st.rev != in.Rev {
				return out.Unknown || (out.Conflict && out.Rev == st.rev), st
			}
			next := docState{st.rev + 1, st.n + 1, in.Owner}
			return out.Unknown || (out.OK && out.Rev == next.rev && out.DocN == next.n && out.DocLast == next.last), next
		}
		return false, st
	},
}

// Check runs porcupine on each kind of operation in h, failing t if one is
// not linearizable or the check does not finish in 20 s.
func (h *History) Check(t testing.TB) {
	t.Helper()
	groups := map[string][]porcupine.Operation{}
	for _, op := range h.Ops {
		switch op.Input.(In).Op {
		case Claim, Release:
			groups["claim"] = append(groups["claim"], op)
		case Take, Restock, Counter:
			groups["counter"] = append(groups["counter"], op)
		default:
			groups["doc"] = append(groups["doc"], op)
		}
	}
	models := map[string]porcupine.Model{"claim": ClaimModel, "counter": CounterModel, "doc": DocModel}
	for name, ops := range groups {
		pending := 0
		for _, op := range ops {
			if op.Return == PendingReturn {
				pending++
			}
		}
		res := porcupine.CheckOperationsTimeout(models[name], ops, 20*time.Second)
		t.Logf("%s: %d operations (%d pending): %s", name, len(ops), pending, res)
		if res != porcupine.Ok {
			t.Errorf("%s history is not linearizable (%s)", name, res)
		}
	}
}
