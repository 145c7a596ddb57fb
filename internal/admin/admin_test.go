package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/documents"
	"github.com/verge-edge/verge/internal/spot"
	"github.com/verge-edge/verge/internal/store"
)

func newServer(t testing.TB, opts Options, noSync bool) *httptest.Server {
	t.Helper()
	const maxDoc = 64 << 10
	st, err := store.Open(t.TempDir(), store.Options{Origin: "test", NoSync: noSync, MaxValueBytes: documents.StoreValueBytes(maxDoc)})
	if err != nil {
		t.Fatal(err)
	}
	svc := documents.New(st, documents.Options{Replica: 1, MaxDocBytes: maxDoc})
	for _, app := range []string{"a", "b"} {
		svc.SetApp(&verge.Manifest{Name: app, Collections: []verge.Collection{
			{Name: "carts", Scope: verge.Scope{Kind: "local"}},
			{Name: "stats", Scope: verge.Scope{Kind: "global"}},
		}})
	}
	if opts.MaxBodyBytes == 0 {
		opts.MaxBodyBytes = 128 << 10
	}
	srv := httptest.NewServer(NewHandler(svc, opts))
	t.Cleanup(func() {
		srv.Close()
		st.Close()
	})
	return srv
}

type result struct {
	status int
	body   string
	header http.Header
}

func do(t *testing.T, srv *httptest.Server, method, path, body string, hdr ...string) result {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return result{resp.StatusCode, strings.TrimSpace(string(b)), resp.Header}
}

// wantError checks an error answer: status, JSON shape, kind and that the
// message mentions each of the given strings.
func wantError(t *testing.T, r result, status int, kind string, mentions ...string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	var e struct{ Error, Kind string }
	if err := json.Unmarshal([]byte(r.body), &e); err != nil {
		t.Fatalf("error body is not JSON: %q", r.body)
	}
	if e.Kind != kind || e.Error == "" {
		t.Fatalf("error %+v, want kind %q", e, kind)
	}
	for _, m := range mentions {
		if !strings.Contains(e.Error, m) {
			t.Fatalf("error %q does not mention %q", e.Error, m)
		}
	}
}

const doc = "/v1/apps/a/collections/carts/docs/"

func TestDocumentLifecycle(t *testing.T) {
	t.Parallel()
	srv := newServer(t, Options{}, true)

	wantError(t, do(t, srv, "GET", doc+"u1", ""), 404, "not_found", `"u1"`)
	r := do(t, srv, "PUT", doc+"u1", `{"items": [], "owner": "ada"}`)
	if r.status != 200 || r.body != `{"items":[],"owner":"ada"}` || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("PUT: %d %s %v", r.status, r.body, r.header)
	}
	r = do(t, srv, "POST", doc+"u1", `{"ops": [{"op": "append", "path": "items", "value": 42},
		{"op": "insert", "path": "items", "index": 0, "value": 7},
		{"op": "increment", "path": "views", "value": 1}]}`)
	if r.status != 200 || r.body != `{"items":[7,42],"owner":"ada","views":1}` {
		t.Fatalf("POST: %d %s", r.status, r.body)
	}
	if r = do(t, srv, "GET", doc+"u1", ""); r.status != 200 || r.body != `{"items":[7,42],"owner":"ada","views":1}` {
		t.Fatalf("GET: %d %s", r.status, r.body)
	}
	if r = do(t, srv, "HEAD", doc+"u1", ""); r.status != 200 || r.body != "" {
		t.Fatalf("HEAD: %d %q", r.status, r.body)
	}
	if r = do(t, srv, "DELETE", doc+"u1", ""); r.status != 204 {
		t.Fatalf("DELETE: %d %s", r.status, r.body)
	}
	wantError(t, do(t, srv, "GET", doc+"u1", ""), 404, "not_found")
	wantError(t, do(t, srv, "DELETE", doc+"u1", ""), 404, "not_found")
}

func TestKeysAreURLSegments(t *testing.T) {
	t.Parallel()
	srv := newServer(t, Options{}, true)
	for _, key := range []string{"a/b", "with space", "ünï", "..", "?x=1", "%2F"} {
		p := doc + url.PathEscape(key)
		if key == ".." {
			p = doc + "%2E%2E"
		}
		if r := do(t, srv, "PUT", p, fmt.Sprintf(`{"k":%q}`, key)); r.status != 200 {
			t.Fatalf("PUT %q: %d %s", key, r.status, r.body)
		}
		if r := do(t, srv, "GET", p, ""); r.status != 200 || r.body != fmt.Sprintf(`{"k":%q}`, key) {
			t.Fatalf("GET %q: %d %s", key, r.status, r.body)
		}
	}
	r := do(t, srv, "GET", "/v1/apps/a/collections/carts/docs?limit=100", "")
	var l struct {
		Keys []string
		Next string
	}
	if err := json.Unmarshal([]byte(r.body), &l); err != nil || len(l.Keys) != 6 {
		t.Fatalf("list: %s (%v)", r.body, err)
	}
}

func TestListPagination(t *testing.T) {
	t.Parallel()
	srv := newServer(t, Options{}, true)
	const list = "/v1/apps/a/collections/carts/docs"
	if r := do(t, srv, "GET", list, ""); r.status != 200 || r.body != `{"keys":[],"next":""}` {
		t.Fatalf("empty list: %d %s", r.status, r.body)
	}
	for i := range 12 {
		if r := do(t, srv, "PUT", fmt.Sprintf("%sk%02d", doc, i), `{"n":1}`); r.status != 200 {
			t.Fatal(r.body)
		}
	}
	// b's documents never show up in a's list.
	if r := do(t, srv, "PUT", "/v1/apps/b/collections/carts/docs/k05x", `{"n":1}`); r.status != 200 {
		t.Fatal(r.body)
	}
	var all []string
	after := ""
	for range 12 {
		r := do(t, srv, "GET", list+"?limit=5&after="+url.QueryEscape(after), "")
		var l struct {
			Keys []string
			Next string
		}
		if err := json.Unmarshal([]byte(r.body), &l); err != nil || r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		all = append(all, l.Keys...)
		if l.Next == "" {
			break
		}
		after = l.Next
	}
	if len(all) != 12 || all[0] != "k00" || all[11] != "k11" {
		t.Fatalf("paged keys: %q", all)
	}
	for _, bad := range []string{"0", "-1", "x", "1e3"} {
		wantError(t, do(t, srv, "GET", list+"?limit="+bad, ""), 400, "invalid", "limit")
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	srv := newServer(t, Options{}, true)
	if r := do(t, srv, "PUT", doc+"k", `{"items":[1]}`); r.status != 200 {
		t.Fatal(r.body)
	}
	// A bad op or path: 400 naming it; nothing changes.
	wantError(t, do(t, srv, "POST", doc+"k", `{"ops":[{"op":"increment","path":"n","value":1},{"op":"append","path":"nope","value":1}]}`),
		400, "invalid", "op 1", `"nope"`)
	wantError(t, do(t, srv, "POST", doc+"k", `{"ops":[{"op":"set","path":"items.5","value":1}]}`), 400, "invalid", "op 0", `"items.5"`)
	wantError(t, do(t, srv, "POST", doc+"k", `{"ops":[{"op":"explode","path":"items"}]}`), 400, "invalid", "explode")
	wantError(t, do(t, srv, "POST", doc+"k", `{"ops":[]}`), 400, "invalid", "no operations")
	wantError(t, do(t, srv, "POST", doc+"k", `{"opz":[]}`), 400, "invalid", "opz")
	wantError(t, do(t, srv, "POST", doc+"k", `{"ops":[{"op":"set","path":"x","value":1}]} {}`), 400, "invalid")
	wantError(t, do(t, srv, "POST", doc+"k", `not json`), 400, "invalid")
	if r := do(t, srv, "GET", doc+"k", ""); r.body != `{"items":[1]}` {
		t.Fatalf("rejected updates changed the document: %s", r.body)
	}
	wantError(t, do(t, srv, "PUT", doc+"k", `[1,2]`), 400, "invalid", "object")
	wantError(t, do(t, srv, "PUT", doc+"k", `{"a":`), 400, "invalid", "JSON")

	// Unknown app, collection: 404 naming them.
	wantError(t, do(t, srv, "GET", "/v1/apps/zz/collections/carts/docs/k", ""), 404, "not_found", `"zz"`)
	wantError(t, do(t, srv, "PUT", "/v1/apps/a/collections/orders/docs/k", `{}`), 404, "not_found", `"orders"`)
	wantError(t, do(t, srv, "GET", "/v1/apps/a/collections/orders/docs", ""), 404, "not_found", `"orders"`)
	wantError(t, do(t, srv, "GET", "/v1/nothing", ""), 404, "not_found")

	// Wrong methods: 405 with Allow.
	r := do(t, srv, "PATCH", doc+"k", `{}`)
	wantError(t, r, 405, "method_not_allowed", "PATCH")
	if !strings.Contains(r.header.Get("Allow"), "POST") {
		t.Fatalf("Allow: %q", r.header.Get("Allow"))
	}
	wantError(t, do(t, srv, "POST", "/v1/apps/a/collections/carts/docs", `{}`), 405, "method_not_allowed")

	// Oversized: the body, and the document it would make.
	big := fmt.Sprintf(`{"blob":%q}`, strings.Repeat("x", 200<<10))
	wantError(t, do(t, srv, "PUT", doc+"k", big), 413, "too_large", "limit")
	mid := fmt.Sprintf(`{"blob":%q}`, strings.Repeat("x", 100<<10))
	wantError(t, do(t, srv, "PUT", doc+"k", mid), 413, "too_large", "split")
}

func TestAppIsolationThroughTheAPI(t *testing.T) {
	t.Parallel()
	srv := newServer(t, Options{}, true)
	if r := do(t, srv, "PUT", "/v1/apps/b/collections/carts/docs/secret", `{"card":"4242"}`); r.status != 200 {
		t.Fatal(r.body)
	}
	for _, p := range []string{
		"/v1/apps/a/collections/carts/docs/secret",
		"/v1/apps/a%2Fb/collections/carts/docs/secret",
		"/v1/apps/a/collections/carts%2F..%2F..%2Fb%2Fcarts/docs/secret",
		"/v1/apps/a/collections/carts/docs/..%2F..%2F..%2Fb%2Fcollections%2Fcarts%2Fdocs%2Fsecret",
		"/v1/apps/a%00/collections/carts/docs/secret",
		"/v1/apps/B/collections/carts/docs/secret",
	} {
		r := do(t, srv, "GET", p, "")
		if r.status == 200 || strings.Contains(r.body, "4242") {
			t.Fatalf("GET %s reached b's document: %d %s", p, r.status, r.body)
		}
	}
	r := do(t, srv, "GET", "/v1/apps/a/collections/carts/docs?limit=1000&after=", "")
	if r.body != `{"keys":[],"next":""}` {
		t.Fatalf("a's list shows %s", r.body)
	}
}

func TestToken(t *testing.T) {
	t.Parallel()
	srv := newServer(t, Options{Token: "s3cret"}, true)
	wantError(t, do(t, srv, "GET", doc+"k", ""), 401, "unauthorized")
	wantError(t, do(t, srv, "GET", doc+"k", "", "Authorization", "Bearer wrong"), 401, "unauthorized")
	wantError(t, do(t, srv, "PUT", doc+"k", `{}`, "Authorization", "s3cret"), 401, "unauthorized")
	if r := do(t, srv, "PUT", doc+"k", `{}`, "Authorization", "Bearer s3cret"); r.status != 200 {
		t.Fatalf("with the token: %d %s", r.status, r.body)
	}
}

func TestCheckListen(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		addr, token string
		ok          bool
	}{
		{"127.0.0.1:8081", "", true},
		{"[::1]:8081", "", true},
		{"localhost:8081", "", true},
		{"127.0.0.2:0", "", true},
		{"0.0.0.0:8081", "", false},
		{":8081", "", false},
		{"[::]:8081", "", false},
		{"10.1.2.3:8081", "", false},
		{"example.com:8081", "", false},
		{"garbage", "", false},
		{"0.0.0.0:8081", "t", true},
	} {
		if err := CheckListen(tc.addr, tc.token); (err == nil) != tc.ok {
			t.Errorf("CheckListen(%q, %q) = %v, want ok=%v", tc.addr, tc.token, err, tc.ok)
		}
	}
}

// Concurrent POSTs with fsync on: every 200 is one durable increment.
func TestConcurrentIncrementsThroughHTTP(t *testing.T) {
	t.Parallel()
	srv := newServer(t, Options{}, false)
	const clients, each = 8, 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				req, _ := http.NewRequest("POST", srv.URL+"/v1/apps/a/collections/stats/docs/views", strings.NewReader(`{"ops":[{"op":"increment","path":"n","value":1}]}`))
				resp, err := srv.Client().Do(req)
				if err != nil {
					mu.Lock()
					failures = append(failures, err.Error())
					mu.Unlock()
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					mu.Lock()
					failures = append(failures, resp.Status)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatal(failures)
	}
	if r := do(t, srv, "GET", "/v1/apps/a/collections/stats/docs/views", ""); r.body != fmt.Sprintf(`{"n":%d}`, clients*each) {
		t.Fatalf("counter: %s, want %d", r.body, clients*each)
	}
}

func TestCollectionsShowScopes(t *testing.T) {
	t.Parallel()
	srv := newServer(t, Options{}, true)
	r := do(t, srv, "GET", "/v1/apps/a/collections", "")
	if want := `{"collections":[{"name":"carts","scope":"local"},{"name":"stats","scope":"global"}]}`; r.status != 200 || r.body != want {
		t.Fatalf("collections: %d %s, want %s", r.status, r.body, want)
	}
	wantError(t, do(t, srv, "GET", "/v1/apps/nope/collections", ""), 404, "not_found", "nope")
}

// wantErrorIs checks an error answer's status, kind and exact message.
func wantErrorIs(t *testing.T, r result, status int, kind, msg string) {
	t.Helper()
	var e struct{ Error, Kind string }
	if err := json.Unmarshal([]byte(r.body), &e); err != nil || r.status != status || e.Kind != kind || e.Error != msg {
		t.Fatalf("got %d %s\nwant %d kind %q error %q", r.status, r.body, status, kind, msg)
	}
}

// An increment past int64 is refused (400 invalid), in both directions and
// for a missing key, and changes nothing.
func TestIncrementOverflow(t *testing.T) {
	t.Parallel()
	srv := newServer(t, Options{}, true)
	const start = `{"max":9223372036854775807,"min":-9223372036854775808}`
	if r := do(t, srv, "PUT", doc+"k", start); r.status != 200 {
		t.Fatal(r.body)
	}
	wantErrorIs(t, do(t, srv, "POST", doc+"k", `{"ops":[{"op":"increment","path":"max","value":1}]}`), 400, "invalid",
		`op 0 (increment "max"): increment by 1 would make the number 9223372036854775808, outside the 64-bit integer range -9223372036854775808..9223372036854775807`)
	wantErrorIs(t, do(t, srv, "POST", doc+"k", `{"ops":[{"op":"increment","path":"min","value":-1}]}`), 400, "invalid",
		`op 0 (increment "min"): increment by -1 would make the number -9223372036854775809, outside the 64-bit integer range -9223372036854775808..9223372036854775807`)
	wantErrorIs(t, do(t, srv, "POST", doc+"k", `{"ops":[{"op":"increment","path":"m","value":9223372036854775807},{"op":"increment","path":"m","value":1}]}`), 400, "invalid",
		`op 1 (increment "m"): increment by 1 would make the number 9223372036854775808, outside the 64-bit integer range -9223372036854775808..9223372036854775807`)
	if r := do(t, srv, "GET", doc+"k", ""); r.body != start {
		t.Fatalf("refused increments changed the document: %s", r.body)
	}
}

// Invalid UTF-8 and escaped lone surrogates are refused (400 invalid), not
// replaced by U+FFFD: in the paths and values of ops and in a document.
func TestInvalidText(t *testing.T) {
	t.Parallel()
	srv := newServer(t, Options{}, true)
	const start = `{"o":{}}`
	if r := do(t, srv, "PUT", doc+"k", start); r.status != 200 {
		t.Fatal(r.body)
	}
	for _, c := range []struct{ body, msg string }{
		{"{\"ops\":[{\"op\":\"set\",\"path\":\"o.\xff\",\"value\":1}]}", "the body is invalid JSON text: not valid UTF-8 at byte 30"},
		{`{"ops":[{"op":"set","path":"\ud800","value":1}]}`, `the body is invalid JSON text: \ud800 at byte 28 is a lone UTF-16 surrogate; a string may escape a surrogate only as a pair, \ud800-\udbff then \udc00-\udfff`},
		{`{"ops":[{"op":"set","path":"o.\udc00","value":1}]}`, `the body is invalid JSON text: \udc00 at byte 30 is a lone UTF-16 surrogate; a string may escape a surrogate only as a pair, \ud800-\udbff then \udc00-\udfff`},
		{`{"ops":[{"op":"set","path":"s","value":"\ud83dx"}]}`, `the body is invalid JSON text: \ud83d at byte 40 is a lone UTF-16 surrogate; a string may escape a surrogate only as a pair, \ud800-\udbff then \udc00-\udfff`},
		{"{\"ops\":[{\"op\":\"set\",\"path\":\"s\",\"value\":\"\xc3(\"}]}", "the body is invalid JSON text: not valid UTF-8 at byte 40"},
	} {
		wantErrorIs(t, do(t, srv, "POST", doc+"k", c.body), 400, "invalid", c.msg)
	}
	wantErrorIs(t, do(t, srv, "PUT", doc+"k", "{\"s\":\"\xff\"}"), 400, "invalid", "invalid request: the document is invalid JSON text: not valid UTF-8 at byte 6")
	wantErrorIs(t, do(t, srv, "PUT", doc+"k", `{"\ud800":1}`), 400, "invalid",
		`invalid request: the document is invalid JSON text: \ud800 at byte 2 is a lone UTF-16 surrogate; a string may escape a surrogate only as a pair, \ud800-\udbff then \udc00-\udfff`)
	if r := do(t, srv, "GET", doc+"k", ""); r.body != start {
		t.Fatalf("refused writes changed the document: %s", r.body)
	}
	// a surrogate pair and an escaped backslash are fine
	if r := do(t, srv, "POST", doc+"k", `{"ops":[{"op":"set","path":"o.\ud83d\ude00","value":"\\ud800"}]}`); r.status != 200 || r.body != `{"o":{"😀":"\\ud800"}}` {
		t.Fatalf("valid text: %d %s", r.status, r.body)
	}
}

// A list limit above the maximum is refused, naming the maximum.
func TestListLimitAboveMaximum(t *testing.T) {
	t.Parallel()
	srv := newServer(t, Options{}, true)
	const list = "/v1/apps/a/collections/carts/docs"
	for _, bad := range []string{"5000", "1001", "0", "-1", "x"} {
		wantErrorIs(t, do(t, srv, "GET", list+"?limit="+bad, ""), 400, "invalid", fmt.Sprintf("limit=%q: want an integer from 1 to 1000", bad))
	}
	if r := do(t, srv, "GET", list+"?limit=1000", ""); r.status != 200 {
		t.Fatalf("limit=1000: %d %s", r.status, r.body)
	}
}

// escrowEngine is a SPOT engine whose PoP holds units of stocks in escrow.
type escrowEngine struct{ spot.Engine }

func (escrowEngine) Counter(context.Context, string, string) (int64, error) { return 7, nil }
func (escrowEngine) Escrowed(app, counter string) int64                     { return int64(len(app + counter)) }

// A counter's answer says what the centre holds and what this PoP holds in
// escrow, when its engine keeps escrows.
func TestCounterShowsEscrow(t *testing.T) {
	t.Parallel()
	srv := newServer(t, Options{Spot: escrowEngine{}}, true)
	if r := do(t, srv, "GET", "/v1/apps/a/spot/counters/stock-1", ""); r.status != 200 || strings.TrimSpace(r.body) != `{"escrowed":8,"remaining":7}` {
		t.Fatalf("counter: %d %s", r.status, r.body)
	}
}
