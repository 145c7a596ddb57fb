package store

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// adversarialName draws names made of the bytes that break naive encodings:
// separators, NUL, 0xff and small values that look like length prefixes.
func adversarialName(r *rand.Rand) string {
	alphabet := []byte{0, 1, 2, 3, '/', ':', 'a', 'b', 0xfe, 0xff}
	b := make([]byte, r.IntN(6))
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}

func TestKeyEncodingIsPrefixFree(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(7, 7))
	for range 20000 {
		a1, c1, a2, c2 := adversarialName(r), adversarialName(r), adversarialName(r), adversarialName(r)
		if a1 == a2 && c1 == c2 {
			continue
		}
		doc := "d" + adversarialName(r)
		if bytes.HasPrefix(docKey(Key{a2, c2, doc}), collPrefix(a1, c1)) {
			t.Fatalf("(%q, %q) prefix covers document %q of (%q, %q)", a1, c1, doc, a2, c2)
		}
		k := Key{a1, c1, doc}
		if got, ok := parseDocKey(docKey(k)); !ok || got != k {
			t.Fatalf("parseDocKey(docKey(%v)) = %v, %v", k, got, ok)
		}
		seq := r.Uint64()
		if o, s, ok := parseLogKey(logKey(a1+"x", seq)); !ok || o != a1+"x" || s != seq {
			t.Fatalf("parseLogKey round trip: %q %d %v", o, s, ok)
		}
		p := appendEntryPayload(nil, k, []byte(c2))
		if gk, gd, err := parseEntryPayload(nil, p); err != nil || gk != k || string(gd) != c2 {
			t.Fatalf("entry payload round trip: %v %q %v", gk, gd, err)
		}
	}
}

func TestFrameDetectsEveryBitFlip(t *testing.T) {
	t.Parallel()
	key := docKey(Key{"app", "c", "doc"})
	v := appendFrame(nil, key, []byte(`{"items":[1,2,3]}`))
	if p, err := unframe(key, v); err != nil || string(p) != `{"items":[1,2,3]}` {
		t.Fatalf("unframe = %q, %v", p, err)
	}
	for i := range len(v) * 8 {
		w := bytes.Clone(v)
		w[i/8] ^= 1 << (i % 8)
		if _, err := unframe(key, w); err == nil {
			t.Fatalf("flipping bit %d went unnoticed", i)
		}
	}
	if _, err := unframe(docKey(Key{"app", "c", "dod"}), v); err == nil {
		t.Fatal("a value under another key went unnoticed")
	}
}

// Bytes read from disk are untrusted: decoding them must never panic.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{})
	f.Add(docKey(Key{"a", "b", "c"}))
	f.Add(logKey("o", 7))
	f.Add([]byte{tagDoc, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add(appendEntryPayload(nil, Key{"a", "b", "c"}, []byte("d")))
	f.Fuzz(func(t *testing.T, b []byte) {
		parseDocKey(b)
		parseLogKey(b)
		parseOriginKey(b, tagSeq)
		describeKey(b)
		unframe(b, b)
		parseEntryPayload(b, b)
	})
}
