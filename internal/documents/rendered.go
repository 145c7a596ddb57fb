package documents

import (
	"bytes"
	"slices"
	"sync"

	"github.com/verge-edge/verge/internal/store"
)

// Rendering a document's JSON (decoding its CRDT state, building its value,
// encoding/json) is most of a read's CPU time, and a function typically
// reads back a document it has just written, or one that many requests read
// and few change. The cache keeps the JSON of recent documents next to the
// exact state it was rendered from: a read whose state has the same bytes
// gets the same JSON, since rendering depends on nothing else. So an entry
// is never stale, whoever wrote the state (a local update, a peer's delta,
// a restore); a changed state is merely a miss.
const (
	renderedEntries  = 2048
	renderedMaxBytes = 4 << 10 // state and JSON of one entry: bounds the cache to ~8 MiB
)

type renderCache struct {
	mu sync.Mutex
	m  map[store.Key]rendered
}

type rendered struct{ state, json []byte }

// get returns the JSON rendered from state, if the cache has it. It is
// shared: callers must not write to it (its capacity is its length, so an
// append copies).
func (c *renderCache) get(k store.Key, state []byte) ([]byte, bool) {
	c.mu.Lock()
	e, ok := c.m[k]
	c.mu.Unlock()
	if !ok || !bytes.Equal(e.state, state) {
		return nil, false
	}
	return e.json, true
}

// put records that state renders as json; both must no longer change.
func (c *renderCache) put(k store.Key, state, json []byte) []byte {
	json = slices.Clip(json)
	if len(state)+len(json) > renderedMaxBytes {
		return json
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[store.Key]rendered)
	}
	if _, ok := c.m[k]; !ok && len(c.m) >= renderedEntries {
		for old := range c.m { // an arbitrary entry: Go's map order is random
			delete(c.m, old)
			break
		}
	}
	c.m[k] = rendered{state: state, json: json}
	return json
}
