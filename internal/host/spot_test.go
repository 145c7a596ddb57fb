package host

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/crdt"
	"github.com/verge-edge/verge/internal/spot"
	"github.com/verge-edge/verge/internal/wasm"
	"github.com/verge-edge/verge/internal/wasm/wasmtest"
)

var (
	errCentreDown = kerr(spot.ErrUnavailable, "the central PoP cannot be reached (test)")
	errLostReply  = kerr(spot.ErrUnknownOutcome, "no answer from the central PoP in time (test)")
)

// fakeSpot is an in-memory single point of truth with the semantics of
// internal/spot's Engine. It counts the calls that reach it and can be taken
// down.
type fakeSpot struct {
	mu     sync.Mutex
	down   bool
	lost   bool // changes are answered with an unknown outcome
	calls  map[string]int
	claims map[string]string
	stock  map[string]int64
	docs   map[string]*crdt.Doc
	revs   map[string]uint64
	// block, when set, is waited on by Take (see TestSpotCallsLeaveTheGuestSlot).
	block chan struct{}
	// noDeadline counts calls whose context carried no deadline.
	noDeadline int
}

func newFakeSpot() *fakeSpot {
	return &fakeSpot{calls: map[string]int{}, claims: map[string]string{}, stock: map[string]int64{},
		docs: map[string]*crdt.Doc{}, revs: map[string]uint64{}}
}

func (s *fakeSpot) enter(ctx context.Context, op string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[op]++
	if _, ok := ctx.Deadline(); !ok {
		s.noDeadline++
	}
	if s.down {
		return errCentreDown
	}
	if s.lost {
		return errLostReply
	}
	return nil
}

func (s *fakeSpot) count(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

func (s *fakeSpot) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.calls {
		n += c
	}
	return n
}

func (s *fakeSpot) setDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

func (s *fakeSpot) setLost(lost bool) {
	s.mu.Lock()
	s.lost = lost
	s.mu.Unlock()
}

func (s *fakeSpot) Claim(ctx context.Context, app, ns, key, owner string) (spot.Claim, error) {
	if err := s.enter(ctx, "claim"); err != nil {
		return spot.Claim{}, err
	}
	if owner == "" || key == "" {
		return spot.Claim{}, kerr(spot.ErrInvalid, "spot: key and owner must not be empty")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := app + "\x00" + ns + "\x00" + key
	cur, ok := s.claims[k]
	if !ok {
		s.claims[k] = owner
		return spot.Claim{Claimed: true, Owner: owner}, nil
	}
	return spot.Claim{Claimed: cur == owner, Owner: cur}, nil
}

func (s *fakeSpot) Release(ctx context.Context, app, ns, key, owner string) (bool, error) {
	if err := s.enter(ctx, "release"); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := app + "\x00" + ns + "\x00" + key
	if s.claims[k] != owner {
		return false, nil
	}
	delete(s.claims, k)
	return true, nil
}

func (s *fakeSpot) Take(ctx context.Context, app, counter string, n int64) (spot.Take, error) {
	if err := s.enter(ctx, "take"); err != nil {
		return spot.Take{}, err
	}
	if s.block != nil {
		select {
		case <-s.block:
		case <-ctx.Done():
			return spot.Take{}, ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := app + "\x00" + counter
	if s.stock[k] < n {
		return spot.Take{OK: false, Remaining: s.stock[k]}, nil
	}
	s.stock[k] -= n
	return spot.Take{OK: true, Remaining: s.stock[k]}, nil
}

func (s *fakeSpot) Restock(ctx context.Context, app, counter string, n int64) (int64, error) {
	if err := s.enter(ctx, "restock"); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stock[app+"\x00"+counter] += n
	return s.stock[app+"\x00"+counter], nil
}

func (s *fakeSpot) Counter(ctx context.Context, app, counter string) (int64, error) {
	if err := s.enter(ctx, "counter"); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stock[app+"\x00"+counter], nil
}

func (s *fakeSpot) GetDoc(ctx context.Context, app, key string) ([]byte, uint64, error) {
	if err := s.enter(ctx, "getdoc"); err != nil {
		return nil, 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.docs[app+"\x00"+key]
	if !ok {
		return nil, 0, nil
	}
	b, err := d.JSON()
	return b, s.revs[app+"\x00"+key], err
}

func (s *fakeSpot) UpdateDoc(ctx context.Context, app, key string, rev uint64, ops []crdt.Op) ([]byte, uint64, error) {
	if err := s.enter(ctx, "updatedoc"); err != nil {
		return nil, 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := app + "\x00" + key
	if cur := s.revs[k]; cur != rev {
		return nil, 0, &conflictErr{fmt.Sprintf("spot: document %q is at revision %d, not %d", key, cur, rev), &spot.ConflictError{Key: key, Expected: rev, Current: cur}}
	}
	d, ok := s.docs[k]
	if !ok {
		d = crdt.NewDoc()
	}
	if _, err := d.Apply(1, 1, ops...); err != nil {
		return nil, 0, kerr(spot.ErrInvalid, "%v", err)
	}
	s.docs[k] = d
	s.revs[k]++
	b, err := d.JSON()
	return b, s.revs[k], err
}

// conflictErr is a *spot.ConflictError with the message the test expects.
type conflictErr struct {
	msg string
	err *spot.ConflictError
}

func (e *conflictErr) Error() string { return e.msg }
func (e *conflictErr) Unwrap() error { return e.err }

// fakeInvoker runs "central functions" in Go.
type fakeInvoker struct {
	mu    sync.Mutex
	calls int
	last  *wasm.Request
	app   string
}

func (v *fakeInvoker) Invoke(ctx context.Context, app, fn string, req *wasm.Request) (*wasm.Response, error) {
	v.mu.Lock()
	v.calls++
	v.last, v.app = req, app
	v.mu.Unlock()
	switch fn {
	case "echo":
		return &wasm.Response{Status: 201, Body: []byte(req.Method + " " + req.Path + " " + req.Query + " " + string(req.Body))}, nil
	case "big":
		return &wasm.Response{Body: bytes.Repeat([]byte("b"), 10000)}, nil
	case "huge":
		return &wasm.Response{Body: bytes.Repeat([]byte("h"), 1<<20)}, nil
	case "trap":
		return nil, &wasm.Error{Kind: wasm.KindTrap, Status: http.StatusInternalServerError, Msg: "the guest trapped: unreachable"}
	case "down":
		return nil, errCentreDown
	case "broken":
		return nil, fmt.Errorf("decoding the centre's answer: unexpected EOF")
	}
	return nil, kerr(ErrNoFunction, "app %q has no central function %q", app, fn)
}

func (v *fakeInvoker) count() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.calls
}

func spotEngine(t *testing.T, s spot.Engine, inv Invoker) *wasm.Engine {
	t.Helper()
	return newEngine(t, Services{Spot: s, Invoker: inv})
}

// call serves one request and returns the body of a 200 answer.
func call(t *testing.T, f *wasm.Function, method, uri, body string) string {
	t.Helper()
	path, query, _ := strings.Cut(uri, "?")
	r := get(path)
	r.Method, r.URI, r.Query, r.Body = method, uri, query, []byte(body)
	resp, err := f.Serve(context.Background(), r)
	if err != nil {
		t.Fatalf("%s: %v", uri, err)
	}
	if resp.Status != 200 {
		t.Fatalf("%s: status %d %q", uri, resp.Status, resp.Body)
	}
	return string(resp.Body)
}

func TestSpotHostCalls(t *testing.T) {
	t.Parallel()
	s := newFakeSpot()
	e := spotEngine(t, s, nil)
	mod := buildGo(t, "internal/host/testdata/gospot")
	shop := load(t, e, verge.Function{App: "shop", Module: mod, Executor: verge.ExecutorVerge})
	other := load(t, e, verge.Function{App: "other", Module: mod, Executor: verge.ExecutorVerge})

	steps := []struct {
		f          *wasm.Function
		uri, body  string
		want       string // the answer, or its prefix when it ends in "…"
		spotCalled int    // calls that must reach the centre
	}{
		// Claims: first come, idempotent for the owner, per app.
		{shop, "/claim?ns=users&key=ada&owner=s1", "", "true s1 -", 1},
		{shop, "/claim?ns=users&key=ada&owner=s1", "", "true s1 -", 1},
		{shop, "/claim?ns=users&key=ada&owner=s2", "", "false s1 -", 1},
		{other, "/claim?ns=users&key=ada&owner=s2", "", "true s2 -", 1},
		{shop, "/release?ns=users&key=ada&owner=s2", "", "false -", 1},
		{shop, "/release?ns=users&key=ada&owner=s1", "", "true -", 1},
		{shop, "/claim?ns=users&key=ada&owner=s2", "", "true s2 -", 1},
		// An owner longer than the SDK's first buffer.
		{shop, "/claim?ns=users&key=bob&owner=" + strings.Repeat("o", 300), "", "true " + strings.Repeat("o", 300) + " -", 1},
		{shop, "/claim?ns=users&key=bob&owner=x", "", "false " + strings.Repeat("o", 300) + " -", 1},
		// The host refuses, without asking the centre, what it can judge.
		{shop, "/claim?ns=users&owner=x&key=" + strings.Repeat("k", 2000), "", "false  other verge: spot_claim: invalid argument: the key is 2000 bytes, more than the maximum of 1024", 0},
		{shop, "/claim?ns=users&key=&owner=x", "", "false  other verge: spot_claim: invalid argument: spot: key and owner must not be empty", 1},
		// Stocks never go below zero.
		{shop, "/take?c=seats&n=1", "", "false 0 -", 1},
		{shop, "/restock?c=seats&n=3", "", "3 -", 1},
		{shop, "/take?c=seats&n=2", "", "true 1 -", 1},
		{shop, "/take?c=seats&n=2", "", "false 1 -", 1},
		{shop, "/stock?c=seats", "", "1 -", 1},
		{other, "/stock?c=seats", "", "0 -", 1},
		{shop, "/take?c=seats&n=0", "", "false 0 other verge: spot_take: invalid argument: the amount must be positive, got 0", 0},
		{shop, "/restock?c=seats&n=-4", "", "0 other verge: spot_restock: invalid argument: the amount must be positive, got -4", 0},
		// Central documents: created at revision 0, then compare-and-set.
		{shop, "/doc?key=cfg", "", "0  -", 1},
		{shop, "/update?key=cfg&rev=3", `[{"op":"set","path":"mode","value":"on"}]`, "0 0  notfound verge: spot_doc_update: not found: spot: document \"cfg\" is at revision 0, not 3", 1},
		{shop, "/update?key=cfg&rev=0", `[{"op":"set","path":"mode","value":"on"}]`, `1 13 {"mode":"on"} -`, 1},
		{shop, "/update?key=cfg&rev=0", `[{"op":"set","path":"mode","value":"off"}]`, "1 0  conflict verge: spot_doc_update: conflict: spot: document \"cfg\" is at revision 1, not 0", 1},
		{shop, "/update?key=cfg&rev=1", `[{"op":"increment","path":"mode","value":1}]`, "0 0  other verge: spot_doc_update: invalid argument: …", 1},
		{shop, "/update?key=cfg&rev=1", `[{"op":"set","path":"n","value":7}]`, `2 19 {"mode":"on","n":7} -`, 1},
		{shop, "/doc?key=cfg", "", `2 {"mode":"on","n":7} -`, 1},
		{other, "/doc?key=cfg", "", "0  -", 1},
	}
	for i, st := range steps {
		before := s.total()
		got := call(t, st.f, "GET", st.uri, st.body)
		if p, ok := strings.CutSuffix(st.want, "…"); ok && strings.HasPrefix(got, p) {
			got = st.want
		}
		if got != st.want {
			t.Fatalf("step %d %s:\n got %q\nwant %q", i, st.uri, got, st.want)
		}
		if n := s.total() - before; n != st.spotCalled {
			t.Fatalf("step %d %s: %d calls reached the centre, want %d", i, st.uri, n, st.spotCalled)
		}
	}

	// A document larger than the SDK's first buffer: the update is applied
	// once, though the guest had to ask twice for the result.
	big := strings.Repeat("x", 5000)
	updates := s.count("updatedoc")
	got := call(t, shop, "GET", "/update?key=cfg&rev=2", `[{"op":"set","path":"big","value":"`+big+`"}]`)
	if want := `3 5028 {"big":"` + big[:32] + ` -`; got != want {
		t.Fatalf("big update: %q, want %q", got, want)
	}
	if n := s.count("updatedoc") - updates; n != 1 {
		t.Fatalf("a big update reached the centre %d times, want once", n)
	}
	if got := call(t, shop, "GET", "/doc?key=cfg", ""); !strings.HasPrefix(got, `3 {"big":"xxx`) || len(got) != len(`3 `)+5028+len(" -") {
		t.Fatalf("reading the big document: %.40q... (%d bytes)", got, len(got))
	}

	// The centre down: every call says so, with the host's message.
	s.setDown(true)
	for _, uri := range []string{"/claim?ns=a&key=b&owner=c", "/release?ns=a&key=b&owner=c", "/take?c=seats&n=1", "/restock?c=seats&n=1", "/stock?c=seats", "/doc?key=cfg", "/update?key=cfg&rev=3"} {
		got := call(t, shop, "GET", uri, `[{"op":"set","path":"a","value":1}]`)
		if !strings.Contains(got, "unavailable verge: spot_") || !strings.HasSuffix(got, "unavailable: the central PoP cannot be reached (test)") {
			t.Fatalf("%s with the centre down: %q", uri, got)
		}
	}
	// A reply lost after the change was sent: the guest learns that the
	// outcome is unknown, not merely that the centre is unavailable.
	s.setDown(false)
	s.setLost(true)
	if got := call(t, shop, "GET", "/take?c=seats&n=1", ""); !strings.Contains(got, "unknown verge: spot_take: outcome unknown: no answer from the central PoP in time (test)") {
		t.Fatalf("take with a lost reply: %q", got)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.noDeadline != 0 {
		t.Fatalf("%d centre calls ran without the request's deadline", s.noDeadline)
	}
}

func TestSpotUnsupported(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Services{})
	f := load(t, e, verge.Function{App: "shop", Module: buildGo(t, "internal/host/testdata/gospot"), Executor: verge.ExecutorVerge})
	for uri, name := range map[string]string{"/take?c=a&n=1": "spot_take", "/doc?key=a": "spot_doc_get", "/invoke?fn=echo&method=GET&path=/": "invoke"} {
		got := call(t, f, "GET", uri, "")
		if !strings.Contains(got, "verge: "+name+": not supported by this host: ") || !strings.Contains(got, "no central PoP configured") {
			t.Fatalf("%s without a centre: %q", uri, got)
		}
	}
}

func TestInvokeHostCall(t *testing.T) {
	t.Parallel()
	inv := &fakeInvoker{}
	e := spotEngine(t, nil, inv)
	f := load(t, e, verge.Function{App: "shop", Module: buildGo(t, "internal/host/testdata/gospot"), Executor: verge.ExecutorVerge,
		Limits: verge.Limits{ResponseBody: 64 << 10}})

	steps := []struct {
		uri, body string
		want      string
		invoked   int
	}{
		{"/invoke?fn=echo&method=POST&path=/orders%3Fid%3D7", "payload", "201 25 POST /orders id=7 payload -", 1},
		{"/invoke?fn=big&method=GET&path=/", "", "200 10000 " + strings.Repeat("b", 80) + " -", 1}, // asked twice, run once
		{"/invoke?fn=trap&method=GET&path=/", "", `500 74 {"error":"the guest trapped: unreachable","kind":"trap","request_id":"t"}` + "\n -", 1},
		{"/invoke?fn=nope&method=GET&path=/", "", `0 0  notfound verge: invoke: not found: app "shop" has no central function "nope"`, 1},
		{"/invoke?fn=down&method=GET&path=/", "", "0 0  unavailable verge: invoke: unavailable: the central PoP cannot be reached (test)", 1},
		{"/invoke?fn=broken&method=GET&path=/", "", "0 0  other verge: invoke: host internal error: decoding the centre's answer: unexpected EOF", 1},
		{"/invoke?fn=huge&method=GET&path=/", "", `0 0  limit verge: invoke: limit reached: the response of central function "huge" is 1048576 bytes, over this function's limit of 65536 bytes (limits.response_body)`, 1},
		{"/invoke?fn=echo&method=GET&path=/", strings.Repeat("r", 70000), "0 0  limit verge: invoke: limit reached: the request body of 70000 bytes exceeds this function's limit of 65536 bytes (limits.response_body)", 0},
		{"/invoke?fn=echo&method=G%20T&path=/", "", `0 0  other verge: invoke: invalid argument: invalid method "G T": an HTTP token of 1 to 32 bytes, e.g. GET or POST`, 0},
		{"/invoke?fn=echo&method=GET&path=orders", "", `0 0  other verge: invoke: invalid argument: invalid path "orders": it must start with / and be at most 8192 bytes`, 0},
		{"/invoke?fn=echo&method=GET&path=/a%0Ab", "", `0 0  other verge: invoke: invalid argument: invalid path "/a\nb": it holds a space or a control character; escape it`, 0},
		{"/invoke?fn=&method=GET&path=/", "", `0 0  other verge: invoke: invalid argument: the function name must be 1 to 1024 bytes, got 0`, 0},
	}
	for i, st := range steps {
		before := inv.count()
		if got := call(t, f, "POST", st.uri, st.body); got != st.want {
			t.Fatalf("step %d %s:\n got %q\nwant %q", i, st.uri, got, st.want)
		}
		if n := inv.count() - before; n != st.invoked {
			t.Fatalf("step %d %s: invoked %d times, want %d", i, st.uri, n, st.invoked)
		}
	}
	inv.mu.Lock()
	if inv.app != "shop" || inv.last.ID != "t" || inv.last.Method != "GET" || inv.last.URI != "/" || inv.last.Header.Get(InvokeDepthHeader) != "1" {
		t.Fatalf("the invoker saw app %q and request %+v", inv.app, inv.last)
	}
	inv.mu.Unlock()

	// A chain of invocations counts on through the called function's
	// request, up to MaxInvokeDepth; a client's own header cannot lengthen it.
	for _, c := range []struct {
		header, want string
		invoked      int
	}{
		{"", "201 7 GET /   -", 1},
		{"-5", "201 7 GET /   -", 1},
		{strconv.Itoa(MaxInvokeDepth - 1), "201 7 GET /   -", 1},
		{strconv.Itoa(MaxInvokeDepth), "0 0  limit verge: invoke: limit reached: central functions invoked each other 8 deep, the most allowed (does a function invoke itself?)", 0},
	} {
		r := get("/invoke")
		r.Method, r.URI, r.Query = "POST", "/invoke?fn=echo&method=GET&path=/", "fn=echo&method=GET&path=/"
		if c.header != "" {
			r.Header.Set(InvokeDepthHeader, c.header)
		}
		before := inv.count()
		resp, err := f.Serve(context.Background(), r)
		if err != nil || string(resp.Body) != c.want || inv.count()-before != c.invoked {
			t.Fatalf("depth header %q: %v %q (invoked %d), want %q", c.header, err, resp.Body, inv.count()-before, c.want)
		}
		if c.invoked == 1 {
			inv.mu.Lock()
			got := inv.last.Header.Get(InvokeDepthHeader)
			inv.mu.Unlock()
			d, _ := strconv.Atoi(c.header)
			if want := strconv.Itoa(max(d, 0) + 1); got != want {
				t.Fatalf("depth header %q: the central function saw depth %q, want %q", c.header, got, want)
			}
		}
	}
}

func TestSpotWildPointers(t *testing.T) {
	t.Parallel()
	s, inv := newFakeSpot(), &fakeInvoker{}
	e := spotEngine(t, s, inv)
	f := load(t, e, verge.Function{App: "shop", Module: fixture("wild_spot.wasm"), Executor: verge.ExecutorVerge})
	want := []byte{
		wasm.StatusMemory, wasm.StatusMemory, wasm.StatusMemory, // spot_claim
		wasm.StatusMemory,                                         // spot_release
		wasm.StatusMemory, wasm.StatusInvalid, wasm.StatusInvalid, // spot_take
		wasm.StatusMemory, wasm.StatusMemory, // spot_restock, spot_counter
		wasm.StatusMemory, wasm.StatusMemory, wasm.StatusMemory, // spot_doc_get, spot_doc_update x2
		wasm.StatusMemory, wasm.StatusMemory, wasm.StatusMemory, wasm.StatusInvalid, // invoke
		wasm.StatusInvalid, // spot_doc_update of operations that are not JSON
		// too small: the claim is made once, then kept for the retry
		wasm.StatusTooSmall, 5, wasm.StatusOK,
		wasm.StatusTooSmall, 5, wasm.StatusConflict, 'a',
		wasm.StatusOK,
		wasm.StatusConflict, 0, wasm.StatusOK, 5, wasm.StatusOK, 3, wasm.StatusOK, 3, // take, restock, take, counter
		wasm.StatusNotFound,                // spot_doc_get
		wasm.StatusNotFound, wasm.StatusOK, // release by bob, by alice
		wasm.StatusOK, 0, // the stock emptied again
	}
	for i := 1; i <= 3; i++ { // same instance, again and again
		resp, err := f.Serve(context.Background(), get("/"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(resp.Body, want) {
			t.Fatalf("request %d: got\n%v, want\n%v", i, resp.Body, want)
		}
		wantCalls := map[string]int{"claim": 3 * i, "take": 3 * i, "restock": i, "counter": i, "getdoc": i, "release": 2 * i}
		s.mu.Lock()
		for op, n := range wantCalls {
			if s.calls[op] != n {
				t.Errorf("after request %d: %d %s calls reached the centre, want %d", i, s.calls[op], op, n)
			}
		}
		if len(s.calls) != len(wantCalls) {
			t.Errorf("calls reached the centre: %v, want %v", s.calls, wantCalls)
		}
		s.mu.Unlock()
		if inv.count() != 0 {
			t.Fatalf("a wild invoke reached the invoker")
		}
	}
}

// A guest waiting for the centre must not hold a guest slot: with every
// slot's guest waiting in spot_take, another function still runs.
func TestSpotCallsLeaveTheGuestSlot(t *testing.T) {
	t.Parallel()
	s := newFakeSpot()
	s.block = make(chan struct{})
	release := sync.OnceFunc(func() { close(s.block) })
	t.Cleanup(release) // a failed test must not leave guests waiting
	e := spotEngine(t, s, nil)
	slots := wasm.GuestSlots()
	waiting := load(t, e, verge.Function{App: "shop", Module: buildGo(t, "internal/host/testdata/gospot"), Executor: verge.ExecutorVerge,
		Limits: verge.Limits{MaxInstances: slots, WallTime: 20 * time.Second}})
	other := load(t, e, verge.Function{Module: wasmtest.Fixture(t, "hello.wasm"), Executor: verge.ExecutorVerge})
	done := make(chan string, slots)
	for i := 0; i < slots; i++ {
		go func() {
			r := get("/take")
			r.URI, r.Query = "/take?c=x&n=1", "c=x&n=1"
			resp, err := waiting.Serve(context.Background(), r)
			if err != nil {
				done <- err.Error()
				return
			}
			done <- string(resp.Body)
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.count("take") < slots {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d guests reached spot_take", s.count("take"), slots)
		}
		time.Sleep(time.Millisecond)
	}
	serveOK(t, other, "/", "hi")
	release()
	for i := 0; i < slots; i++ {
		if got := <-done; got != "false 0 -" {
			t.Fatalf("a waiting guest got %q", got)
		}
	}
}

// BenchmarkSpotCallGo is a request making one spot call (spot_take) to an
// in-memory centre: the host's own cost of a central call, the guest slot
// released and taken again around it (blocking), without the network.
// Compare with BenchmarkWarmHelloGo.
func BenchmarkSpotCallGo(b *testing.B) {
	s := newFakeSpot()
	e := newEngine(b, Services{Spot: s})
	f := load(b, e, verge.Function{App: "shop", Module: buildGo(b, "internal/host/testdata/gospot"), Executor: verge.ExecutorVerge})
	req := get("/take")
	req.URI, req.Query = "/take?c=x&n=1", "c=x&n=1"
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if resp, err := f.Serve(ctx, req); err != nil || string(resp.Body) != "false 0 -" {
			b.Fatal(err, string(resp.Body))
		}
	}
}
