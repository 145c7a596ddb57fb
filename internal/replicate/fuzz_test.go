package replicate

import (
	"testing"

	"github.com/verge-edge/verge/internal/store"
)

// FuzzDecodeMessages: peers' bytes never panic a decoder, and what decodes
// re-encodes to the same bytes.
func FuzzDecodeMessages(f *testing.F) {
	f.Add((&batch{Origin: "sfo.1", From: 1, To: 3, Items: []store.BatchItem{{Key: store.Key{App: "a", Collection: "c", Doc: "d"}, Delta: []byte("Vd\x01")}}}).encode())
	f.Add((&batch{Origin: "x.2", From: 5, To: 9, Reset: true}).encode())
	f.Add(ack{Watermark: 7, Gap: true}.encode())
	f.Fuzz(func(t *testing.T, p []byte) {
		if b, err := decodeBatch(p); err == nil {
			if string(b.encode()) != string(p) {
				t.Fatalf("batch does not round-trip")
			}
		}
		decodeAck(p)
		decodeStates(p, "a", "c")
	})
}
