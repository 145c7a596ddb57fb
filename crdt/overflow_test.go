package crdt

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"testing"
)

func jsonOf(t *testing.T, d *Doc) string {
	t.Helper()
	b, err := d.JSON()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func inc(path string, n int64) Op {
	return Op{Op: "increment", Path: path, Value: json.RawMessage(strconv.FormatInt(n, 10))}
}

// wantRefused applies ops and wants an error mentioning each of want, with
// the document unchanged.
func wantRefused(t *testing.T, d *Doc, r ReplicaID, ops []Op, want ...string) {
	t.Helper()
	before, ctx := jsonOf(t, d), d.Context()
	_, err := d.Apply(r, 100, ops...)
	if err == nil {
		t.Fatalf("%v applied: %s", ops, jsonOf(t, d))
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("error %q does not mention %q", err, w)
		}
	}
	if after := jsonOf(t, d); after != before {
		t.Fatalf("a refused increment changed the document: %s, was %s", after, before)
	}
	if !d.Context().Equal(ctx) {
		t.Fatal("a refused increment took an event")
	}
}

const outOfRange = "outside the 64-bit integer range -9223372036854775808..9223372036854775807"

// An increment that would take an integer past int64 is refused and changes
// nothing, in both directions, for explicit numbers and for implicit
// counters (increments of a missing key).
func TestIncrementOverflowRefused(t *testing.T) {
	t.Parallel()
	d := NewDoc()
	mustApply(t, d, 1, 1, Op{Op: "set", Path: "", Value: json.RawMessage(`{"max":9223372036854775807,"min":-9223372036854775808,"near":9223372036854775806}`)})
	wantRefused(t, d, 1, []Op{inc("max", 1)}, `op 0 (increment "max")`, "increment by 1 would make the number 9223372036854775808", outOfRange)
	wantRefused(t, d, 1, []Op{inc("min", -1)}, "increment by -1 would make the number -9223372036854775809", outOfRange)
	wantRefused(t, d, 1, []Op{inc("min", math.MinInt64)}, "-18446744073709551616")
	// atomic: the ops before the refused one are undone
	wantRefused(t, d, 1, []Op{{Op: "set", Path: "x", Value: json.RawMessage(`1`)}, inc("near", 1), inc("near", 1)}, `op 2 (increment "near")`)
	// up to the bounds exactly, and away from them, is fine
	mustApply(t, d, 2, 1, inc("near", 1), inc("max", -1), inc("max", 1), inc("min", math.MaxInt64), inc("min", math.MaxInt64))
	if got, want := jsonOf(t, d), `{"max":9223372036854775807,"min":9223372036854775806,"near":9223372036854775807}`; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	// the counter is exact although its net (2^64-2 for min) is not an
	// int64; the check is on the value, whichever replica adds
	wantRefused(t, d, 2, []Op{inc("min", 2)}, "9223372036854775808", outOfRange)

	// implicit counters: a missing key starts at 0
	mustApply(t, d, 3, 1, inc("a", math.MaxInt64), inc("b", math.MinInt64))
	wantRefused(t, d, 1, []Op{inc("a", 1)}, "9223372036854775808", outOfRange)
	wantRefused(t, d, 1, []Op{inc("b", -1)}, "-9223372036854775809", outOfRange)
	// an integer beyond int64 as the increment itself
	wantRefused(t, d, 1, []Op{{Op: "increment", Path: "a", Value: json.RawMessage(`9223372036854775808`)}},
		"increment needs an integer value from -9223372036854775808 to 9223372036854775807")
}

// Replicas' contributions that are each in range can add up past int64
// once merged. Merging never fails, wraps or panics for it: the value reads
// as the nearest float64 on every replica (a JSON integer beyond int64
// parses the same way), round-trips through the encoding, and local
// increments are refused until one brings the value back in range.
func TestIncrementOverflowByMerge(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		setup string // JSON root; "" for implicit counters
	}{
		{"explicit", `{"n":0}`},
		{"implicit", ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := NewDoc(), NewDoc()
			if tc.setup != "" {
				x := mustApply(t, a, 1, 1, Op{Op: "set", Path: "", Value: json.RawMessage(tc.setup)})
				if err := b.Merge(x); err != nil {
					t.Fatal(err)
				}
			}
			xa := mustApply(t, a, 2, 1, inc("n", 1<<62))
			xb := mustApply(t, b, 3, 2, inc("n", 1<<62))
			// each is in range; a's own +1 would be too, but not with b's
			if err := a.Merge(xb); err != nil {
				t.Fatal(err)
			}
			if err := b.Merge(xa); err != nil {
				t.Fatal(err)
			}
			// 2^63 as a float64, which encoding/json writes as the shortest
			// decimal that reads back as the same float64
			const over = `{"n":9223372036854776000}`
			for _, d := range []*Doc{a, b} {
				if got := jsonOf(t, d); got != over {
					t.Fatalf("merged: %s, want %s", got, over)
				}
				if v := d.Value().(map[string]any)["n"]; v != float64(1<<63) {
					t.Fatalf("merged value %T %v, want float64 2^63", v, v)
				}
				enc, _ := d.MarshalBinary()
				d2, err := DecodeDoc(enc)
				if err != nil || jsonOf(t, d2) != over {
					t.Fatalf("decoded: %v %s", err, jsonOf(t, d2))
				}
			}
			wantRefused(t, a, 1, []Op{inc("n", 1)}, "9223372036854775809", outOfRange)
			wantRefused(t, a, 1, []Op{inc("n", -0)}, "9223372036854775808", outOfRange)
			x := mustApply(t, a, 10, 1, inc("n", -1))
			if got := jsonOf(t, a); got != `{"n":9223372036854775807}` {
				t.Fatalf("back in range: %s", got)
			}
			if v := a.Value().(map[string]any)["n"]; v != int64(math.MaxInt64) {
				t.Fatalf("back in range: %T %v, want int64", v, v)
			}
			if err := b.Merge(x); err != nil {
				t.Fatal(err)
			}
			if jsonOf(t, a) != jsonOf(t, b) {
				t.Fatalf("replicas differ: %s vs %s", jsonOf(t, a), jsonOf(t, b))
			}
			// the sum of more replicas is exact too
			c := NewDoc()
			for _, d := range []*Doc{a, b} {
				if err := c.Merge(d.Snapshot()); err != nil {
					t.Fatal(err)
				}
			}
			y := mustApply(t, c, 20, 3, inc("n", -(1<<62)))
			if err := a.Merge(y); err != nil {
				t.Fatal(err)
			}
			if got := jsonOf(t, a); got != `{"n":4611686018427387903}` {
				t.Fatalf("three replicas: %s", got)
			}
		})
	}
}

// A replica's running totals of increments and of decrements only grow and
// must not wrap past 2^64-1 (the join keeps the larger), even when the value
// stays in range.
func TestIncrementReplicaTotalRefused(t *testing.T) {
	t.Parallel()
	d := NewDoc()
	mustApply(t, d, 1, 1, Op{Op: "set", Path: "n", Value: json.RawMessage(`0`)})
	mustApply(t, d, 2, 1, inc("n", math.MaxInt64), inc("n", -math.MaxInt64), inc("n", math.MaxInt64), inc("n", -math.MaxInt64))
	wantRefused(t, d, 1, []Op{inc("n", math.MaxInt64)}, "2^64-1")
	wantRefused(t, d, 1, []Op{inc("n", math.MinInt64+1)}, "2^64-1")
	mustApply(t, d, 3, 1, inc("n", 1), inc("n", -1)) // room for small ones
	// another replica has its own totals
	mustApply(t, d, 4, 2, inc("n", math.MaxInt64))
	// a set starts a new counter
	mustApply(t, d, 5, 1, Op{Op: "set", Path: "n", Value: json.RawMessage(`0`)}, inc("n", math.MaxInt64))
	if got := jsonOf(t, d); got != `{"n":9223372036854775807}` {
		t.Fatalf("got %s", got)
	}
	// a float keeps its float arithmetic
	mustApply(t, d, 6, 1, Op{Op: "set", Path: "f", Value: json.RawMessage(`0.5`)}, inc("f", math.MaxInt64), inc("f", math.MaxInt64))
	if v := d.Value().(map[string]any)["f"]; v != 0.5+2*float64(math.MaxInt64) {
		t.Fatalf("float counter: %v", v)
	}
}
