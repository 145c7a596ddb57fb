package host

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/verge-edge/verge/crdt"
)

var opsCorpus = []string{
	`[{"op":"increment","path":"apple","value":1}]`,
	`[{"op":"increment","path":"apple","value":-9223372036854775808}]`,
	`[{"op":"set","path":"a.b","value":"x"},{"op":"remove","path":"c"}]`,
	`[{"op":"insert","path":"l","index":0,"value":true},{"op":"append","path":"l","value":false}]`,
	`[{"op":"insert","path":"l","index":-1,"value":1.5e-3}]`,
	`[{"op":"insert","path":"l","index":9223372036854775808,"value":1}]`,
	`[{"op":"insert","path":"l","index":1.0,"value":1}]`,
	`[{"op":"insert","path":"l","index":1e2,"value":1}]`,
	`[{"op":"set","path":"a","value":null}]`, `[{"op":"set","path":"a","value":{"b":1}}]`,
	`[{"op":"set","path":"a","value":[1]}]`, `[{"op":"set","path":"a","value":"\u00e9"}]`,
	`[{"op":"set","path":"é","value":1}]`, `[{"op":"set","path":"a\"b","value":1}]`,
	`[{"op":"set","path":"a","value":01}]`, `[{"op":"set","path":"a","value":-}]`, `[{"op":"set","path":"a","value":1.}]`,
	`[{"op":"set","path":"a","value":tru}]`, `[{"op":"set","path":"a","value":truex}]`,
	`[{"path":"a","op":"set"}]`, `[{"Op":"set","path":"a"}]`, `[{"op":"set","path":"a","path":"b"}]`,
	`[{"op":"set","path":"a","extra":1}]`, `[ {"op":"set","path":"a"} ]`, `[{"op":"set","path":"a"},]`,
	`[{"op":"set","path":"a"}]x`, `[{"op":"set","path":"a"}`, `[]`, `{}`, ``, `null`, `[{"op":1,"path":"a"}]`,
	"[{\"op\":\"set\",\"path\":\"a\\tb\"}]", "[{\"op\":\"set\",\"path\":\"a\tb\"}]",
}

// TestFastOpsMatchesEncodingJSON: what the fast path accepts, it decodes as
// encoding/json does; and it accepts what the SDK writes.
func TestFastOpsMatchesEncodingJSON(t *testing.T) {
	for _, raw := range opsCorpus {
		sameOps(t, []byte(raw))
	}
	for _, raw := range opsCorpus[:5] {
		if _, ok := fastOps([]byte(raw)); !ok {
			t.Errorf("%s took the slow path", raw)
		}
	}
	// The ops must not share the guest's memory.
	raw := []byte(`[{"op":"set","path":"a","value":"x"}]`)
	ops, _ := fastOps(raw)
	for i := range raw {
		raw[i] = ' '
	}
	if ops[0].Op != "set" || ops[0].Path != "a" || string(ops[0].Value) != `"x"` {
		t.Fatalf("the ops changed with the bytes they were decoded from: %+v", ops[0])
	}
}

func FuzzFastOps(f *testing.F) {
	for _, raw := range opsCorpus {
		f.Add([]byte(raw))
	}
	f.Fuzz(func(t *testing.T, raw []byte) { sameOps(t, raw) })
}

func sameOps(t *testing.T, raw []byte) {
	t.Helper()
	got, ok := fastOps(raw)
	if !ok {
		return
	}
	var want []crdt.Op
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatalf("%s: fast path accepted what encoding/json refuses: %v", raw, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: fast path gives %+v, encoding/json %+v", raw, got, want)
	}
}
