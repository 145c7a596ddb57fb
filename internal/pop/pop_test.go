package pop

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/crdt"
	"github.com/verge-edge/verge/internal/freeport"
)

const testManifest = `
name = "shop"

[[function]]
name = "none"
module = "none.wasm"
executor = "verge"
routes = ["/*"]

[[collection]]
name = "stats"
scope = "global"

[[collection]]
name = "carts"
scope = "local"

[[collection]]
name = "team"
scope = "group:eu"

[[collection]]
name = "eu_only"
scope = "global"
regions = ["eu"]
`

// cluster is several PoPs in one process, over real NATS connections on
// loopback.
type cluster struct {
	t    *testing.T
	net  verge.Network
	dirs map[string]string
	app  *verge.Manifest
	pops map[string]*PoP
	opts func(*Options)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// newCluster: c is central (region us), a and e are in eu (group eu), b in us.
func newCluster(t *testing.T) *cluster {
	t.Helper()
	m, err := verge.ParseManifest("verge.toml", []byte(testManifest))
	if err != nil {
		t.Fatal(err)
	}
	m.Functions = nil // data only: these tests drive the data service directly
	c := &cluster{t: t, app: m, dirs: map[string]string{}, pops: map[string]*PoP{}}
	c.net = verge.Network{
		PoPs: []verge.PoP{
			{ID: "c", Region: "us", Central: true, Number: 1},
			{ID: "a", Region: "eu", Number: 2},
			{ID: "b", Region: "us", Number: 3},
			{ID: "e", Region: "eu", Number: 4},
		},
		Groups: map[string][]string{"eu": {"a", "e"}},
	}
	base := t.TempDir()
	for i, p := range c.net.PoPs {
		c.net.PoPs[i].Mesh = freeAddr(t)
		c.dirs[p.ID] = filepath.Join(base, p.ID)
	}
	return c
}

func (c *cluster) start(ids ...string) {
	c.t.Helper()
	type res struct {
		p   *PoP
		err error
	}
	ch := make(chan res, len(ids))
	for _, id := range ids {
		go func() {
			o := Options{
				Self: id, Network: c.net, Data: c.dirs[id], App: c.app,
				Window: 20 * time.Millisecond, AntiEntropy: 500 * time.Millisecond, NoSync: true,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			}
			if c.opts != nil {
				c.opts(&o)
			}
			p, err := Start(context.Background(), o)
			ch <- res{p, err}
		}()
	}
	for range ids {
		r := <-ch
		if r.err != nil {
			c.t.Fatal(r.err)
		}
		c.pops[r.p.opts.Self] = r.p
		c.t.Cleanup(r.p.Close)
	}
}

func (c *cluster) stop(id string) {
	c.pops[id].Close()
	delete(c.pops, id)
}

func (c *cluster) update(id, coll, key string, ops ...crdt.Op) {
	c.t.Helper()
	if _, err := c.pops[id].Docs.Update(context.Background(), "shop", coll, key, ops); err != nil {
		c.t.Fatalf("update at %s: %v", id, err)
	}
}

func incr(path string, n int) crdt.Op {
	return crdt.Op{Op: "increment", Path: path, Value: json.RawMessage(fmt.Sprint(n))}
}

func set(path, v string) crdt.Op { return crdt.Op{Op: "set", Path: path, Value: json.RawMessage(v)} }

func (c *cluster) get(id, coll, key string) string {
	doc, found, err := c.pops[id].Docs.Get("shop", coll, key)
	if err != nil {
		c.t.Fatalf("get at %s: %v", id, err)
	}
	if !found {
		return "<absent>"
	}
	return string(doc)
}

// eventually waits (bounded) until every listed PoP reads want.
func (c *cluster) eventually(coll, key, want string, ids ...string) {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok := true
		var got string
		var at string
		for _, id := range ids {
			if got = c.get(id, coll, key); got != want {
				ok, at = false, id
				break
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s/%s at %s = %s after 20 s, want %s", coll, key, at, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// holdsAny reports whether PoP id's store has any document of coll
// (deleted ones included): residency is about bytes on disk.
func (c *cluster) holdsAny(id, coll string) bool {
	keys, _, err := c.pops[id].Store.List("shop", coll, "", 1)
	if err != nil {
		c.t.Fatal(err)
	}
	return len(keys) > 0
}

func TestReplicationByScope(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.start("c", "a", "b", "e")

	c.update("a", "stats", "views", incr("n", 1))
	c.update("b", "stats", "views", incr("n", 2))
	c.update("a", "carts", "u1", set("sku", `"tea"`))
	c.update("a", "team", "t1", set("name", `"core"`))
	c.update("e", "eu_only", "x", set("v", `1`))

	c.eventually("stats", "views", `{"n":3}`, "a", "b", "c", "e")
	c.eventually("carts", "u1", `{"sku":"tea"}`, "a", "c") // local: backed up centrally
	c.eventually("team", "t1", `{"name":"core"}`, "a", "e", "c")
	c.eventually("eu_only", "x", `{"v":1}`, "a", "e")

	// Let anti-entropy run a few rounds, then check where data never went.
	time.Sleep(1500 * time.Millisecond)
	if c.holdsAny("b", "carts") || c.holdsAny("e", "carts") {
		t.Error("a local document reached a PoP other than its own and the centre")
	}
	if c.holdsAny("b", "team") {
		t.Error("a group:eu document reached b, which is not in the group")
	}
	for _, id := range []string{"b", "c"} {
		if c.holdsAny(id, "eu_only") {
			t.Errorf("a document of a collection restricted to regions [eu] reached %s (region us)", id)
		}
	}
}

func TestRestartResumes(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.start("c", "a", "b", "e")
	c.update("a", "stats", "s", incr("n", 1))
	c.eventually("stats", "s", `{"n":1}`, "b")
	c.stop("b")
	for i := range 50 {
		c.update("a", "stats", fmt.Sprintf("d%02d", i), incr("n", 1))
	}
	c.start("b")
	c.eventually("stats", "d49", `{"n":1}`, "b")
	if c.pops["b"].Incarnation != 1 {
		t.Fatalf("b restarted with its disk but took incarnation %d", c.pops["b"].Incarnation)
	}
	// Resumed, not resent: a's log to b restarted after b's watermark.
	sent := c.pops["a"].Repl.Links()["b"]
	if sent.Items > 50+5 {
		t.Errorf("a sent b %d items after its restart for 50 new documents", sent.Items)
	}
}

// A peer that stays away does not hold the log without bound: beyond
// MaxLog the oldest entries go, and the peer, when it returns, gets the rest
// and is repaired by anti-entropy for what was dropped.
func TestLogBoundedWhilePeerAway(t *testing.T) {
	t.Parallel()
	const maxLog = 64
	c := newCluster(t)
	c.opts = func(o *Options) { o.MaxLog = maxLog }
	c.start("c", "a", "b", "e")
	c.update("a", "stats", "first", incr("n", 1))
	c.eventually("stats", "first", `{"n":1}`, "b")
	c.stop("b")
	const writes = 400
	for i := range writes {
		c.update("a", "stats", fmt.Sprintf("d%03d", i), incr("n", 1))
	}
	st := c.pops["a"].Store
	origin := st.Origin()
	deadline := time.Now().Add(10 * time.Second)
	for {
		trunc := st.Truncated(origin) // first: never above a later head
		kept := st.Seqs()[origin] - trunc
		if kept <= maxLog+maxLog/8 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a keeps %d log entries with b away; MaxLog is %d", kept, maxLog)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The admin API shows the cap and who is behind.
	st0 := c.links("a")
	if st0.LogEntries > maxLog+maxLog/8 {
		t.Errorf("/v1/net/links: log_entries %d; MaxLog is %d", st0.LogEntries, maxLog)
	}
	for _, l := range st0.Links {
		if l.Peer == "b" && (l.Connected || l.Unacked != nil) {
			t.Errorf("/v1/net/links: b is away, yet connected %v, unacked known %v", l.Connected, l.Unacked != nil)
		}
	}
	c.start("b")
	c.eventually("stats", "d000", `{"n":1}`, "b") // dropped from the log: anti-entropy
	c.eventually("stats", fmt.Sprintf("d%03d", writes-1), `{"n":1}`, "b")
	// The repair counter moves once the round has merged every collection,
	// a moment after the documents are readable.
	for deadline := time.Now().Add(10 * time.Second); c.pops["b"].Repl.Repaired() == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("b caught up without anti-entropy although a dropped entries it had not acknowledged")
		}
	}
	// Once b has acknowledged a's log again, it is behind by nothing.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var unacked *uint64
		for _, l := range c.links("a").Links {
			if l.Peer == "b" {
				unacked = l.Unacked
			}
		}
		if unacked != nil && *unacked == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b is back and up to date, yet a reports it %v entries behind", unacked)
		}
	}
}

// netLinks is what GET /v1/net/links answers.
type netLinks struct {
	LogEntries uint64 `json:"log_entries"`
	Links      []struct {
		Peer      string  `json:"peer"`
		Connected bool    `json:"connected"`
		Unacked   *uint64 `json:"unacked"`
	} `json:"links"`
}

func (c *cluster) links(id string) netLinks {
	c.t.Helper()
	rec := httptest.NewRecorder()
	c.pops[id].netControl().ServeHTTP(rec, httptest.NewRequest("GET", "/v1/net/links", nil))
	var out netLinks
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || rec.Code != 200 {
		c.t.Fatalf("/v1/net/links at %s: %d %s (%v)", id, rec.Code, rec.Body, err)
	}
	return out
}

func TestLostDiskRebuilds(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.start("c", "a", "b", "e")
	c.update("a", "carts", "u1", set("sku", `"tea"`))
	c.update("b", "stats", "s", incr("n", 5))
	c.update("a", "team", "t", set("x", "1"))
	c.eventually("carts", "u1", `{"sku":"tea"}`, "c")
	c.eventually("stats", "s", `{"n":5}`, "a")
	c.eventually("team", "t", `{"x":1}`, "e", "c")
	c.stop("a")
	if err := removeAll(c.dirs["a"]); err != nil {
		t.Fatal(err)
	}
	c.start("a")
	p := c.pops["a"]
	if p.Incarnation != 2 {
		t.Fatalf("a came back without its disk as incarnation %d, want 2", p.Incarnation)
	}
	// Rebuilt before serving: its local cart from the centre, the rest from peers.
	for _, want := range []struct{ coll, key, doc string }{
		{"carts", "u1", `{"sku":"tea"}`}, {"stats", "s", `{"n":5}`}, {"team", "t", `{"x":1}`},
	} {
		if got := c.get("a", want.coll, want.key); got != want.doc {
			t.Errorf("after rebuild a has %s/%s = %s, want %s", want.coll, want.key, got, want.doc)
		}
	}
	// Its new writes continue the documents' histories.
	c.update("a", "carts", "u1", incr("qty", 2))
	c.eventually("carts", "u1", `{"qty":2,"sku":"tea"}`, "a", "c")
}

func removeAll(dir string) error { return os.RemoveAll(dir) }
