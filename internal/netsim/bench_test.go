package netsim

import (
	"io"
	"net"
	"testing"
	"time"
)

// benchConn dials srv the way a benchmark case asks: "raw" with no Layer,
// "scale0" through a Layer with Scale 0 (pass-through), "delayed0" through a
// delayed connection whose model was then set to Scale 0 (the queueing
// machinery with zero delay), "scale1" with a 1 ms one-way latency.
func benchConn(b *testing.B, srv *server, mode string) net.Conn {
	b.Helper()
	var c net.Conn
	var err error
	switch mode {
	case "raw":
		c, err = net.Dial("tcp", srv.addr)
	case "scale0":
		c, err = layerToB(b, srv, Model{Base: ms, Scale: 0}).Dial("tcp", srv.addr)
	case "delayed0":
		l := layerToB(b, srv, Model{Base: ms, Scale: 1})
		c, err = l.Dial("tcp", srv.addr)
		l.SetModel(Model{Base: ms, Scale: 0})
	case "scale1":
		c, err = layerToB(b, srv, Model{Base: ms, Scale: 1}).Dial("tcp", srv.addr)
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

func layerToB(b *testing.B, srv *server, m Model) *Layer {
	l := NewLayer(paris, m)
	if err := l.AddPeer("b", srv.addr, paris); err != nil {
		b.Fatal(err)
	}
	return l
}

var benchModes = []string{"raw", "scale0", "delayed0", "scale1"}

// BenchmarkThroughput streams 32 KiB writes to a discarding peer and
// includes the final delivery (Close drains, the peer reports EOF).
func BenchmarkThroughput(b *testing.B) {
	for _, mode := range benchModes {
		b.Run(mode, func(b *testing.B) {
			total := make(chan int64, 1)
			srv := startServer(b, sink(total))
			c := benchConn(b, srv, mode)
			buf := make([]byte, 32<<10)
			b.SetBytes(int64(len(buf)))
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			c.Close()
			if n := <-total; n != int64(b.N*len(buf)) {
				b.Fatalf("peer got %d bytes, want %d", n, b.N*len(buf))
			}
		})
	}
}

// BenchmarkWrite64 is the per-write cost of small writes, delivery included.
func BenchmarkWrite64(b *testing.B) {
	for _, mode := range benchModes {
		b.Run(mode, func(b *testing.B) {
			total := make(chan int64, 1)
			srv := startServer(b, sink(total))
			c := benchConn(b, srv, mode)
			buf := make([]byte, 64)
			b.SetBytes(int64(len(buf)))
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			c.Close()
			<-total
		})
	}
}

// BenchmarkRoundTrip is a 64-byte ping-pong with an echo peer: at Scale 1
// it is bounded below by 2 x 1 ms, at Scale 0 it shows the wrapper's cost.
func BenchmarkRoundTrip(b *testing.B) {
	for _, mode := range benchModes {
		b.Run(mode, func(b *testing.B) {
			srv := startServer(b, echo)
			c := benchConn(b, srv, mode)
			buf := make([]byte, 64)
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRoundTripWAN reports what a ping-pong costs over the configured
// round trip on WAN-like links ("over-µs"): the emulator's own error, which
// every measurement over emulated links carries.
func BenchmarkRoundTripWAN(b *testing.B) {
	for _, oneWay := range []time.Duration{10 * ms, 50 * ms} {
		b.Run(oneWay.String(), func(b *testing.B) {
			srv := startServer(b, echo)
			c, err := layerToB(b, srv, Model{Base: oneWay, Scale: 1}).Dial("tcp", srv.addr)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { c.Close() })
			buf := make([]byte, 64)
			start := time.Now()
			for b.Loop() {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
			}
			over := time.Since(start)/time.Duration(b.N) - 2*oneWay
			b.ReportMetric(float64(over.Microseconds()), "over-µs")
		})
	}
}
