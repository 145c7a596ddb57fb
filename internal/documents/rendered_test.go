package documents

import (
	"context"
	"strconv"
	"testing"

	"github.com/verge-edge/verge/crdt"
	"github.com/verge-edge/verge/internal/store"
)

// TestRenderedFollowsState: whatever changes a document's state (an
// update, a delete, a peer's delta merged by replication), a read gives
// the JSON of the state now stored, never one cached before the change.
func TestRenderedFollowsState(t *testing.T) {
	t.Parallel()
	s := open(t, testOptions{NoSync: true, Origin: "a", Replica: 1}, manifest("shop", "carts"))
	peer := open(t, testOptions{NoSync: true, Origin: "b", Replica: 2}, manifest("shop", "carts"))
	ctx := context.Background()
	k := store.Key{App: "shop", Collection: "carts", Doc: "u1"}
	want := func(doc string) {
		t.Helper()
		got, found, err := s.Get("shop", "carts", "u1")
		if err != nil || (doc == "") == found || string(got) != doc {
			t.Fatalf("Get = %s, %v, %v; want %q", got, found, err, doc)
		}
		// What a read without the cache renders from the stored state.
		state, ok, _ := s.st.Get(k)
		if ok && doc != "" {
			d, err := decode(k, state)
			if err != nil {
				t.Fatal(err)
			}
			if j, _ := d.JSON(); string(j) != doc {
				t.Fatalf("the stored state renders %s, the read gave %s", j, doc)
			}
		}
	}
	update := func(svc *Service, ops ...crdt.Op) {
		t.Helper()
		if _, err := svc.Update(ctx, "shop", "carts", "u1", ops); err != nil {
			t.Fatal(err)
		}
	}
	update(s, op("increment", "apple", "1"))
	// Update left the JSON of the state it stored for the next read.
	if state, _, _ := s.st.Get(k); state == nil {
		t.Fatal("no state after an update")
	} else if j, ok := s.rendered.get(k, state); !ok || string(j) != `{"apple":1}` {
		t.Fatalf("after Update the cache holds %q (%v)", j, ok)
	}
	want(`{"apple":1}`)
	update(s, op("increment", "apple", "2"))
	want(`{"apple":3}`)
	if _, err := s.Delete(ctx, "shop", "carts", "u1"); err != nil {
		t.Fatal(err)
	}
	want("")
	update(s, op("set", "pear", "1"))
	want(`{"pear":1}`)

	// A peer's change arrives through the store, not through Update.
	update(peer, op("increment", "fig", "5"))
	entries, err := peer.st.LogSince("b", 0, 100)
	if err != nil || len(entries) == 0 {
		t.Fatal(entries, err)
	}
	items := []store.BatchItem{{Key: entries[0].Key, Delta: entries[0].Delta}}
	if _, err := s.st.ApplyBatch(ctx, "b", 1, entries[0].Seq, items, s.Merge); err != nil {
		t.Fatal(err)
	}
	want(`{"fig":5,"pear":1}`)
}

// TestRenderedBounded: the cache keeps at most renderedEntries documents
// and no document above renderedMaxBytes, and what Get returns cannot be
// written through into it.
func TestRenderedBounded(t *testing.T) {
	var c renderCache
	for i := range renderedEntries + 100 {
		c.put(store.Key{App: "a", Collection: "c", Doc: strconv.Itoa(i)}, []byte{byte(i)}, []byte(`{"n":1}`))
	}
	if len(c.m) != renderedEntries {
		t.Fatalf("%d entries, want %d", len(c.m), renderedEntries)
	}
	big := store.Key{App: "a", Collection: "c", Doc: "big"}
	c.put(big, make([]byte, renderedMaxBytes), []byte(`{}`))
	if _, ok := c.get(big, make([]byte, renderedMaxBytes)); ok {
		t.Fatal("a document above the size bound was cached")
	}
	k := store.Key{App: "a", Collection: "c", Doc: "k"}
	c.put(k, []byte("s"), append(make([]byte, 0, 64), `{"n":1}`...))
	doc, _ := c.get(k, []byte("s"))
	_ = append(doc, '\n') // as the admin API does
	if again, _ := c.get(k, []byte("s")); string(again[:cap(again)]) != `{"n":1}` {
		t.Fatalf("an append reached the cached JSON: %q", again[:cap(again)])
	}
}
