package crdt

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCheckJSONText(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{
		`{}`, `{"a":"é","ü":["\u00e9","x"]}`, `"\ud83d\ude00"`, `"\uD83D\uDE00"`, `"😀"`,
		`"\\ud800"`,        // an escaped backslash, then the text ud800
		`"\\\\ud800"`,      // two of them
		`"\"\ud83d\ude00"`, // an escaped quote does not end the string
		`"\ufffd"`, "\"\xef\xbf\xbd\"",
		`"\u12"`, `"x\u"`, // malformed escapes are the parser's to report
		`ud800`, // not in a string (and not JSON)
		`"a" "\\" "\ud800\udfff"`,
	} {
		if err := CheckJSONText([]byte(ok)); err != nil {
			t.Errorf("CheckJSONText(%s): %v", ok, err)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"\"\xff\"", "invalid JSON text: not valid UTF-8 at byte 1"},
		{"{\"k\xe9y\":1}", "not valid UTF-8 at byte 3"},   // Latin-1 in a key
		{"\"\xc3\"", "not valid UTF-8 at byte 1"},         // truncated sequence
		{"\"\xc0\xaf\"", "not valid UTF-8 at byte 1"},     // overlong
		{"\"\xed\xa0\x80\"", "not valid UTF-8 at byte 1"}, // a surrogate encoded in UTF-8
		{"[1, \xff]", "not valid UTF-8 at byte 4"},        // outside strings too
		{`"\ud800"`, `invalid JSON text: \ud800 at byte 1 is a lone UTF-16 surrogate`},
		{`"ab\uDBFFx"`, `\uDBFF at byte 3 is a lone UTF-16 surrogate`},
		{`"\ud800\u0041"`, `\ud800 at byte 1`},
		{`"\ud800\ud800\udc00"`, `\ud800 at byte 1`},
		{`"\ud800\\udc00"`, `\ud800 at byte 1`}, // the "low" is literal text
		{`"\udc00"`, `\udc00 at byte 1 is a lone UTF-16 surrogate`},
		{`"\ud83d\ude00\udfff"`, `\udfff at byte 13`},
		{`{"\udfff":1}`, `\udfff at byte 2`},
		{`"\\\ud800"`, `\ud800 at byte 3`}, // an escaped backslash, then an escape
		{`"\ud800`, `\ud800 at byte 1`},
	} {
		err := CheckJSONText([]byte(c.in))
		if !errors.Is(err, ErrInvalidText) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("CheckJSONText(%q): %v, want ErrInvalidText mentioning %q", c.in, err, c.want)
		}
	}
}

// Apply refuses what encoding/json would silently replace by U+FFFD, in
// values and in their keys, and a path that is not valid UTF-8; nothing
// changes.
func TestApplyRefusesInvalidText(t *testing.T) {
	t.Parallel()
	d := NewDoc()
	mustApply(t, d, 1, 1, Op{Op: "set", Path: "", Value: json.RawMessage(`{"l":[],"o":{}}`)})
	for _, c := range []struct {
		op   Op
		want string
	}{
		{Op{Op: "set", Path: "s", Value: json.RawMessage("\"caf\xe9\"")}, `op 1 (set "s"): value is invalid JSON text: not valid UTF-8 at byte 4`},
		{Op{Op: "set", Path: "s", Value: json.RawMessage(`"\ud800"`)}, `op 1 (set "s"): value is invalid JSON text: \ud800 at byte 1 is a lone UTF-16 surrogate`},
		{Op{Op: "set", Path: "o", Value: json.RawMessage(`{"ok":1,"\udc00":2}`)}, `\udc00 at byte 9`},
		{Op{Op: "append", Path: "l", Value: json.RawMessage("{\"\xff\":1}")}, `op 1 (append "l"): value is invalid JSON text: not valid UTF-8 at byte 2`},
		{Op{Op: "set", Path: "", Value: json.RawMessage(`{"a":"\ud800x"}`)}, `\ud800 at byte 6`},
		{Op{Op: "set", Path: "o.k\xff", Value: json.RawMessage(`1`)}, `op 1 (set "o.k\xff"): path is not valid UTF-8`},
		{Op{Op: "increment", Path: "\xc3", Value: json.RawMessage(`1`)}, `path is not valid UTF-8`},
	} {
		before := jsonOf(t, d)
		_, err := d.Apply(2, 2, Op{Op: "set", Path: "x", Value: json.RawMessage(`1`)}, c.op)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q %q %s: err %v, want it to mention %q", c.op.Op, c.op.Path, c.op.Value, err, c.want)
		}
		if after := jsonOf(t, d); after != before {
			t.Fatalf("a refused op changed the document: %s", after)
		}
	}
	// the valid forms of the same are fine
	mustApply(t, d, 3, 1,
		Op{Op: "set", Path: "s", Value: json.RawMessage(`"café \ud83d\ude00 \u00e9"`)},
		Op{Op: "set", Path: "o.ké", Value: json.RawMessage(`{"😀":"\\ud800"}`)})
	if got, want := jsonOf(t, d), `{"l":[],"o":{"ké":{"😀":"\\ud800"}},"s":"café 😀 é"}`; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

// FuzzCheckJSONText compares CheckJSONText, on valid JSON, with what
// encoding/json does: it accepts exactly the texts that are valid UTF-8 and
// that encoding/json decodes without adding a U+FFFD of its own.
func FuzzCheckJSONText(f *testing.F) {
	for _, s := range []string{
		`{"a":"\ud83d\ude00"}`, `"\ud800"`, `"\\ud800"`, `["\udc00", "x"]`, "\"\xff\"", `{"\ud800\udc00":"\ufffd"}`,
		"\"\xef\xbf\xbd\"", `"\\\ud800\udc00"`, `"\ud800\ud800\udc00"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := CheckJSONText(b)
		if err != nil && !errors.Is(err, ErrInvalidText) {
			t.Fatalf("error %v is not ErrInvalidText", err)
		}
		if !utf8.Valid(b) {
			if err == nil {
				t.Fatalf("%q is not valid UTF-8 and was accepted", b)
			}
			return
		}
		if !json.Valid(b) {
			return
		}
		// U+FFFD the text asks for: as UTF-8, or escaped (a backslash that
		// is not itself escaped: valid JSON has backslashes only in strings)
		want := bytes.Count(b, []byte("\uFFFD"))
		for i := 0; i+6 <= len(b); i++ {
			if b[i] == '\\' && strings.EqualFold(string(b[i+1:i+6]), "ufffd") {
				n := 0
				for j := i - 1; j >= 0 && b[j] == '\\'; j-- {
					n++
				}
				if n%2 == 0 {
					want++
				}
			}
		}
		got := 0
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		for {
			tok, terr := dec.Token()
			if terr == io.EOF {
				break
			}
			if terr != nil {
				return
			}
			if s, ok := tok.(string); ok {
				got += strings.Count(s, "\uFFFD")
			}
		}
		if lossy := got != want; lossy != (err != nil) {
			t.Fatalf("%q: encoding/json yields %d U+FFFD for %d in the text; CheckJSONText: %v", b, got, want, err)
		}
	})
}
