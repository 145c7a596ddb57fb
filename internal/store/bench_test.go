package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// setFn overwrites the state with val and logs val as the delta: the shape
// of a small CRDT update, whose delta is about the size of what changed.
func setFn(val []byte) func([]byte) ([]byte, []byte, error) {
	return func([]byte) ([]byte, []byte, error) { return val, val, nil }
}

// smallDoc returns a ~100-byte JSON document with random content, so that
// block compression does not flatter the on-disk figures.
func smallDoc(r *rand.Rand) []byte {
	return fmt.Appendf(nil, `{"user":"u%08x","items":[{"id":"p%08x","qty":%d},{"id":"p%08x","qty":%d}],"views":%d}`,
		r.Uint32(), r.Uint32(), r.IntN(9), r.Uint32(), r.IntN(9), r.IntN(100000))
}

// benchWriters runs b.N Updates from c goroutines and reports updates/s.
// hot: all writers update one document; otherwise each update picks one of
// 10,000 documents.
func benchWriters(b *testing.B, opts Options, c int, hot bool) {
	s := openTest(b, b.TempDir(), opts)
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range c {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			val := smallDoc(r)
			for next.Add(1) <= int64(b.N) {
				doc := "hot"
				if !hot {
					doc = fmt.Sprintf("doc%05d", r.IntN(10000))
				}
				if _, err := s.Update(ctx, Key{"app", "c", doc}, setFn(val)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "updates/s")
	st := s.Stats()
	b.ReportMetric(float64(st.Writes)/float64(st.Commits), "writes/commit")
	b.ReportMetric(float64(st.CommitTime.Microseconds())/float64(st.Commits), "µs/commit")
}

// Durable (fsync-acknowledged) updates/s with 1 and 32 concurrent writers.
// The ratio between the two is what group commit buys.
func BenchmarkUpdateDurable(b *testing.B) {
	for _, c := range []int{1, 32} {
		b.Run(fmt.Sprintf("writers=%d", c), func(b *testing.B) { benchWriters(b, Options{}, c, false) })
	}
	b.Run("writers=32/one-document", func(b *testing.B) { benchWriters(b, Options{}, 32, true) })
}

// Update latency without fsync (NoSync), one writer: the cost of the store's
// own path (lock, read, frame, group hand-off, Pebble apply).
func BenchmarkUpdateNoSyncLatency(b *testing.B) {
	s := openTest(b, b.TempDir(), Options{Origin: "pop-a", NoSync: true})
	ctx := context.Background()
	r := rand.New(rand.NewPCG(1, 2))
	val := smallDoc(r)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		k := Key{"app", "c", fmt.Sprintf("doc%05d", r.IntN(10000))}
		t0 := time.Now()
		if _, err := s.Update(ctx, k, setFn(val)); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}

// Gets/s of small documents, from all cores (GOMAXPROCS goroutines).
// durable: a normal store, reads go through the durable snapshot; nosync: a
// NoSync store, reads go to Pebble's latest state (the cost of the snapshot
// is the difference).
func BenchmarkGet(b *testing.B) {
	for _, noSync := range []bool{false, true} {
		name := "durable"
		if noSync {
			name = "nosync"
		}
		b.Run(name, func(b *testing.B) { benchGet(b, noSync) })
	}
}

func benchGet(b *testing.B, noSync bool) {
	dir := b.TempDir()
	s := openTest(b, dir, Options{Origin: "pop-a", NoSync: true}) // fast fill
	ctx := context.Background()
	r := rand.New(rand.NewPCG(1, 2))
	const n = 10000
	for i := range n {
		if _, err := s.Update(ctx, Key{"app", "c", fmt.Sprintf("doc%05d", i)}, setFn(smallDoc(r))); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	s = openTest(b, dir, Options{Origin: "pop-a", NoSync: noSync})
	var seed atomic.Uint64
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(seed.Add(1), 3))
		for pb.Next() {
			if _, ok, err := s.Get(Key{"app", "c", fmt.Sprintf("doc%05d", r.IntN(n))}); err != nil || !ok {
				b.Fatalf("Get: %v %v", ok, err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "gets/s")
}

// Bytes on disk per small (~100 B) document for 100,000 documents, after
// the memtable is flushed and the LSM compacted: with the delta log still
// holding one entry per document, and after the log is truncated (what a
// PoP holds once its peers acknowledged everything).
func BenchmarkBytesOnDisk(b *testing.B) {
	const n = 100_000
	dir := b.TempDir()
	s := openTest(b, dir, Options{Origin: "pop-a", NoSync: true})
	ctx := context.Background()
	r := rand.New(rand.NewPCG(1, 2))
	var raw int
	for i := range n {
		val := smallDoc(r)
		raw += len(val)
		if _, err := s.Update(ctx, Key{"app", "carts", fmt.Sprintf("user-%06d", i)}, setFn(val)); err != nil {
			b.Fatal(err)
		}
	}
	settle := func() float64 {
		if err := s.db.Compact(ctx, []byte{0}, []byte{0xff}, true); err != nil {
			b.Fatal(err)
		}
		// Live sstables and blob files only: Pebble deletes obsolete files
		// in the background, so listing the directory would count them.
		total, err := s.db.EstimateDiskUsage([]byte{0}, []byte{0xff})
		if err != nil {
			b.Fatal(err)
		}
		return float64(total) / n
	}
	b.ReportMetric(float64(raw)/n, "doc-bytes")
	b.ReportMetric(settle(), "disk-bytes/doc-with-log")
	if err := s.TruncateLog(ctx, "pop-a", n); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(settle(), "disk-bytes/doc")
}
