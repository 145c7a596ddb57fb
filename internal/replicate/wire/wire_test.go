package wire

import (
	"bytes"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	b := &Batch{Origin: "sfo.2", From: 3, To: 9, Reset: true, Items: []Item{{Key{"a", "c", "d"}, []byte("Vd\x01x")}, {Key{"", "c", "é"}, nil}}}
	got, err := DecodeBatch(b.Encode())
	if err != nil || got.Origin != b.Origin || got.From != 3 || got.To != 9 || !got.Reset || len(got.Items) != 2 ||
		got.Items[1].Key.Doc != "é" || !bytes.Equal(got.Items[0].Delta, []byte("Vd\x01x")) {
		t.Fatalf("batch round trip: %+v, %v", got, err)
	}
	a, err := DecodeAck(Ack{Watermark: 42, Gap: true}.Encode())
	if err != nil || a != (Ack{42, true}) {
		t.Fatalf("ack round trip: %+v, %v", a, err)
	}
	st, err := DecodeStates(EncodeStates([]State{{"k", []byte("s")}}))
	if err != nil || len(st) != 1 || st[0].Doc != "k" || string(st[0].State) != "s" {
		t.Fatalf("states round trip: %+v, %v", st, err)
	}
	// Every single-bit flip and every truncation of a batch is refused.
	msg := b.Encode()
	for i := range msg {
		bad := bytes.Clone(msg)
		bad[i] ^= 0x10
		if _, err := DecodeBatch(bad); err == nil {
			t.Fatalf("a batch with byte %d damaged decoded", i)
		}
		if _, err := DecodeBatch(msg[:i]); err == nil {
			t.Fatalf("a batch truncated to %d bytes decoded", i)
		}
	}
	if _, err := DecodeAck([]byte{Version + 1, 0, 0}); err == nil {
		t.Fatal("a message of a future version decoded")
	}
}

// FuzzDecode: peers' bytes never panic a decoder, and what decodes
// re-encodes to the same bytes.
func FuzzDecode(f *testing.F) {
	f.Add((&Batch{Origin: "sfo.1", From: 1, To: 3, Items: []Item{{Key: Key{"a", "c", "d"}, Delta: []byte("Vd\x01")}}}).Encode())
	f.Add((&Batch{Origin: "x.2", From: 5, To: 9, Reset: true}).Encode())
	f.Add(Ack{Watermark: 7, Gap: true}.Encode())
	f.Add(EncodeStates([]State{{"k", []byte("state")}}))
	f.Fuzz(func(t *testing.T, p []byte) {
		if b, err := DecodeBatch(p); err == nil && !bytes.Equal(b.Encode(), p) {
			t.Fatalf("batch does not round-trip")
		}
		if a, err := DecodeAck(p); err == nil && !bytes.Equal(a.Encode(), p) {
			t.Fatalf("ack does not round-trip")
		}
		if s, err := DecodeStates(p); err == nil && !bytes.Equal(EncodeStates(s), p) {
			t.Fatalf("states do not round-trip")
		}
	})
}
