package host

import (
	"context"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/crdt"
	"github.com/verge-edge/verge/internal/documents"
	"github.com/verge-edge/verge/internal/wasm"
)

// memDocs is an in-memory Documents over real CRDT documents.
type memDocs struct {
	mu   sync.Mutex
	docs map[string]*crdt.Doc
}

func (m *memDocs) k(app, coll, key string) string { return app + "\x00" + coll + "\x00" + key }

func (m *memDocs) Get(app, coll, key string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.docs[m.k(app, coll, key)]
	if !ok {
		return nil, false, nil
	}
	b, err := d.JSON()
	return b, true, err
}

func (m *memDocs) Update(ctx context.Context, app, coll, key string, ops []crdt.Op) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.docs[m.k(app, coll, key)]
	if !ok {
		d = crdt.NewDoc()
	}
	if _, err := d.Apply(1, 1, ops...); err != nil {
		return nil, kerr(documents.ErrInvalid, "%v", err)
	}
	m.docs[m.k(app, coll, key)] = d
	return d.JSON()
}

func (m *memDocs) Delete(ctx context.Context, app, coll, key string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.docs[m.k(app, coll, key)]
	delete(m.docs, m.k(app, coll, key))
	return ok, nil
}

func (m *memDocs) List(app, coll, after string, limit int) ([]string, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var keys []string
	for k := range m.docs {
		if p := app + "\x00" + coll + "\x00"; strings.HasPrefix(k, p) && k[len(p):] > after {
			keys = append(keys, k[len(p):])
		}
	}
	sort.Strings(keys)
	return keys, "", nil
}

func TestDocumentHostCalls(t *testing.T) {
	t.Parallel()
	docs := &memDocs{docs: map[string]*crdt.Doc{}}
	e := newEngine(t, Services{Documents: docs})
	mod := buildGo(t, "internal/host/testdata/godocs")
	shop := load(t, e, verge.Function{App: "shop", Module: mod, Executor: verge.ExecutorVerge})
	other := load(t, e, verge.Function{App: "other", Module: mod, Executor: verge.ExecutorVerge})

	call := func(f *wasm.Function, uri string) (int, string) {
		t.Helper()
		path, query, _ := strings.Cut(uri, "?")
		r := get(path)
		r.URI, r.Query = uri, query
		resp, err := f.Serve(context.Background(), r)
		if err != nil {
			t.Fatalf("%s: %v", uri, err)
		}
		return resp.Status, string(resp.Body)
	}
	// The first add creates the cart: an empty document has no array to
	// append to, so it is seeded by a set.
	if code, body := call(shop, "/add?user=u1&item=apple"); code != 500 || !strings.Contains(body, "items") {
		t.Fatalf("append to a missing array: %d %q, want an error naming the path", code, body)
	}
	docs.docs[(&memDocs{}).k("shop", "carts", "u1")] = mustDoc(t, `{"items":[],"count":0}`)
	for _, item := range []string{"apple", "pear"} {
		if code, body := call(shop, "/add?user=u1&item="+item); code != 200 {
			t.Fatalf("add %s: %d %q", item, code, body)
		}
	}
	if code, body := call(shop, "/get?user=u1"); code != 200 || body != `{"count":2,"items":["apple","pear"]}` {
		t.Fatalf("get: %d %s", code, body)
	}
	// Another app never sees shop's documents.
	if code, _ := call(other, "/get?user=u1"); code != 404 {
		t.Fatalf("app other read shop's cart: %d", code)
	}
	if _, body := call(other, "/list"); body != "[]<nil>" {
		t.Fatalf("app other lists %q", body)
	}
	if _, body := call(shop, "/bad?user=u1"); !strings.Contains(body, "invalid argument") || !strings.Contains(body, "items") {
		t.Fatalf("a bad op: %q, want the host's explanation", body)
	}
	if _, body := call(shop, "/delete?user=u1"); body != "true <nil>" {
		t.Fatalf("delete: %q", body)
	}
	if _, body := call(shop, "/delete?user=u1"); body != "false <nil>" {
		t.Fatalf("second delete: %q", body)
	}
}

func mustDoc(t *testing.T, js string) *crdt.Doc {
	d := crdt.NewDoc()
	if _, err := d.Apply(1, 1, crdt.Op{Op: "set", Path: "", Value: []byte(js)}); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDocumentsUnavailable(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Services{})
	f := load(t, e, verge.Function{App: "shop", Module: buildGo(t, "internal/host/testdata/godocs"), Executor: verge.ExecutorVerge})
	r := get("/bad")
	resp, err := f.Serve(context.Background(), r)
	if err != nil || !strings.Contains(string(resp.Body), "not supported by this host") {
		t.Fatalf("without a data service: %v %q", err, resp.Body)
	}
}

// docUpdateRaw runs doc_update on carts/u1 of app shop with ops as raw
// bytes (testdata/docupdate.wat) and returns its status and last error.
func docUpdateRaw(t *testing.T, docs Documents, ops []byte) (uint32, string) {
	t.Helper()
	f := load(t, newEngine(t, Services{Documents: docs}), verge.Function{App: "shop", Module: fixture("docupdate.wasm"), Executor: verge.ExecutorVerge})
	r := get("/")
	r.Method, r.Body = "POST", ops
	resp, err := f.Serve(context.Background(), r)
	if err != nil || len(resp.Body) == 0 {
		t.Fatalf("doc_update guest: %v %q", err, resp.Body)
	}
	return uint32(resp.Body[0]), string(resp.Body[1:])
}

// doc_update refuses what encoding/json would silently replace by U+FFFD
// (invalid UTF-8, escaped lone surrogates) and increments past int64 with
// StatusInvalid, and changes nothing.
func TestDocUpdateBadInput(t *testing.T) {
	t.Parallel()
	docs := &memDocs{docs: map[string]*crdt.Doc{}}
	docs.docs[docs.k("shop", "carts", "u1")] = mustDoc(t, `{"n":9223372036854775807,"o":{}}`)
	const lone = "is a lone UTF-16 surrogate; a string may escape a surrogate only as a pair, \\ud800-\\udbff then \\udc00-\\udfff"
	for _, c := range []struct{ ops, msg string }{
		{`[{"op":"set","path":"o.\ud800","value":1}]`, `invalid JSON text: \ud800 at byte 23 ` + lone},
		{`[{"op":"set","path":"\udc00","value":1}]`, `invalid JSON text: \udc00 at byte 21 ` + lone},
		{`[{"op":"set","path":"s","value":"\ud800\u0041"}]`, `invalid JSON text: \ud800 at byte 33 ` + lone},
		{"[{\"op\":\"set\",\"path\":\"o.\xff\",\"value\":1}]", `invalid JSON text: not valid UTF-8 at byte 23`},
		{"[{\"op\":\"set\",\"path\":\"s\",\"value\":{\"k\xe9\":1}}]", `invalid JSON text: not valid UTF-8 at byte 35`},
		{`[{"op":"increment","path":"n","value":1}]`, `op 0 (increment "n"): increment by 1 would make the number 9223372036854775808, outside the 64-bit integer range -9223372036854775808..9223372036854775807`},
	} {
		st, msg := docUpdateRaw(t, docs, []byte(c.ops))
		if st != wasm.StatusInvalid || msg != c.msg {
			t.Errorf("doc_update(%q): status %d %q\nwant %d %q", c.ops, st, msg, wasm.StatusInvalid, c.msg)
		}
	}
	if b, _ := docs.docs[docs.k("shop", "carts", "u1")].JSON(); string(b) != `{"n":9223372036854775807,"o":{}}` {
		t.Fatalf("refused updates changed the document: %s", b)
	}
	if st, msg := docUpdateRaw(t, docs, []byte(`[{"op":"set","path":"o.\ud83d\ude00","value":"\\ud800"},{"op":"increment","path":"n","value":-1}]`)); st != wasm.StatusOK {
		t.Fatalf("valid ops: status %d %q", st, msg)
	}
	if b, _ := docs.docs[docs.k("shop", "carts", "u1")].JSON(); string(b) != `{"n":9223372036854775806,"o":{"😀":"\\ud800"}}` {
		t.Fatalf("after valid ops: %s", b)
	}
}
