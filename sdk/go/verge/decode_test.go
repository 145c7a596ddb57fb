package verge

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// targets are what the differential tests decode into, each made afresh per
// input: every shape decodeFast knows, empty and already holding values
// (encoding/json adds to a map it is given), and one it does not know.
var targets = []struct {
	name string
	new  func() any
}{
	{"map-int64-nil", func() any { return new(map[string]int64) }},
	{"map-int64-empty", func() any { m := map[string]int64{}; return &m }},
	{"map-int64-full", func() any { m := map[string]int64{"a": 7, "keep": 1}; return &m }},
	{"map-int-nil", func() any { return new(map[string]int) }},
	{"map-float64-nil", func() any { return new(map[string]float64) }},
	{"map-float64-full", func() any { m := map[string]float64{"a": 1.5}; return &m }},
	{"map-string-nil", func() any { return new(map[string]string) }},
	{"map-string-full", func() any { m := map[string]string{"a": "x"}; return &m }},
	{"map-bool-nil", func() any { return new(map[string]bool) }},
	{"map-any-nil", func() any { return new(map[string]any) }},
	{"map-any-full", func() any { m := map[string]any{"a": "x", "n": 1.0}; return &m }},
	{"any-nil", func() any { return new(any) }},
	{"any-int", func() any { var x any = 5; return &x }},
	{"any-ptr", func() any { var x any = &map[string]int64{"z": 1}; return &x }},
	{"raw-nil", func() any { return new(json.RawMessage) }},
	{"raw-full", func() any { r := json.RawMessage(`{"old":1}`); return &r }},
	{"nil-map-pointer", func() any { return (*map[string]int64)(nil) }},
	{"nil-any-pointer", func() any { return (*any)(nil) }},
	{"nil-raw-pointer", func() any { return (*json.RawMessage)(nil) }},
	{"struct", func() any { return &struct{ Cart int64 }{} }},
}

var corpus = []string{
	`{}`, ` {} `, "\t{\n}\r\n", `{"a":1}`, `{"a":1,"b":-2,"c":0}`, `{"a":-0}`,
	`{"apple":3,"pear":12}`, `{"a":1,"a":2}`, `{"a":"x","a":1}`,
	`{"a":9223372036854775807}`, `{"a":-9223372036854775808}`,
	`{"a":9223372036854775808}`, `{"a":-9223372036854775809}`, `{"a":99999999999999999999}`,
	`{"a":1.5}`, `{"a":1.0}`, `{"a":1e3}`, `{"a":1E+3}`, `{"a":-1.25e-7}`, `{"a":1e400}`, `{"a":1e-400}`,
	`{"a":01}`, `{"a":-}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":+1}`, `{"a":0x10}`, `{"a":1_000}`,
	`{"a":Infinity}`, `{"a":NaN}`,
	`{"a":"x"}`, `{"a":""}`, `{"a":"é☃𝄞"}`, `{"é":"x"}`, `{"a":"\"\\\/\b\f\n\r\t"}`,
	`{"a":"\u0041\u00e9\u2603\u0000"}`, `{"a":"\u003chtml\u003e \u0026"}`,
	`{"a":"\ud834\udd1e"}`, `{"a":"\ud834"}`, `{"a":"\udd1e x"}`, `{"a":"\u12"}`, `{"a":"\u12g4"}`, `{"a":"\x"}`,
	"{\"a\":\"\xff\"}", "{\"a\":\"\xe2\x98\"}", "{\"\xc0\x80\":1}", "{\"a\":\"\x01\"}", "{\"a\":\"tab\there\"}",
	"{\"a\":\"\u2028\u2029\"}", `{"a\u0062":1}`, `{"a":"x\\"}`, `{"a":"x`, `{"a`,
	`{"a":true,"b":false}`, `{"a":tru}`, `{"a":truex}`, `{"a":null}`, `{"a":nul}`,
	`{"a":[]}`, `{"a":[1,"x",true,null,{"b":[{}]}]}`, `{"a":[1,]}`, `{"a":[,1]}`, `{"a":[1 2]}`,
	`{"a":{"b":{"c":1}}}`, `{"a":{"b":1,}}`, `{"a":1,}`, `{,"a":1}`, `{"a" 1}`, `{"a":1 "b":2}`, `{a:1}`,
	`{"a":1}x`, `{"a":1}{}`, `{"a":1} ,`, `{"a":1`, `{`, `}`, ``, ` `, `null`, ` null `, `true`, `1`, `-0`,
	`"x"`, `[1,2]`, `[]`, `1e400`, `{"a":1}` + "\x00",
	strings.Repeat(`[`, 63) + strings.Repeat(`]`, 63), strings.Repeat(`[`, 64) + strings.Repeat(`]`, 64),
	strings.Repeat(`[`, 65) + strings.Repeat(`]`, 65), `{"a":` + strings.Repeat(`{"a":`, 70) + `1` + strings.Repeat(`}`, 71),
	strings.Repeat(`[`, 10001) + strings.Repeat(`]`, 10001),
}

// TestUnmarshalMatchesEncodingJSON: for every input and target, Get's
// decoding gives what encoding/json gives, value and error alike.
func TestUnmarshalMatchesEncodingJSON(t *testing.T) {
	for _, doc := range corpus {
		same(t, []byte(doc))
	}
}

func FuzzUnmarshal(f *testing.F) {
	for _, doc := range corpus {
		f.Add([]byte(doc))
	}
	f.Fuzz(func(t *testing.T, doc []byte) { same(t, doc) })
}

func same(t *testing.T, doc []byte) {
	t.Helper()
	for _, tg := range targets {
		want, got := tg.new(), tg.new()
		wantErr := json.Unmarshal(doc, want)
		gotErr := unmarshal(doc, got)
		if fmt.Sprintf("%T %v", wantErr, wantErr) != fmt.Sprintf("%T %v", gotErr, gotErr) {
			t.Errorf("%s %q: error %T %v, encoding/json gives %T %v", tg.name, doc, gotErr, gotErr, wantErr, wantErr)
		}
		// %#v tells -0 from 0 and a nil map from an empty one; DeepEqual
		// looks through pointers.
		if !reflect.DeepEqual(want, got) || fmt.Sprintf("%#v", deref(want)) != fmt.Sprintf("%#v", deref(got)) {
			t.Errorf("%s %q: decoded %#v, encoding/json gives %#v", tg.name, doc, deref(got), deref(want))
		}
	}
}

// deref shows what a target points to, sorted by fmt for maps.
func deref(v any) any {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer && !rv.IsNil() {
		return rv.Elem().Interface()
	}
	return v
}

// TestDecodeFastTakes: the shapes documents come in do take the fast path
// (the differential test alone would pass if they all fell back).
func TestDecodeFastTakes(t *testing.T) {
	for _, c := range []struct {
		doc    string
		target string
	}{
		{`{"apple":3,"pear":12}`, "map-int64-nil"},
		{`{"apple":3,"pear":12}`, "map-int64-empty"},
		{`{"apple":3,"pear":12}`, "map-int64-full"},
		{`{"a":-9223372036854775808,"b":9223372036854775807}`, "map-int64-nil"},
		{`{"a":1,"b":2}`, "map-int-nil"},
		{`{"a":1.5,"b":-2e3}`, "map-float64-nil"},
		{`{"name":"t\u00e9a \u003cb\u003e","x":"\"q\"\n"}`, "map-string-nil"},
		{`{"a":true,"b":false}`, "map-bool-nil"},
		{`{"a":[1,"x",true,null,{"b":[]}],"n":1.5}`, "map-any-nil"},
		{`{"a":[1,"x",true,null,{"b":[]}],"n":1.5}`, "any-nil"},
		{`{"a":1}`, "raw-full"},
	} {
		for _, tg := range targets {
			if tg.name == c.target && !decodeFast([]byte(c.doc), tg.new()) {
				t.Errorf("%s %s: took the slow path", c.target, c.doc)
			}
		}
	}
}

func BenchmarkUnmarshalCart(b *testing.B) {
	doc := []byte(`{"apple":1234,"banana":3,"cherry":12,"kiwi":1,"pear":99}`)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var m map[string]int64
			unmarshal(doc, &m)
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var m map[string]int64
			json.Unmarshal(doc, &m)
		}
	})
}
