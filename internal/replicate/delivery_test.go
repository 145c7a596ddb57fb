package replicate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"testing"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/crdt"
	"github.com/verge-edge/verge/internal/documents"
	"github.com/verge-edge/verge/internal/replicate/wire"
	"github.com/verge-edge/verge/internal/store"
)

// A replicator without a mesh: batches are built and delivered by hand, so
// the test controls order, duplication and loss.
func newBare(t *testing.T, self string, n *verge.Network, m *verge.Manifest, replica crdt.ReplicaID) *Replicator {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{Origin: self + ".1", NoSync: true, MaxValueBytes: documents.StoreValueBytes(documents.DefaultMaxDocBytes)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	d := documents.New(st, documents.Options{Replica: replica})
	d.SetApp(m)
	r := &Replicator{opts: Options{Self: self, Network: n, Store: st, Docs: d, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))}, st: st, origin: st.Origin(), peers: map[string]*peerLink{}}
	r.ctx = context.Background()
	return r
}

// batchFor builds what r's sender would send peer for its log after seq.
func batchFor(t *testing.T, r *Replicator, peer string, after uint64) []byte {
	t.Helper()
	entries, err := r.st.LogSince(r.origin, after, maxBatchEntries)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) == 0 {
		return nil
	}
	b := &wire.Batch{Origin: r.origin, From: after + 1, To: after}
	r.coalesce(peer, b, entries)
	return b.Encode()
}

const deliveryManifest = `
name = "shop"
[[function]]
name = "f"
module = "f.wasm"
executor = "verge"
routes = ["/*"]
[[collection]]
name = "hot"
scope = "global"
`

// Three PoPs write concurrently; every batch any of them ever built is
// delivered to every other in random order, with duplicates, and lost ones
// resent from the receiver's watermark as the sender does. All replicas end
// byte-for-byte equal.
func TestConvergesUnderReorderAndDuplicates(t *testing.T) {
	t.Parallel()
	m, err := verge.ParseManifest("verge.toml", []byte(deliveryManifest))
	if err != nil {
		t.Fatal(err)
	}
	n := &verge.Network{PoPs: []verge.PoP{{ID: "a", Number: 1, Central: true}, {ID: "b", Number: 2}, {ID: "c", Number: 3}}}
	for seed := uint64(1); seed <= 5; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 99))
			ids := []string{"a", "b", "c"}
			rs := map[string]*Replicator{}
			for i, id := range ids {
				rs[id] = newBare(t, id, n, m, crdt.ReplicaID(i+1)<<16|1)
			}
			type msg struct {
				from, to string
				data     []byte
			}
			var sent []msg
			cursor := map[[2]string]uint64{} // (from, to) → last seq batched
			ctx := context.Background()
			for round := 0; round < 40; round++ {
				// A few writes at random PoPs: counters and registers on few docs.
				for range 1 + rng.IntN(5) {
					id := ids[rng.IntN(3)]
					doc := fmt.Sprintf("d%d", rng.IntN(4))
					var op crdt.Op
					if rng.IntN(2) == 0 {
						op = crdt.Op{Op: "increment", Path: "n", Value: json.RawMessage(fmt.Sprint(1 + rng.IntN(3)))}
					} else {
						op = crdt.Op{Op: "set", Path: "k" + fmt.Sprint(rng.IntN(3)), Value: json.RawMessage(fmt.Sprint(rng.IntN(100)))}
					}
					if _, err := rs[id].opts.Docs.Update(ctx, "shop", "hot", doc, []crdt.Op{op}); err != nil {
						t.Fatal(err)
					}
				}
				// A window passes at one random PoP: it batches for everyone.
				from := ids[rng.IntN(3)]
				for _, to := range ids {
					if to == from {
						continue
					}
					if b := batchFor(t, rs[from], to, cursor[[2]string{from, to}]); b != nil {
						d, _ := wire.DecodeBatch(b)
						cursor[[2]string{from, to}] = d.To
						sent = append(sent, msg{from, to, b})
					}
				}
				// Deliver a random subset of everything ever sent, duplicates included.
				for range rng.IntN(4) {
					if len(sent) == 0 {
						break
					}
					mm := sent[rng.IntN(len(sent))]
					if _, err := rs[mm.to].handleBatch(context.Background(), mm.from, mm.data); err != nil {
						t.Fatal(err)
					}
				}
			}
			// Eventual delivery: resend from every receiver's watermark until none is behind.
			for pass := 0; pass < 10; pass++ {
				behind := false
				for _, from := range ids {
					for _, to := range ids {
						if from == to {
							continue
						}
						wm := rs[to].st.Seqs()[rs[from].origin]
						if b := batchFor(t, rs[from], to, wm); b != nil {
							behind = true
							out, err := rs[to].handleBatch(context.Background(), from, b)
							if err != nil {
								t.Fatal(err)
							}
							if a, _ := wire.DecodeAck(out); a.Gap {
								t.Fatalf("a batch from the watermark was refused for a gap")
							}
						}
					}
				}
				if !behind {
					break
				}
			}
			for d := range 4 {
				k := store.Key{App: "shop", Collection: "hot", Doc: fmt.Sprintf("d%d", d)}
				want, _, _ := rs["a"].st.Get(k)
				for _, id := range ids[1:] {
					got, _, _ := rs[id].st.Get(k)
					if !bytes.Equal(got, want) {
						ja, _, _ := rs["a"].opts.Docs.Get("shop", "hot", k.Doc)
						jb, _, _ := rs[id].opts.Docs.Get("shop", "hot", k.Doc)
						t.Fatalf("%s differs at %s: a %s, %s %s", k.Doc, id, ja, id, jb)
					}
				}
			}
		})
	}
}

// Malformed and misattributed batches are refused with an error, not a panic.
func TestBatchFromWrongPeerOrCorrupt(t *testing.T) {
	t.Parallel()
	m, _ := verge.ParseManifest("verge.toml", []byte(deliveryManifest))
	n := &verge.Network{PoPs: []verge.PoP{{ID: "a", Number: 1, Central: true}, {ID: "b", Number: 2}}}
	a := newBare(t, "a", n, m, 1<<16|1)
	b := newBare(t, "b", n, m, 2<<16|1)
	if _, err := a.opts.Docs.Update(context.Background(), "shop", "hot", "x", []crdt.Op{{Op: "increment", Path: "n", Value: json.RawMessage("1")}}); err != nil {
		t.Fatal(err)
	}
	msg := batchFor(t, a, "b", 0)
	if _, err := b.handleBatch(context.Background(), "c", msg); err == nil {
		t.Fatal("b accepted a's log from another PoP")
	}
	for i := range msg {
		bad := bytes.Clone(msg)
		bad[i] ^= 0x01
		if _, err := b.handleBatch(context.Background(), "a", bad); err == nil {
			t.Fatalf("a batch with byte %d flipped was accepted", i)
		}
		if _, err := wire.DecodeBatch(msg[:i]); err == nil {
			t.Fatalf("a batch truncated to %d bytes decoded", i)
		}
	}
	if got, _, _ := b.opts.Docs.Get("shop", "hot", "x"); got != nil {
		t.Fatalf("a damaged batch left %s", got)
	}
}
