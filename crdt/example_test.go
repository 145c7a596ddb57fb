package crdt_test

import (
	"encoding/json"
	"fmt"

	"github.com/verge-edge/verge/crdt"
)

func set(path, value string) crdt.Op {
	return crdt.Op{Op: "set", Path: path, Value: json.RawMessage(value)}
}

// Two PoPs edit the same cart concurrently, exchange deltas, and converge.
func ExampleDoc() {
	const paris, tokyo crdt.ReplicaID = 1, 2
	now := int64(1_700_000_000_000_000_000)

	a := crdt.NewDoc()
	d0, _ := a.Apply(paris, now, set("cart", `{"items":[{"sku":"tea","qty":1}],"views":0}`))

	b := crdt.NewDoc()
	_ = b.Merge(d0) // in production: d0.MarshalBinary() on the wire, crdt.DecodeDelta on arrival

	// Concurrently: Paris adds an item and bumps a quantity, Tokyo adds
	// another item and both count a view.
	da, _ := a.Apply(paris, now+10, crdt.Op{Op: "append", Path: "cart.items", Value: json.RawMessage(`{"sku":"jam","qty":2}`)},
		crdt.Op{Op: "increment", Path: "cart.items.0.qty", Value: json.RawMessage("1")},
		crdt.Op{Op: "increment", Path: "cart.views", Value: json.RawMessage("1")})
	db, _ := b.Apply(tokyo, now+20, crdt.Op{Op: "append", Path: "cart.items", Value: json.RawMessage(`{"sku":"rice","qty":1}`)},
		crdt.Op{Op: "increment", Path: "cart.views", Value: json.RawMessage("1")})

	// An invalid operation is rejected with the whole Apply, naming the op.
	_, err := a.Apply(paris, now+30, set("cart.coupon", `"X"`), crdt.Op{Op: "increment", Path: "cart.items", Value: json.RawMessage("1")})
	fmt.Println(err)

	_ = a.Merge(db)
	_ = b.Merge(da)
	ja, _ := a.JSON()
	jb, _ := b.JSON()
	fmt.Println(string(ja))
	fmt.Println(string(ja) == string(jb))

	// Byte-for-byte identical states, and a version vector to acknowledge.
	ea, _ := a.MarshalBinary()
	eb, _ := b.MarshalBinary()
	fmt.Println(string(ea) == string(eb), a.Context())
	// Output:
	// op 1 (increment "cart.items"): path points at an array, increment needs a number
	// {"cart":{"items":[{"qty":2,"sku":"tea"},{"qty":2,"sku":"jam"},{"qty":1,"sku":"rice"}],"views":2}}
	// true
	// true [1:11 2:4]
}

// Removing a key concurrently with an edit inside it: the remove wins over
// the nested edit; a concurrent set of the same key would have won instead.
func ExampleDoc_Merge_removeVersusEdit() {
	a := crdt.NewDoc()
	d0, _ := a.Apply(1, 100, set("profile", `{"name":"ada","tags":[]}`))
	b := crdt.NewDoc()
	_ = b.Merge(d0)

	rm, _ := a.Apply(1, 200, crdt.Op{Op: "remove", Path: "profile"})
	edit, _ := b.Apply(2, 300, set("profile.name", `"grace"`))
	_ = a.Merge(edit)
	_ = b.Merge(rm)
	ja, _ := a.JSON()
	jb, _ := b.JSON()
	fmt.Println(string(ja), string(jb))

	again, _ := b.Apply(2, 400, set("profile", `{"name":"grace"}`))
	rm2, _ := a.Apply(1, 400, crdt.Op{Op: "remove", Path: "profile"})
	_ = a.Merge(again)
	_ = b.Merge(rm2)
	ja, _ = a.JSON()
	fmt.Println(string(ja))
	// Output:
	// {} {}
	// {"profile":{"name":"grace"}}
}
