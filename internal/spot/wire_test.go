package spot

import (
	"encoding/binary"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/crdt"
)

func TestWireOpsRoundTrip(t *testing.T) {
	t.Parallel()
	idx, neg := 3, -1
	ops := []crdt.Op{
		{Op: "set", Path: "a.b", Value: json.RawMessage(`{"x":[1,2]}`)},
		{Op: "insert", Path: "items", Index: &idx, Value: json.RawMessage(`"ü"`)},
		{Op: "insert", Path: "items", Index: &neg, Value: json.RawMessage(`1`)},
		{Op: "remove", Path: "a"},
	}
	b := appendStr([]byte{wireVersion, 9}, "app")
	b = binary.AppendUvarint(appendStr(b, "key"), 7)
	b = appendOps(b, ops)
	for i := range b {
		if q, err := decodeRequest(opUpdateDoc, b[:i]); err == nil {
			t.Fatalf("request cut at %d of %d decoded: %+v", i, len(b), q)
		}
	}
	q, err := decodeRequest(opUpdateDoc, b)
	if err != nil {
		t.Fatal(err)
	}
	if q.app != "app" || q.key != "key" || q.rev != 7 || q.budget != 9 || !reflect.DeepEqual(q.ops, ops) {
		t.Fatalf("decoded %+v", q)
	}
}

// TestServeMalformed sends requests no client would send; each gets an
// error reply, and the centre keeps serving.
func TestServeMalformed(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	serve(t, s, newEngine(t, s, Config{}), "spot")
	nc := connect(t, s.ClientURL())
	v := []byte{wireVersion, 0}
	str := func(b []byte, s string) []byte { return appendStr(b, s) }
	huge := binary.AppendUvarint(append([]byte(nil), v...), 1<<62)
	cases := []struct {
		op   string
		body []byte
		want string
	}{
		{"claim", nil, "truncated"},
		{"claim", []byte{2}, "wire version 2"},
		{"frobnicate", v, "unknown operation"},
		{"claim", str(str(str(append([]byte(nil), v...), "a"), "n"), "k"), "truncated"},
		{"claim", append(str(str(str(str(append([]byte(nil), v...), "a"), "n"), "k"), "o"), 0), "trailing"},
		{"claim", huge, "more than the maximum"},
		{"claim", str(str(str(str(append([]byte(nil), v...), "a"), "n"), "k\xff"), "o"), "UTF-8"},
		{"take", append(str(str(append([]byte(nil), v...), "a"), "c"), 0x80), "varint"},
		{"take", binary.AppendVarint(str(str(append([]byte(nil), v...), "a"), "c"), -5), "positive"},
		{"updatedoc", binary.AppendUvarint(binary.AppendUvarint(str(str(append([]byte(nil), v...), "a"), "d"), 0), 1<<40), "operations"},
		{"updatedoc", append(binary.AppendUvarint(binary.AppendUvarint(str(str(append([]byte(nil), v...), "a"), "d"), 0), 1), 0, 0, 7), "boolean"},
		{"updatedoc", binary.AppendUvarint(binary.AppendUvarint(str(str(append([]byte(nil), v...), "a"), "d"), 0), 0), "operations"},
	}
	for _, c := range cases {
		m, err := nc.Request("spot."+c.op, c.body, 5*time.Second)
		if err != nil {
			t.Fatalf("%s %x: %v", c.op, c.body, err)
		}
		r := wreader{b: m.Data}
		if r.byte() != wireVersion || r.byte() != stInvalid {
			t.Fatalf("%s %x: reply %x; want an invalid-request reply", c.op, c.body, m.Data)
		}
		if msg := r.str(maxMessage); !strings.Contains(msg, c.want) {
			t.Errorf("%s %x: %q; want it to mention %q", c.op, c.body, msg, c.want)
		}
	}
	e := NewClient(nc, "spot", 5*time.Second)
	if c, err := e.Claim(testCtx(t), "a", "n", "k", "o"); err != nil || !c.Claimed {
		t.Fatalf("claim after malformed requests = %+v, %v", c, err)
	}
}

func FuzzDecodeRequest(f *testing.F) {
	ops := []string{opClaim, opRelease, opTake, opRestock, opCounter, opGetDoc, opUpdateDoc, "x"}
	f.Add(uint8(0), []byte{wireVersion, 1, 1, 'a', 0, 1, 'k', 1, 'o'})
	f.Add(uint8(2), []byte{wireVersion, 1, 1, 'a', 1, 'c', 2})
	f.Add(uint8(6), appendOps([]byte{wireVersion, 1, 1, 'a', 1, 'd', 0}, []crdt.Op{{Op: "set", Path: "a", Value: json.RawMessage(`1`)}}))
	f.Fuzz(func(t *testing.T, op uint8, b []byte) {
		q, err := decodeRequest(ops[int(op)%len(ops)], b)
		if err == nil && q == nil {
			t.Fatal("nil request without an error")
		}
		if err == nil && len(q.ops) > MaxOps {
			t.Fatalf("%d ops decoded", len(q.ops))
		}
	})
}

func FuzzDecodeValue(f *testing.F) {
	f.Add(byte(kindCounter), (&value{kind: kindCounter, seq: 2, win: []entry{{opID{1, 2}, 3}}, stock: 5}).encode())
	f.Add(byte(kindClaim), (&value{kind: kindClaim, seq: 1, win: []entry{{opID{1, 2}, 0}}, owner: "x"}).encode())
	f.Fuzz(func(t *testing.T, kind byte, b []byte) {
		v, err := decodeValue(kind, b)
		if err != nil {
			return
		}
		if len(v.win) > window || uint64(len(v.win)) > v.seq || v.stock < 0 {
			t.Fatalf("accepted %+v", v)
		}
		w, err := decodeValue(kind, v.encode())
		if err != nil || w.seq != v.seq || w.owner != v.owner || w.stock != v.stock {
			t.Fatalf("re-encoding %+v: %+v, %v", v, w, err)
		}
	})
}
