package netsim

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

const ms = time.Millisecond

// layerTo returns a Layer whose peer "b" is srv, at the layer's own
// location, so the one-way latency is Base*Scale.
func layerTo(t *testing.T, srv *server, m Model) *Layer {
	t.Helper()
	l := NewLayer(paris, m)
	if err := l.AddPeer("b", srv.addr, paris); err != nil {
		t.Fatal(err)
	}
	return l
}

func dial(t *testing.T, l *Layer, addr string) net.Conn {
	t.Helper()
	c, err := l.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip sends msg through an echo server and returns the time it took.
func roundTrip(t *testing.T, c net.Conn, msg []byte) time.Duration {
	t.Helper()
	start := time.Now()
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo returned %q, want %q", got, msg)
	}
	return time.Since(start)
}

func TestLatencyApplied(t *testing.T) {
	t.Parallel()
	srv := startServer(t, echo)
	l := layerTo(t, srv, Model{Base: 20 * ms, Scale: 1})

	start := time.Now()
	c := dial(t, l, srv.addr)
	if d := time.Since(start); d < 40*ms {
		t.Errorf("dial took %v, want >= 40ms (one round trip for the handshake)", d)
	}
	slow := time.Hour
	for i := range 3 {
		rtt := roundTrip(t, c, []byte("ping"))
		if rtt < 40*ms {
			t.Errorf("round trip %d took %v, want >= 2 x 20ms", i, rtt)
		}
		slow = min(slow, rtt)
	}

	l0 := layerTo(t, srv, Model{Base: 20 * ms, Scale: 0})
	c0 := dial(t, l0, srv.addr)
	fast := time.Hour
	for range 5 {
		fast = min(fast, roundTrip(t, c0, []byte("ping")))
	}
	if fast*2 > slow {
		t.Errorf("Scale 0 round trip %v is not well below the Scale 1 one %v", fast, slow)
	}
	if s := l.Links(); len(s) != 1 || s[0].OneWay != 20*ms || s[0].Out.Bytes != 12 || s[0].In.Bytes != 12 || s[0].Out.Writes != 3 {
		t.Errorf("Links() = %+v, want one link, 20ms, 12 bytes each way in 3 writes", s)
	}
}

func TestLossIsRetransmissionDelay(t *testing.T) {
	t.Parallel()
	srv := startServer(t, echo)
	l := layerTo(t, srv, Model{Base: ms, Scale: 1, Loss: 1})
	c := dial(t, l, srv.addr)
	// Every chunk waits max(200ms, 3 x 1ms) on top of 1ms, each way.
	if rtt := roundTrip(t, c, []byte("x")); rtt < 402*ms {
		t.Errorf("round trip with Loss 1 took %v, want >= 402ms", rtt)
	}
}

// TestOrderUnderJitter pushes random-sized writes through heavy jitter and
// some loss and reads them back in random-sized reads: every byte must come
// back, in order.
func TestOrderUnderJitter(t *testing.T) {
	t.Parallel()
	srv := startServer(t, echo)
	l := layerTo(t, srv, Model{Base: ms, Jitter: 5 * ms, Loss: 0.01, Scale: 1})
	c := dial(t, l, srv.addr)

	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 2<<20)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	werr := make(chan error, 1)
	writes := 0 // read after <-werr
	go func() {
		wr := rand.New(rand.NewPCG(3, 4))
		for p := data; len(p) > 0; writes++ {
			k := min(len(p), 1+wr.IntN(20000))
			if _, err := c.Write(p[:k]); err != nil {
				werr <- err
				return
			}
			p = p[k:]
		}
		werr <- nil
	}()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	h := sha256.New()
	buf := make([]byte, 40000)
	got := 0
	for got < len(data) {
		n, err := c.Read(buf[:1+rng.IntN(len(buf))])
		h.Write(buf[:n])
		got += n
		if err != nil {
			t.Fatalf("read after %d of %d bytes: %v", got, len(data), err)
		}
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if want := sha256.Sum256(data); !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("bytes came back reordered or corrupted")
	}
	s := l.Links()[0]
	if s.Out.Bytes != uint64(len(data)) || s.In.Bytes != uint64(len(data)) || s.Out.Queued != 0 || s.In.Queued != 0 ||
		s.Out.Writes != uint64(writes) {
		t.Errorf("link counters %+v / %+v, want %d bytes each way in %d writes out, nothing queued", s.Out, s.In, len(data), writes)
	}
}

func TestPartitionAndHeal(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		m    Model
	}{
		{"delayed", Model{Base: 2 * ms, Scale: 1}},
		{"passthrough", Model{Base: 2 * ms, Scale: 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, echo)
			l := layerTo(t, srv, tc.m)
			c1, c2 := dial(t, l, srv.addr), dial(t, l, srv.addr)
			roundTrip(t, c1, []byte("hello"))
			if s := l.Links()[0]; !s.Up || s.Conns != 2 {
				t.Fatalf("before partition: %+v, want up with 2 conns", s)
			}

			readErr := make(chan error, 1)
			go func() {
				_, err := c1.Read(make([]byte, 10))
				readErr <- err
			}()
			if err := l.Partition("b"); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-readErr:
				if !errors.Is(err, ErrPartitioned) {
					t.Errorf("pending Read returned %v, want ErrPartitioned", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("pending Read still blocked 5s after Partition")
			}
			if _, err := c2.Write([]byte("x")); !errors.Is(err, ErrPartitioned) {
				t.Errorf("Write after Partition returned %v, want ErrPartitioned", err)
			}
			for i := range 2 { // the peer sees both connections go away
				select {
				case <-srv.closed:
				case <-time.After(5 * time.Second):
					t.Fatalf("server saw %d of 2 connections closed", i)
				}
			}
			_, err := l.Dial("tcp", srv.addr)
			var pe *PartitionError
			if !errors.As(err, &pe) || pe.Peer != "b" || !strings.Contains(err.Error(), `"b"`) {
				t.Fatalf("Dial while partitioned returned %v, want a PartitionError naming peer b", err)
			}
			if s := l.Links()[0]; s.Up || s.Conns != 0 {
				t.Errorf("during partition: %+v, want down with 0 conns", s)
			}

			if err := l.Heal("b"); err != nil {
				t.Fatal(err)
			}
			c3 := dial(t, l, srv.addr)
			roundTrip(t, c3, []byte("again"))
			if s := l.Links()[0]; !s.Up || s.Conns != 1 {
				t.Errorf("after heal: %+v, want up with 1 conn", s)
			}
		})
	}
}

func TestPartitionAll(t *testing.T) {
	t.Parallel()
	a, b := startServer(t, echo), startServer(t, echo)
	l := NewLayer(paris, Model{Base: ms, Scale: 1})
	if err := l.AddPeer("a", a.addr, paris); err != nil {
		t.Fatal(err)
	}
	if err := l.AddPeer("b", b.addr, london); err != nil {
		t.Fatal(err)
	}
	ca, cb := dial(t, l, a.addr), dial(t, l, b.addr)
	l.PartitionAll()
	for _, c := range []net.Conn{ca, cb} {
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, ErrPartitioned) {
			t.Errorf("Read on %v after PartitionAll: %v, want ErrPartitioned", c.RemoteAddr(), err)
		}
	}
	for _, addr := range []string{a.addr, b.addr} {
		if _, err := l.Dial("tcp", addr); !errors.Is(err, ErrPartitioned) {
			t.Errorf("Dial %s after PartitionAll: %v, want ErrPartitioned", addr, err)
		}
	}
	l.HealAll()
	roundTrip(t, dial(t, l, a.addr), []byte("a"))
	roundTrip(t, dial(t, l, b.addr), []byte("b"))
	if err := l.Partition("nope"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("Partition of an unknown peer returned %v, want an error naming it", err)
	}
}

func TestDeadlines(t *testing.T) {
	t.Parallel()
	srv := startServer(t, echo)
	l := layerTo(t, srv, Model{Base: 5 * ms, Scale: 1})
	c := dial(t, l, srv.addr)

	start := time.Now()
	c.SetReadDeadline(start.Add(30 * ms))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read past its deadline returned %v, want a timeout net.Error", err)
	}
	if d := time.Since(start); d < 30*ms {
		t.Errorf("Read timed out after %v, before its 30ms deadline", d)
	}

	// A deadline moved while Read is blocked takes effect at once.
	c.SetReadDeadline(time.Time{})
	readErr := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		readErr <- err
	}()
	time.Sleep(20 * ms)
	c.SetReadDeadline(time.Now())
	select {
	case err := <-readErr:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("blocked Read after deadline moved: %v, want timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("blocked Read ignored a deadline moved into the past")
	}

	// An expired deadline wins over bytes waiting to be read; clearing it
	// makes them readable again.
	c.Write([]byte("late"))
	time.Sleep(30 * ms)
	c.SetReadDeadline(time.Now().Add(-time.Second))
	if _, err := c.Read(make([]byte, 4)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Read with an expired deadline: %v, want timeout", err)
	}
	c.SetDeadline(time.Time{})
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "late" {
		t.Errorf("after clearing the deadline read %q, %v; want \"late\"", got, err)
	}
}

func TestWriteBackpressureAndDeadline(t *testing.T) {
	t.Parallel()
	srv := startServer(t, silent)
	l := layerTo(t, srv, Model{Base: ms, Scale: 1})
	c := dial(t, l, srv.addr)
	c.(*conn).raw.(*net.TCPConn).SetWriteBuffer(64 << 10)

	// The peer never reads: once the kernel buffers are full the link's
	// queue fills to its bound and Write blocks until the deadline. Copying
	// 64 MiB takes far less than 2 s, so a timeout means it blocked.
	c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	big := make([]byte, 64<<20)
	n, err := c.Write(big)
	if !errors.Is(err, os.ErrDeadlineExceeded) || n >= len(big) {
		t.Fatalf("Write to a peer that never reads: n=%d err=%v, want a timeout before %d bytes", n, err, len(big))
	}
	if q := l.Links()[0].Out.Queued; q < maxQueued-2*maxChunk || q > maxQueued {
		t.Errorf("queued %d bytes when Write blocked, want the queue full (<= %d)", q, maxQueued)
	}
}

func TestCloseUnblocks(t *testing.T) {
	t.Parallel()
	srv := startServer(t, silent)
	l := layerTo(t, srv, Model{Base: ms, Scale: 1})
	c := dial(t, l, srv.addr)

	errs := make(chan error, 2)
	go func() {
		_, err := c.Read(make([]byte, 1))
		errs <- err
	}()
	go func() {
		_, err := c.Write(make([]byte, 64<<20)) // blocks on backpressure
		errs <- err
	}()
	time.Sleep(200 * ms)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case err := <-errs:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("pending call returned %v after Close, want net.ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not unblock a pending Read or Write within 5s")
		}
	}
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close returned %v, want net.ErrClosed", err)
	}
}

// TestCloseDeliversQueued: like a kernel, Close still delivers what was
// written, at its time.
func TestCloseDeliversQueued(t *testing.T) {
	t.Parallel()
	total := make(chan int64, 1)
	srv := startServer(t, sink(total))
	l := layerTo(t, srv, Model{Base: 20 * ms, Scale: 1})
	c := dial(t, l, srv.addr)
	const size = 3 << 20
	if _, err := c.Write(make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case n := <-total:
		if n != size {
			t.Errorf("peer received %d bytes after Close, want %d", n, size)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("peer saw no EOF 10s after Close")
	}
}

func TestSetModel(t *testing.T) {
	t.Parallel()
	srv := startServer(t, echo)
	l := layerTo(t, srv, Model{Base: 5 * ms, Scale: 1})
	c := dial(t, l, srv.addr)
	if rtt := roundTrip(t, c, []byte("a")); rtt < 10*ms {
		t.Errorf("rtt %v, want >= 10ms", rtt)
	}
	l.SetModel(Model{Base: 40 * ms, Scale: 1})
	if rtt := roundTrip(t, c, []byte("b")); rtt < 80*ms {
		t.Errorf("rtt after SetModel %v, want >= 80ms", rtt)
	}
	if ow := l.Links()[0].OneWay; ow != 40*ms {
		t.Errorf("OneWay after SetModel = %v, want 40ms", ow)
	}
}

func TestUnknownAddressPassesThrough(t *testing.T) {
	t.Parallel()
	srv, other := startServer(t, echo), startServer(t, echo)
	l := layerTo(t, other, Model{Base: time.Second, Scale: 1})
	c := dial(t, l, srv.addr)
	if _, ok := c.(*net.TCPConn); !ok {
		t.Fatalf("dial of a non-peer address returned %T, want a bare *net.TCPConn", c)
	}
	roundTrip(t, c, []byte("direct"))
	if s := l.Links()[0]; s.Conns != 0 || s.Out.Bytes != 0 {
		t.Errorf("non-peer traffic counted on link b: %+v", s)
	}
}

func TestAddPeer(t *testing.T) {
	t.Parallel()
	srv := startServer(t, echo)
	_, port, _ := net.SplitHostPort(srv.addr)
	l := NewLayer(paris, Model{Base: ms, Scale: 1})
	if err := l.AddPeer("b", "localhost:"+port, paris); err != nil {
		t.Fatal(err)
	}
	// nats.go dials the resolved IP, which must still count as peer b.
	c := dial(t, l, srv.addr)
	if _, ok := c.(*conn); !ok {
		t.Errorf("dial of the IP behind localhost returned %T, want a delayed conn", c)
	}
	for _, tc := range []struct{ id, addr, want string }{
		{"", srv.addr, "empty peer id"},
		{"c", "no-port", "not host:port"},
		{"c", srv.addr, `belongs to peer "b"`},
	} {
		if err := l.AddPeer(tc.id, tc.addr, paris); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("AddPeer(%q, %q) = %v, want error containing %q", tc.id, tc.addr, err, tc.want)
		}
	}
}

// A peer's further addresses (its HTTP gateway beside its mesh port) share
// its link: delayed, cut by its partitions, dropped when it moves.
func TestAddPeerMoreAddresses(t *testing.T) {
	t.Parallel()
	mesh, web := startServer(t, echo), startServer(t, echo)
	l := NewLayer(paris, Model{Base: ms, Scale: 1})
	if err := l.AddPeer("b", mesh.addr, paris, web.addr); err != nil {
		t.Fatal(err)
	}
	if c := dial(t, l, web.addr); func() bool { _, ok := c.(*conn); return !ok }() {
		t.Fatalf("dial of b's second address returned %T, want a delayed conn", c)
	}
	if err := l.Partition("b"); err != nil {
		t.Fatal(err)
	}
	var pe *PartitionError
	if _, err := l.Dial("tcp", web.addr); !errors.As(err, &pe) || pe.Peer != "b" {
		t.Fatalf("dial of b's second address while partitioned: %v, want a PartitionError for b", err)
	}
	if err := l.Heal("b"); err != nil {
		t.Fatal(err)
	}
	if err := l.AddPeer("b", mesh.addr, paris); err != nil { // moved: no second address
		t.Fatal(err)
	}
	if c := dial(t, l, web.addr); func() bool { _, ok := c.(*conn); return ok }() {
		t.Fatal("b's former second address still dials through its link")
	}
}

// TestNoGoroutineLeak is not parallel: it counts the process's goroutines.
func TestNoGoroutineLeak(t *testing.T) {
	srv := startServer(t, echo)
	l := layerTo(t, srv, Model{Base: 2 * ms, Jitter: ms, Scale: 1})
	before := runtime.NumGoroutine()

	var conns []net.Conn
	for range 20 {
		c, err := l.Dial("tcp", srv.addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for i, c := range conns {
		if i%2 == 0 {
			roundTrip(t, c, []byte("traffic"))
		} else {
			c.Write(make([]byte, 100<<10)) // still queued at Close
		}
	}
	pending := make(chan error, 1)
	go func() {
		_, err := conns[0].Read(make([]byte, 1))
		pending <- err
	}()
	for _, c := range conns {
		c.Close()
	}
	<-pending

	deadline := time.Now().Add(10 * time.Second)
	for l.live.Load() != 0 || runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("after Close: %d conn goroutines live, %d goroutines (was %d)\n%s",
				l.live.Load(), runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * ms)
	}
	if s := l.Links()[0]; s.Conns != 0 || s.Out.Queued != 0 || s.In.Queued != 0 {
		t.Errorf("after Close: %+v, want no conns and nothing queued", s)
	}
}

// TestTinyWritesBounded: the queue bound counts chunks, not only bytes, so
// a flood of one-byte writes to a stalled peer blocks early too.
func TestTinyWritesBounded(t *testing.T) {
	t.Parallel()
	srv := startServer(t, silent)
	l := layerTo(t, srv, Model{Base: ms, Scale: 1})
	c := dial(t, l, srv.addr).(*conn)
	c.raw.(*net.TCPConn).SetWriteBuffer(4 << 10) // keep the kernel from absorbing millions

	c.SetWriteDeadline(time.Now().Add(time.Minute))
	one := []byte{1}
	var err error
	writes := 0
	for ; writes < 20_000_000; writes++ {
		if writes == 0 || writes%4096 == 0 {
			c.SetWriteDeadline(time.Now().Add(200 * ms))
		}
		if _, err = c.Write(one); err != nil {
			break
		}
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("after %d one-byte writes: %v, want Write to block until its deadline", writes, err)
	}
	c.mu.Lock()
	chunks, cost := c.wq.len(), c.wq.cost
	c.mu.Unlock()
	if chunks > maxQueued/chunkCost || cost > maxQueued {
		t.Errorf("%d chunks costing %d queued, want at most %d chunks and %d", chunks, cost, maxQueued/chunkCost, maxQueued)
	}
	t.Logf("%d one-byte writes accepted, %d chunks queued when Write blocked", writes, chunks)
}
