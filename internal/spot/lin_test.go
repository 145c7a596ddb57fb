package spot

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

// The histories below are checked against sequential models with
// porcupine, partitioned by key. An operation whose outcome is unknown is
// recorded as pending: it may take effect at any point after its call, or
// never (porcupine may order it after everything else).

const pendingReturn = 1 << 62

const (
	hClaim = iota
	hRelease
	hTake
	hRestock
	hCounter
	hGetDoc
	hUpdateDoc
)

type linIn struct {
	op    int
	key   string
	owner string // claim, release; the tag an update writes
	n     int64
	rev   uint64
}

type linOut struct {
	unknown  bool
	ok       bool
	owner    string
	n        int64
	rev      uint64
	conflict bool
	docN     int64
	docLast  string
}

type history struct {
	mu    sync.Mutex
	start time.Time
	ops   []porcupine.Operation

	unavailable atomic.Int64 // operations refused: certainly not applied
}

func newHistory() *history { return &history{start: time.Now()} }

func (h *history) now() int64 { return int64(time.Since(h.start)) }

func (h *history) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ops)
}

func (h *history) add(client int, in linIn, call int64, out linOut) {
	ret := h.now()
	if out.unknown {
		ret = pendingReturn
	}
	h.mu.Lock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
	h.mu.Unlock()
}

// outcome sorts an error: record it (possibly as pending), drop it (it
// certainly had no effect), or fail the test.
func (h *history) outcome(t testing.TB, err error) (record, unknown bool) {
	switch {
	case err == nil, errors.Is(err, ErrConflict):
		return true, false
	case errors.Is(err, ErrUnknownOutcome):
		return true, true
	case errors.Is(err, ErrUnavailable):
		h.unavailable.Add(1)
		return false, false
	}
	t.Errorf("unexpected error: %v", err)
	return false, false
}

type workload struct {
	app       string
	claimKeys []string
	counters  []string
	docs      []string
	releases  bool // off: claim keys are claim-only, for the no-two-owners check
	owners    int
	stop      chan struct{} // if set, closing it ends the run early
}

func (w *workload) stopped() bool {
	if w.stop == nil {
		return false
	}
	select {
	case <-w.stop:
		return true
	default:
		return false
	}
}

// step runs one random operation through e and records it.
func (w *workload) step(t testing.TB, ctx context.Context, h *history, client int, e Engine, rng *rand.Rand) {
	call := h.now()
	switch c := rng.IntN(3); {
	case c == 0 && len(w.claimKeys) > 0:
		key := w.claimKeys[rng.IntN(len(w.claimKeys))]
		owner := fmt.Sprintf("o%d", rng.IntN(w.owners))
		if w.releases && rng.IntN(2) == 0 {
			ok, err := e.Release(ctx, w.app, "ns", key, owner)
			if rec, unk := h.outcome(t, err); rec {
				h.add(client, linIn{op: hRelease, key: key, owner: owner}, call, linOut{unknown: unk, ok: ok})
			}
			return
		}
		r, err := e.Claim(ctx, w.app, "ns", key, owner)
		if rec, unk := h.outcome(t, err); rec {
			h.add(client, linIn{op: hClaim, key: key, owner: owner}, call, linOut{unknown: unk, ok: r.Claimed, owner: r.Owner})
		}
	case c == 1 && len(w.counters) > 0:
		key := w.counters[rng.IntN(len(w.counters))]
		switch r := rng.IntN(10); {
		case r < 6:
			n := int64(1 + rng.IntN(3))
			tk, err := e.Take(ctx, w.app, key, n)
			if rec, unk := h.outcome(t, err); rec {
				h.add(client, linIn{op: hTake, key: key, n: n}, call, linOut{unknown: unk, ok: tk.OK, n: tk.Remaining})
			}
		case r < 8:
			n := int64(1 + rng.IntN(4))
			rem, err := e.Restock(ctx, w.app, key, n)
			if rec, unk := h.outcome(t, err); rec {
				h.add(client, linIn{op: hRestock, key: key, n: n}, call, linOut{unknown: unk, n: rem})
			}
		default:
			rem, err := e.Counter(ctx, w.app, key)
			if err == nil {
				h.add(client, linIn{op: hCounter, key: key}, call, linOut{n: rem})
			} else {
				h.outcome(t, err)
			}
		}
	case len(w.docs) > 0:
		key := w.docs[rng.IntN(len(w.docs))]
		doc, rev, err := e.GetDoc(ctx, w.app, key)
		if err != nil {
			h.outcome(t, err)
			return
		}
		out := linOut{rev: rev}
		out.docN, out.docLast = parseDoc(t, doc)
		h.add(client, linIn{op: hGetDoc, key: key}, call, out)
		// Update what was read; sometimes a stale revision, to conflict.
		if rng.IntN(4) == 0 && rev > 0 {
			rev--
		}
		tag := fmt.Sprintf("c%d-%d", client, rng.Uint32())
		call = h.now()
		doc, nrev, err := e.UpdateDoc(ctx, w.app, key, rev, docOps(tag))
		rec, unk := h.outcome(t, err)
		if !rec {
			return
		}
		out = linOut{unknown: unk}
		var ce *ConflictError
		if errors.As(err, &ce) {
			out.conflict, out.rev = true, ce.Current
		} else if err == nil {
			out.ok, out.rev = true, nrev
			out.docN, out.docLast = parseDoc(t, doc)
		}
		h.add(client, linIn{op: hUpdateDoc, key: key, rev: rev, owner: tag}, call, out)
	}
}

func docOps(tag string) []crdt.Op {
	v, _ := json.Marshal(tag)
	return []crdt.Op{
		{Op: "increment", Path: "n", Value: json.RawMessage(`1`)},
		{Op: "set", Path: "last", Value: v},
	}
}

func parseDoc(t testing.TB, doc []byte) (int64, string) {
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

// run drives the workload from workers spread over engines until the
// deadline or maxOps operations per worker.
func (w *workload) run(t testing.TB, h *history, engines []Engine, workers, maxOps int, d time.Duration) {
	ctx := testCtx(t)
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
			e := engines[i%len(engines)]
			for n := 0; n < maxOps && time.Now().Before(deadline) && !w.stopped() && !t.Failed(); n++ {
				before := h.len()
				w.step(t, ctx, h, i, e, rng)
				if h.len() == before {
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
		k := op.Input.(linIn).key
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

var claimModel = porcupine.Model{
	Partition: partitionByKey,
	Init:      func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(string), input.(linIn), output.(linOut)
		switch in.op {
		case hClaim:
			next := st
			if st == "" {
				next = in.owner
			}
			if out.unknown {
				return true, next
			}
			want := linOut{ok: next == in.owner, owner: next}
			return out == want, next
		case hRelease:
			next := st
			if st == in.owner {
				next = ""
			}
			if out.unknown {
				return true, next
			}
			return out.ok == (st == in.owner), next
		}
		return false, st
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(linIn), output.(linOut)
		if out.unknown {
			return fmt.Sprintf("%d(%s) → ?", in.op, in.owner)
		}
		return fmt.Sprintf("%d(%s) → %v %s", in.op, in.owner, out.ok, out.owner)
	},
}

var counterModel = porcupine.Model{
	Partition: partitionByKey,
	Init:      func() any { return int64(0) },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(int64), input.(linIn), output.(linOut)
		switch in.op {
		case hTake:
			if st < in.n {
				return out.unknown || (!out.ok && out.n == st), st
			}
			return out.unknown || (out.ok && out.n == st-in.n), st - in.n
		case hRestock:
			return out.unknown || out.n == st+in.n, st + in.n
		case hCounter:
			return out.n == st, st
		}
		return false, st
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(linIn), output.(linOut)
		return fmt.Sprintf("%d(%d) → unknown=%v %v %d", in.op, in.n, out.unknown, out.ok, out.n)
	},
}

type docState struct {
	rev  uint64
	n    int64
	last string
}

var docModel = porcupine.Model{
	Partition: partitionByKey,
	Init:      func() any { return docState{} },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(docState), input.(linIn), output.(linOut)
		switch in.op {
		case hGetDoc:
			return out.rev == st.rev && out.docN == st.n && out.docLast == st.last, st
		case hUpdateDoc:
			if st.rev != in.rev {
				return out.unknown || (out.conflict && out.rev == st.rev), st
			}
			next := docState{st.rev + 1, st.n + 1, in.owner}
			return out.unknown || (out.ok && out.rev == next.rev && out.docN == next.n && out.docLast == next.last), next
		}
		return false, st
	},
}

// check runs porcupine on each kind of operation in h.
func (h *history) check(t testing.TB) {
	t.Helper()
	groups := map[string][]porcupine.Operation{}
	for _, op := range h.ops {
		switch op.Input.(linIn).op {
		case hClaim, hRelease:
			groups["claim"] = append(groups["claim"], op)
		case hTake, hRestock, hCounter:
			groups["counter"] = append(groups["counter"], op)
		default:
			groups["doc"] = append(groups["doc"], op)
		}
	}
	models := map[string]porcupine.Model{"claim": claimModel, "counter": counterModel, "doc": docModel}
	for name, ops := range groups {
		pending := 0
		for _, op := range ops {
			if op.Return == pendingReturn {
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

// TestLinearizable drives claims, stock and conditional updates from four
// edge connections (twelve workers) and a central function using the
// engine directly, through two engines serving one bucket in one queue
// group (as two central servers would), and checks the history.
func TestLinearizable(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	e1 := newEngine(t, s, Config{})
	e2 := newEngine(t, s, Config{})
	serve(t, s, e1, "spot")
	serve(t, s, e2, "spot")
	var es []Engine
	for range 4 {
		es = append(es, NewClient(connect(t, s.ClientURL()), "spot", 5*time.Second))
	}
	es = append(es, e1)
	w := &workload{
		app:       "lin",
		claimKeys: []string{"joe", "ann", "bob"},
		counters:  []string{"sku-1", "sku-2"},
		docs:      []string{"d1", "d2"},
		releases:  true,
		owners:    4,
	}
	h := newHistory()
	w.run(t, h, es, 15, 150, 8*time.Second)
	if len(h.ops) < 500 {
		t.Fatalf("only %d operations recorded", len(h.ops))
	}
	for _, op := range h.ops {
		if op.Return == pendingReturn {
			t.Fatalf("operation %+v has no outcome without any fault", op.Input)
		}
	}
	h.check(t)
	if e1.refusals.Load()+e2.refusals.Load() == 0 {
		t.Log("note: the two engines never refused each other's writes")
	}
}

// TestModelsCatchViolations feeds the models histories that are not
// linearizable: a checker that accepts everything would pass the tests
// above.
func TestModelsCatchViolations(t *testing.T) {
	t.Parallel()
	op := func(in linIn, call, ret int64, out linOut) porcupine.Operation {
		return porcupine.Operation{Input: in, Call: call, Return: ret, Output: out}
	}
	bad := map[string]struct {
		m   porcupine.Model
		ops []porcupine.Operation
	}{
		"two owners": {claimModel, []porcupine.Operation{
			op(linIn{op: hClaim, key: "k", owner: "a"}, 0, 1, linOut{ok: true, owner: "a"}),
			op(linIn{op: hClaim, key: "k", owner: "b"}, 2, 3, linOut{ok: true, owner: "b"}),
		}},
		"oversold": {counterModel, []porcupine.Operation{
			op(linIn{op: hRestock, key: "c", n: 1}, 0, 1, linOut{n: 1}),
			op(linIn{op: hTake, key: "c", n: 1}, 2, 3, linOut{ok: true, n: 0}),
			op(linIn{op: hTake, key: "c", n: 1}, 2, 3, linOut{ok: true, n: 0}),
		}},
		"lost take": {counterModel, []porcupine.Operation{
			op(linIn{op: hRestock, key: "c", n: 2}, 0, 1, linOut{n: 2}),
			op(linIn{op: hTake, key: "c", n: 1}, 2, 3, linOut{ok: true, n: 1}),
			op(linIn{op: hCounter, key: "c"}, 4, 5, linOut{n: 2}),
		}},
		"double update": {docModel, []porcupine.Operation{
			op(linIn{op: hUpdateDoc, key: "d", rev: 0, owner: "x"}, 0, 1, linOut{ok: true, rev: 1, docN: 1, docLast: "x"}),
			op(linIn{op: hUpdateDoc, key: "d", rev: 0, owner: "y"}, 2, 3, linOut{ok: true, rev: 1, docN: 1, docLast: "y"}),
		}},
	}
	for name, c := range bad {
		if porcupine.CheckOperations(c.m, c.ops) {
			t.Errorf("%s: accepted", name)
		}
	}
	// A pending take may or may not have happened.
	ok := []porcupine.Operation{
		op(linIn{op: hRestock, key: "c", n: 2}, 0, 1, linOut{n: 2}),
		op(linIn{op: hTake, key: "c", n: 1}, 2, pendingReturn, linOut{unknown: true}),
		op(linIn{op: hCounter, key: "c"}, 4, 5, linOut{n: 2}),
		op(linIn{op: hCounter, key: "c"}, 6, 7, linOut{n: 1}),
	}
	if !porcupine.CheckOperations(counterModel, ok) {
		t.Error("pending take applied late: rejected")
	}
}
