package documents

import (
	"context"
	"fmt"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verge-edge/verge/crdt"
)

// BenchmarkUpdate is one increment of a small document, in process.
// NoSync measures the service's own cost (decode, apply, encode, store
// batch); Sync adds waiting for the fsync of a lone writer.
func BenchmarkUpdate(b *testing.B) {
	for _, noSync := range []bool{true, false} {
		name := "Sync"
		if noSync {
			name = "NoSync"
		}
		b.Run(name, func(b *testing.B) {
			s := open(b, testOptions{NoSync: noSync}, manifest("shop", "stats"))
			ctx := context.Background()
			if _, err := s.Put(ctx, "shop", "stats", "views", []byte(`{"n":0,"name":"home page","tags":["a","b"]}`)); err != nil {
				b.Fatal(err)
			}
			ops := []crdt.Op{op("increment", "n", "1")}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				if _, err := s.Update(ctx, "shop", "stats", "views", ops); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			reportLatency(b, lat)
		})
	}
}

// BenchmarkUpdateParallel is durable increments from 32 writers, spread over
// 32 documents ("Docs") or all on one ("OneDoc"): group commit shares fsyncs.
func BenchmarkUpdateParallel(b *testing.B) {
	for _, oneDoc := range []bool{false, true} {
		name := "Docs"
		if oneDoc {
			name = "OneDoc"
		}
		b.Run(name, func(b *testing.B) {
			s := open(b, testOptions{}, manifest("shop", "stats"))
			ctx := context.Background()
			ops := []crdt.Op{op("increment", "n", "1")}
			var next atomic.Int64
			b.SetParallelism(32)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				key := "views"
				if !oneDoc {
					key = fmt.Sprint("doc", next.Add(1))
				}
				for pb.Next() {
					if _, err := s.Update(ctx, "shop", "stats", key, ops); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			st := s.st.Stats()
			if st.Commits > 0 {
				b.ReportMetric(float64(st.Writes)/float64(st.Commits), "writes/fsync")
			}
		})
	}
}

func BenchmarkGet(b *testing.B) {
	s := open(b, testOptions{NoSync: true}, manifest("shop", "carts"))
	ctx := context.Background()
	if _, err := s.Put(ctx, "shop", "carts", "u1", []byte(`{"items":[{"sku":"tea","qty":1},{"sku":"jam","qty":2}],"owner":"ada"}`)); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, found, err := s.Get("shop", "carts", "u1"); err != nil || !found {
				b.Error(found, err)
				return
			}
		}
	})
}

func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}
