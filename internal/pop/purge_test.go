package pop

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/cache"
)

// store puts one cacheable response tagged key into p's cache for app.
func storeEntry(t *testing.T, p *PoP, app, url, key string) {
	t.Helper()
	req := httptest.NewRequest("GET", url, nil)
	resp, err := p.Cache.Do(context.Background(), app, req, func(ctx context.Context, r *http.Request) (*http.Response, error) {
		rec := httptest.NewRecorder()
		rec.Header().Set("Cache-Control", "max-age=300")
		rec.Header().Set("Surrogate-Key", key)
		rec.WriteString("body")
		return rec.Result(), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

func entries(p *PoP) int { return p.Cache.Stats().Entries }

// TestPurgeAcrossPoPs: a purge at an edge's admin API goes through the
// centre to every PoP; a PoP that is down is named; the centre's log gives
// a PoP that missed purges what it missed, or a reset.
func TestPurgeAcrossPoPs(t *testing.T) {
	n := newDeployNet(t, "c", "a", "b")
	n.waitLinks()
	for _, id := range []string{"a", "b"} {
		deadline := time.Now().Add(20 * time.Second)
		for n.pops[id].purges.unsynced() {
			if time.Now().After(deadline) {
				t.Fatalf("%s never synced purges with the centre", id)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for _, p := range n.pops {
		storeEntry(t, p, "shop", "http://shop.example/p/1", "p1")
		storeEntry(t, p, "shop", "http://shop.example/p/2", "p2")
		storeEntry(t, p, "blog", "http://blog.example/p/1", "p1") // another app's, untouched
	}
	purgeAt := func(id, body string) (int, PurgeResult) {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+n.pops[id].AdminAddr()+"/v1/apps/shop/cache/purge", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer tok")
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r PurgeResult
		json.NewDecoder(resp.Body).Decode(&r)
		return resp.StatusCode, r
	}
	code, r := purgeAt("a", `{"keys":["p1"]}`)
	if code != 200 || r.Seq != 1 || r.Centre != "c" || len(r.Unreachable) != 0 || fmt.Sprint(r.Purged) != "map[a:1 b:1 c:1]" {
		t.Fatalf("purge at a: %d %+v", code, r)
	}
	for id, p := range n.pops {
		if got := entries(p); got != 2 {
			t.Errorf("%s holds %d entries after the purge, want 2 (shop p2, blog p1)", id, got)
		}
	}
	if code, _ := purgeAt("a", `{"nothing":true}`); code != 400 {
		t.Errorf("a purge with an unknown field: %d, want 400", code)
	}
	if code, _ := purgeAt("a", `{}`); code != 400 {
		t.Errorf("an empty purge: %d, want 400", code)
	}

	// b goes away: the purge names it.
	n.stop("b")
	code, r = purgeAt("a", `{"urls":["/p/2"], "soft": true}`)
	if code != 200 || r.Seq != 2 || fmt.Sprint(r.Unreachable) != "[b]" {
		t.Fatalf("purge with b down: %d %+v", code, r)
	}

	// The centre's log: what a PoP that knew seq 1 missed, and resets.
	g := n.pops["c"].purges
	ask := func(req syncReq) syncResp {
		b, _ := json.Marshal(req)
		out, err := g.handleSync("", b)
		if err != nil {
			t.Fatal(err)
		}
		var r syncResp
		json.Unmarshal(out, &r)
		return r
	}
	s := ask(syncReq{Epoch: g.epoch, Seqs: map[string]uint64{"shop": 1}})
	if len(s.Purges["shop"]) != 1 || s.Purges["shop"][0].Seq != 2 || !s.Purges["shop"][0].Purge.Soft || s.ResetAll || len(s.Reset) != 0 {
		t.Errorf("sync from seq 1: %+v", s)
	}
	if s := ask(syncReq{Epoch: g.epoch + 1, Seqs: map[string]uint64{"shop": 1}}); !s.ResetAll {
		t.Errorf("sync from another epoch: %+v, want reset_all", s)
	}
	if s := ask(syncReq{Epoch: 0}); s.ResetAll || len(s.Purges) != 0 || s.Seqs["shop"] != 2 {
		t.Errorf("first sync: %+v, want the seqs only", s)
	}
	g.mu.Lock()
	g.logs["shop"] = g.logs["shop"][1:] // as if seq 1 had left the log
	g.mu.Unlock()
	if s := ask(syncReq{Epoch: g.epoch, Seqs: map[string]uint64{"shop": 0}}); fmt.Sprint(s.Reset) != "[shop]" {
		t.Errorf("sync from before the log: %+v, want a reset of shop", s)
	}

	// An edge applies what it missed when it syncs.
	a := n.pops["a"]
	a.purges.mu.Lock()
	a.purges.seqs["shop"] = 1 // pretend it missed seq 2
	a.purges.mu.Unlock()
	storeEntry(t, a, "shop", "http://shop.example/p/2", "p2")
	g.mu.Lock()
	g.logs["shop"] = append([]purgeEntry{{Seq: 1, Purge: cache.Purge{Keys: []string{"p1"}}}}, g.logs["shop"]...)
	g.mu.Unlock()
	if err := a.purges.sync(); err != nil {
		t.Fatal(err)
	}
	a.purges.mu.Lock()
	seq := a.purges.seqs["shop"]
	a.purges.mu.Unlock()
	if seq != 2 || a.purges.unsynced() {
		t.Errorf("after the sync a knows seq %d (synced: %v), want 2", seq, !a.purges.unsynced())
	}
	resp, err := a.Cache.Do(context.Background(), "shop", httptest.NewRequest("GET", "http://shop.example/p/2", nil), func(ctx context.Context, r *http.Request) (*http.Response, error) {
		rec := httptest.NewRecorder()
		rec.WriteString("new")
		return rec.Result(), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if xc := resp.Header.Get(cache.HeaderXCache); xc == cache.Hit {
		t.Errorf("/p/2 at a after the missed soft purge was synced: X-Cache %s, want it revalidated", xc)
	}

	// The centre goes away: a stops reading its cache, and a purge sent to
	// it is applied there only, with a 503 naming the centre.
	n.stop("c")
	deadline := time.Now().Add(20 * time.Second)
	for !a.purges.unsynced() {
		if time.Now().After(deadline) {
			t.Fatal("a still reads its cache with the centre gone")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, r := purgeAt("a", `{"all":true}`); code != 503 || fmt.Sprint(r.Unreachable) != "[c]" || len(r.Purged) != 1 {
		t.Errorf("purge with the centre gone: %d %+v, want 503 naming c", code, r)
	}
}
