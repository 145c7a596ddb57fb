package spot

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"
)

// Benchmarks of the engine at the centre (direct calls, in-process NATS
// connection) and of edge clients through Serve over loopback TCP, with
// JetStream fsyncing every write. "serial" is one caller (latency); "par"
// is 64 concurrent callers (throughput).
//
//	go test -run '^$' -bench . -benchtime 3s ./internal/spot/
func BenchmarkSPOT(b *testing.B) {
	s := newServer(b)
	e := newEngine(b, s, Config{})
	serve(b, s, e, "spot")
	client := NewClient(connect(b, s.ClientURL()), "spot", 10*time.Second)
	if _, err := e.Restock(context.Background(), "bench", "hot", math.MaxInt64/2); err != nil {
		b.Fatal(err)
	}
	var keys atomic.Int64
	for _, via := range []struct {
		name string
		e    Engine
	}{{"engine", e}, {"client", client}} {
		ops := []struct {
			name string
			fn   func(ctx context.Context) error
		}{
			{"claim-distinct", func(ctx context.Context) error {
				k := fmt.Sprintf("k%d", keys.Add(1))
				c, err := via.e.Claim(ctx, "bench", "", k, "o")
				if err == nil && !c.Claimed {
					err = fmt.Errorf("fresh key %s taken", k)
				}
				return err
			}},
			{"take-hot", func(ctx context.Context) error {
				t, err := via.e.Take(ctx, "bench", "hot", 1)
				if err == nil && !t.OK {
					err = fmt.Errorf("hot counter empty")
				}
				return err
			}},
		}
		for _, op := range ops {
			b.Run(via.name+"/"+op.name+"/serial", func(b *testing.B) {
				ctx := context.Background()
				start := time.Now()
				for b.Loop() {
					if err := op.fn(ctx); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
			})
			b.Run(via.name+"/"+op.name+"/par", func(b *testing.B) {
				ctx := context.Background()
				b.SetParallelism(32)
				start := time.Now()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := op.fn(ctx); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
			})
		}
	}
}
