package crdt

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the CPU time this process has used (all threads, GC included).
// The benchmark machine is shared, so wall-clock ns/op swings with other
// load; CPU time per op is the steadier figure and is reported next to it.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

const appendN = 100_000

var appendValues = func() [][]byte {
	v := make([][]byte, appendN)
	for i := range v {
		v[i] = strconv.AppendInt(nil, int64(i), 10)
	}
	return v
}()

// appendDoc appends 0..n-1 to "items", each in its own Apply.
func appendDoc(tb testing.TB, n int) *Doc {
	d := NewDoc()
	now := int64(1_700_000_000_000_000_000)
	if _, err := d.Apply(1, now, Op{Op: "set", Path: "items", Value: json.RawMessage("[]")}); err != nil {
		tb.Fatal(err)
	}
	for i := range n {
		if _, err := d.Apply(1, now+int64(i+1)*1000, Op{Op: "append", Path: "items", Value: appendValues[i]}); err != nil {
			tb.Fatal(err)
		}
	}
	return d
}

// BenchmarkAppend: 100,000 appends to one array, each its own Apply (and
// its own delta). Goal: >= 1,000,000 appends/s.
func BenchmarkAppend(b *testing.B) {
	b.ReportAllocs()
	var d *Doc
	cpu := cpuTime()
	for b.Loop() {
		d = appendDoc(b, appendN)
	}
	cpu = cpuTime() - cpu
	b.ReportMetric(float64(appendN)*float64(b.N)/b.Elapsed().Seconds(), "appends/s")
	b.ReportMetric(float64(appendN)*float64(b.N)/cpu.Seconds(), "appends/cpu-s")
	enc, _ := d.MarshalBinary()
	b.ReportMetric(float64(len(enc)), "encoded-B")
}

// TestAppendEncodedSize pins the encoded size of the 100,000-append array
// (goal <= 200,000 B) and checks it decodes to the same document.
func TestAppendEncodedSize(t *testing.T) {
	t.Parallel()
	d := appendDoc(t, appendN)
	enc, err := d.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(enc) > 200_000 {
		t.Fatalf("encoded size %d B, goal <= 200000", len(enc))
	}
	d2, err := DecodeDoc(enc)
	if err != nil {
		t.Fatal(err)
	}
	arr := d2.Value().(map[string]any)["items"].([]any)
	if len(arr) != appendN || arr[appendN-1] != int64(appendN-1) || arr[4242] != int64(4242) {
		t.Fatalf("decoded array wrong: len %d", len(arr))
	}
	t.Logf("100,000 appends: %d B encoded", len(enc))
}

// diverged builds two replicas of a 1,000-item array that then each make
// 10,000 single-item changes (60% insert at a random index, 20% remove,
// 20% overwrite an element), returning both and their deltas.
func diverged(tb testing.TB, seed uint64) (a, b *Doc, da, db []*Delta) {
	base := NewDoc()
	items := make([]string, 1000)
	for i := range items {
		items[i] = strconv.Itoa(i)
	}
	x := mustApply(tb, base, 1, 1, Op{Op: "set", Path: "l", Value: json.RawMessage("[" + joinComma(items) + "]")})
	a, b = NewDoc(), NewDoc()
	if err := a.Merge(x); err != nil {
		tb.Fatal(err)
	}
	if err := b.Merge(x); err != nil {
		tb.Fatal(err)
	}
	change := func(d *Doc, r ReplicaID, rng *rand.Rand) []*Delta {
		out := make([]*Delta, 0, 10_000)
		for k := range 10_000 {
			l := d.root.get("l").val.(*list)
			var op Op
			v := json.RawMessage(strconv.Itoa(int(r)*100000 + k))
			switch p := rng.IntN(10); {
			case p < 6 || l.visible() == 0:
				i := rng.IntN(l.visible() + 1)
				op = Op{Op: "insert", Path: "l", Index: &i, Value: v}
			case p < 8:
				op = Op{Op: "remove", Path: "l." + strconv.Itoa(rng.IntN(l.visible()))}
			default:
				op = Op{Op: "set", Path: "l." + strconv.Itoa(rng.IntN(l.visible())), Value: v}
			}
			out = append(out, mustApply(tb, d, int64(10+k), r, op))
		}
		return out
	}
	da = change(a, 2, rand.New(rand.NewPCG(seed, 1)))
	db = change(b, 3, rand.New(rand.NewPCG(seed, 2)))
	return a, b, da, db
}

func joinComma(s []string) string {
	out := make([]byte, 0, len(s)*5)
	for i, x := range s {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, x...)
	}
	return string(out)
}

func cloneDoc(tb testing.TB, d *Doc) *Doc {
	b, _ := d.MarshalBinary()
	c, err := DecodeDoc(b)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// BenchmarkMergeDiverged: two replicas of a 1,000-item array diverged by
// 10,000 single-item changes each; merge both ways. Goal: <= 10 ms.
func BenchmarkMergeDiverged(b *testing.B) {
	a0, b0, da, db := diverged(b, 1)
	sa, _ := a0.Snapshot().MarshalBinary()
	sb, _ := b0.Snapshot().MarshalBinary()
	b.Run("snapshots", func(bb *testing.B) {
		// decode + join of the other side's whole state, both ways
		var cpu time.Duration
		for bb.Loop() {
			bb.StopTimer()
			a, b := cloneDoc(bb, a0), cloneDoc(bb, b0)
			bb.StartTimer()
			c0 := cpuTime()
			xb, err := DecodeDelta(sb)
			if err != nil {
				bb.Fatal(err)
			}
			xa, err := DecodeDelta(sa)
			if err != nil {
				bb.Fatal(err)
			}
			if err := a.Merge(xb); err != nil {
				bb.Fatal(err)
			}
			if err := b.Merge(xa); err != nil {
				bb.Fatal(err)
			}
			cpu += cpuTime() - c0
		}
		bb.ReportMetric(float64(len(sa)+len(sb)), "wire-B")
		bb.ReportMetric(float64(cpu.Nanoseconds())/float64(bb.N), "cpu-ns/op")
	})
	b.Run("deltas", func(bb *testing.B) {
		// the 2 x 10,000 deltas, one Merge each, both ways
		var cpu time.Duration
		for bb.Loop() {
			bb.StopTimer()
			a, b := cloneDoc(bb, a0), cloneDoc(bb, b0)
			bb.StartTimer()
			c0 := cpuTime()
			for _, x := range db {
				if err := a.Merge(x); err != nil {
					bb.Fatal(err)
				}
			}
			for _, x := range da {
				if err := b.Merge(x); err != nil {
					bb.Fatal(err)
				}
			}
			cpu += cpuTime() - c0
		}
		bb.ReportMetric(float64(cpu.Nanoseconds())/float64(bb.N), "cpu-ns/op")
	})
}

func TestMergeDivergedConverges(t *testing.T) {
	t.Parallel()
	a, b, da, db := diverged(t, 7)
	a2, b2 := cloneDoc(t, a), cloneDoc(t, b)
	for _, x := range db {
		if err := a.Merge(x); err != nil {
			t.Fatal(err)
		}
	}
	for _, x := range da {
		if err := b.Merge(x); err != nil {
			t.Fatal(err)
		}
	}
	if err := a2.Merge(b2.Snapshot()); err != nil {
		t.Fatal(err)
	}
	encA, _ := a.MarshalBinary()
	encB, _ := b.MarshalBinary()
	encA2, _ := a2.MarshalBinary()
	if string(encA) != string(encB) || string(encA) != string(encA2) {
		t.Fatal("merging deltas and merging snapshots do not agree")
	}
}

// cartDoc builds the small cart of the memory goal: three items appended one
// by one, and a counter incremented three times. With skus, the items are
// plain strings instead of {"sku","qty"} objects.
func cartDoc(tb testing.TB, i int, skus bool) *Doc {
	d := NewDoc()
	now := int64(1_700_000_000_000_000_000 + i)
	mustApply(tb, d, now, 1, Op{Op: "set", Path: "items", Value: json.RawMessage("[]")})
	for k := range 3 {
		item := fmt.Sprintf(`{"sku":"sku-%d","qty":%d}`, 1000+k, 1+k)
		if skus {
			item = fmt.Sprintf(`"sku-%d"`, 1000+k)
		}
		mustApply(tb, d, now+int64(k)+1, 1, Op{Op: "append", Path: "items", Value: json.RawMessage(item)})
	}
	for k := range 3 {
		mustApply(tb, d, now+int64(k)+10, 1, Op{Op: "increment", Path: "count", Value: json.RawMessage("1")})
	}
	return d
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkCartMemory reports live heap bytes per small cart document,
// measured over 100,000 documents with runtime.MemStats. Goal: <= 1 KB.
func BenchmarkCartMemory(b *testing.B) {
	for _, shape := range []struct {
		name string
		skus bool
	}{{"items=objects", false}, {"items=strings", true}} {
		b.Run(shape.name, func(b *testing.B) {
			const n = 100_000
			var perDoc, encPerDoc float64
			for b.Loop() {
				before := heapInUse()
				docs := make([]*Doc, n)
				for i := range docs {
					docs[i] = cartDoc(b, i, shape.skus)
				}
				after := heapInUse()
				perDoc = float64(after-before) / n
				enc, _ := docs[0].MarshalBinary()
				encPerDoc = float64(len(enc))
				runtime.KeepAlive(docs)
			}
			b.ReportMetric(perDoc, "heap-B/doc")
			b.ReportMetric(encPerDoc, "encoded-B/doc")
		})
	}
}
