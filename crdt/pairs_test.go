package crdt

import (
	"encoding/json"
	"testing"
)

// TestConcurrentPairs checks every row of the table in docs/crdt.md: two
// replicas start from the same base, each applies its ops without seeing
// the other's, then they exchange deltas (in both orders).
func TestConcurrentPairs(t *testing.T) {
	t.Parallel()
	idx := func(i int) *int { return &i }
	o := func(op, path, v string) Op {
		x := Op{Op: op, Path: path}
		if v != "" {
			x.Value = json.RawMessage(v)
		}
		return x
	}
	const base = `{"k":1,"cart":{"items":["x"],"n":0}}`
	cases := []struct {
		name string
		a, b []Op // a runs at time 10 as replica 1, b at time 12 as replica 2
		want string
	}{
		{"set ∥ set: later HLC wins", []Op{o("set", "k", "2")}, []Op{o("set", "k", "3")}, `{"cart":{"items":["x"],"n":0},"k":3}`},
		{"object ∥ scalar: LWW on the whole value", []Op{o("set", "k", `{"a":1}`)}, []Op{o("set", "k", "5")}, `{"cart":{"items":["x"],"n":0},"k":5}`},
		{"remove ∥ set: set wins", []Op{o("remove", "k", "")}, []Op{o("set", "k", "7")}, `{"cart":{"items":["x"],"n":0},"k":7}`},
		{"set ∥ remove: set wins whatever the times", []Op{o("set", "k", "7")}, []Op{o("remove", "k", "")}, `{"cart":{"items":["x"],"n":0},"k":7}`},
		{"remove ∥ inner set: remove wins", []Op{o("remove", "cart", "")}, []Op{o("set", "cart.n", "5")}, `{"k":1}`},
		{"remove ∥ inner append: remove wins", []Op{o("remove", "cart", "")}, []Op{o("append", "cart.items", `"y"`)}, `{"k":1}`},
		{"remove ∥ inner increment: remove wins", []Op{o("remove", "cart", "")}, []Op{o("increment", "cart.n", "1")}, `{"k":1}`},
		{"set ∥ edit inside the old value: set wins", []Op{o("set", "cart", "{}")}, []Op{o("append", "cart.items", `"y"`)}, `{"cart":{},"k":1}`},
		{"increment ∥ increment: both add", []Op{o("increment", "cart.n", "2")}, []Op{o("increment", "cart.n", "3")}, `{"cart":{"items":["x"],"n":5},"k":1}`},
		{"increment ∥ set: set wins", []Op{o("increment", "cart.n", "2")}, []Op{o("set", "cart.n", "10")}, `{"cart":{"items":["x"],"n":10},"k":1}`},
		{"set ∥ increment: set wins even when earlier", []Op{o("set", "cart.n", "10")}, []Op{o("increment", "cart.n", "2")}, `{"cart":{"items":["x"],"n":10},"k":1}`},
		{"increment missing ∥ increment missing: both count", []Op{o("increment", "m", "1")}, []Op{o("increment", "m", "1")}, `{"cart":{"items":["x"],"n":0},"k":1,"m":2}`},
		{"increment missing ∥ set: set wins", []Op{o("set", "m", "4")}, []Op{o("increment", "m", "1")}, `{"cart":{"items":["x"],"n":0},"k":1,"m":4}`},
		{"increment ∥ remove: remove wins", []Op{o("increment", "k", "1")}, []Op{o("remove", "k", "")}, `{"cart":{"items":["x"],"n":0}}`},
		{"insert ∥ insert at same index: lower replica first", []Op{o("insert", "cart.items", `"a"`)}, []Op{o("insert", "cart.items", `"b"`)}, `{"cart":{"items":["a","b","x"],"n":0},"k":1}`},
		{"append runs do not interleave", []Op{o("append", "cart.items", "1"), o("append", "cart.items", "2"), o("append", "cart.items", "3")},
			[]Op{o("append", "cart.items", "7"), o("append", "cart.items", "8"), o("append", "cart.items", "9")}, `{"cart":{"items":["x",1,2,3,7,8,9],"n":0},"k":1}`},
		{"remove element ∥ replace element: replace wins", []Op{o("remove", "cart.items.0", "")}, []Op{o("set", "cart.items.0", `"z"`)}, `{"cart":{"items":["z"],"n":0},"k":1}`},
		{"remove element ∥ remove element: removed once", []Op{o("remove", "cart.items.0", "")}, []Op{o("remove", "cart.items.0", "")}, `{"cart":{"items":[],"n":0},"k":1}`},
		{"remove element ∥ insert after it: insert survives", []Op{o("remove", "cart.items.0", "")}, []Op{o("append", "cart.items", `"y"`)}, `{"cart":{"items":["y"],"n":0},"k":1}`},
		{"set root ∥ set new key: new key survives", []Op{o("set", "", `{"fresh":true}`)}, []Op{o("set", "k2", "2")}, `{"fresh":true,"k2":2}`},
		{"set [] ∥ append to old array: append lost", []Op{o("set", "cart.items", "[]")}, []Op{o("append", "cart.items", `"y"`)}, `{"cart":{"items":[],"n":0},"k":1}`},
	}
	for _, c := range cases {
		start := NewDoc()
		x0 := mustApply(t, start, 1, 9, Op{Op: "set", Path: "", Value: json.RawMessage(base)})
		a, b := NewDoc(), NewDoc()
		_ = a.Merge(x0)
		_ = b.Merge(x0)
		for i := range c.a {
			if c.a[i].Op == "insert" {
				c.a[i].Index = idx(0)
			}
		}
		for i := range c.b {
			if c.b[i].Op == "insert" {
				c.b[i].Index = idx(0)
			}
		}
		var da, db []*Delta
		for i, op := range c.a {
			da = append(da, mustApply(t, a, int64(10+i), 1, op))
		}
		for i, op := range c.b {
			db = append(db, mustApply(t, b, int64(12+i), 2, op))
		}
		for _, x := range db {
			if err := a.Merge(x); err != nil {
				t.Fatal(err)
			}
		}
		for _, x := range da {
			if err := b.Merge(x); err != nil {
				t.Fatal(err)
			}
		}
		ja, _ := a.JSON()
		jb, _ := b.JSON()
		if string(ja) != c.want || string(jb) != string(ja) {
			t.Errorf("%s: got %s / %s, want %s", c.name, ja, jb, c.want)
		}
	}
}
