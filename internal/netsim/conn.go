package netsim

import (
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// maxQueued bounds the memory held per direction of a connection: a
	// writer blocks (and the read loop stops reading the socket, pushing
	// back on the sender through TCP) beyond it.
	maxQueued = 4 << 20
	// chunkCost is charged per chunk on top of its bytes, so a flood of
	// one-byte writes is bounded too (64K chunks, not 4M).
	chunkCost = 64
	// maxChunk splits large writes so one Write cannot pin maxQueued at once
	// and delivery starts before the whole buffer is copied.
	maxChunk = 64 << 10
	// maxBatch bounds one writev of due chunks.
	maxBatch = 1 << 20
	// linger bounds how long Close keeps delivering queued bytes to a peer
	// that does not read, after the last one was due.
	linger = 5 * time.Second
	// fine is how close to a delivery time wait stops using Go timers.
	// The runtime's netpoller sleeps in whole milliseconds, so a timer
	// fires 0.6–1 ms late here, on each direction of every round trip; a
	// nanosleep without timer slack for the last stretch is late by well under
	// 0.1 ms. See RATIONALE.md.
	fine = 2 * time.Millisecond
)

// chunk is a run of bytes with the time it may leave (write side) or be
// read (read side). A read-side chunk with err set ends the stream.
type chunk struct {
	at  time.Time
	b   []byte
	err error
}

// queue is a FIFO of chunks; delivery times never decrease along it.
type queue struct {
	c     []chunk
	head  int
	bytes int // payload
	cost  int // payload + chunkCost per chunk: what maxQueued bounds
}

func (q *queue) len() int      { return len(q.c) - q.head }
func (q *queue) front() *chunk { return &q.c[q.head] }
func (q *queue) push(c chunk) {
	q.c = append(q.c, c)
	q.bytes += len(c.b)
	q.cost += len(c.b) + chunkCost
}

// consume drops k bytes from the front chunk.
func (q *queue) consume(k int) {
	h := &q.c[q.head]
	h.b = h.b[k:]
	q.bytes -= k
	q.cost -= k
}

func (q *queue) pop() {
	q.bytes -= len(q.c[q.head].b)
	q.cost -= len(q.c[q.head].b) + chunkCost
	q.c[q.head] = chunk{}
	q.head++
	if q.head == len(q.c) {
		q.c, q.head = q.c[:0], 0
	} else if q.head > 64 && q.head*2 > len(q.c) {
		n := copy(q.c, q.c[q.head:])
		clear(q.c[n:])
		q.c, q.head = q.c[:n], 0
	}
}

func (q *queue) reset() { *q = queue{} }

// conn delays a TCP connection in both directions. Two goroutines per
// connection: writeLoop moves due chunks to the socket and readLoop stamps
// incoming bytes with the time they become readable. Both exit once the
// connection is closed and its queued output delivered (bounded by linger),
// or at once when a partition aborts it.
type conn struct {
	l    *Layer
	link *link
	raw  net.Conn

	mu       sync.Mutex
	wwake    chan struct{} // closed and replaced when the write side changes
	rwake    chan struct{} // same, read side
	closed   bool          // Close was called
	abortErr error         // set by a partition
	rawDone  bool          // raw socket closed

	wq        queue
	wlast     time.Time // latest delivery time handed out; keeps order under jitter
	werr      error     // sticky socket write error
	wdone     bool      // writeLoop exited
	wdeadline time.Time

	rq        queue
	rlast     time.Time
	rdeadline time.Time
}

func newConn(l *Layer, k *link, raw net.Conn) *conn {
	return &conn{
		l: l, link: k, raw: raw,
		wwake: make(chan struct{}),
		rwake: make(chan struct{}),
	}
}

func (c *conn) start() {
	c.l.live.Add(2)
	go c.writeLoop()
	go c.readLoop()
}

func (c *conn) signalW() { close(c.wwake); c.wwake = make(chan struct{}) }
func (c *conn) signalR() { close(c.rwake); c.rwake = make(chan struct{}) }

// wait releases c.mu until ch is closed or until passes (zero: no limit).
// Within fine of until it sleeps the thread and does not watch ch: a close
// or abort is seen at most fine later.
func (c *conn) wait(ch chan struct{}, until time.Time) {
	c.mu.Unlock()
	defer c.mu.Lock()
	if until.IsZero() {
		<-ch
		return
	}
	d := time.Until(until)
	if d > fine {
		t := time.NewTimer(d - fine)
		select {
		case <-ch:
			t.Stop()
			return
		case <-t.C:
		}
		d = time.Until(until)
	}
	select {
	case <-ch:
	default:
		sleep(d)
	}
}

// sleep blocks the thread for d with the kernel's high-resolution timer,
// without the default 50 µs of timer slack (a per-thread setting that only
// makes the runtime's own waits on this thread more punctual).
func sleep(d time.Duration) {
	if d <= 0 {
		return
	}
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
	ts := unix.NsecToTimespec(d.Nanoseconds())
	for unix.Nanosleep(&ts, &ts) == unix.EINTR { // the runtime's preemption signals
	}
}

// due returns when a chunk entering one direction now may be delivered.
func (c *conn) due(now time.Time, last *time.Time) time.Time {
	d := c.link.delay.Load()
	at := now.Add(d.lat)
	if d.jitter > 0 {
		at = at.Add(rand.N(d.jitter))
	}
	if d.loss > 0 && rand.Float64() < d.loss {
		at = at.Add(d.rto)
	}
	if at.Before(*last) {
		at = *last
	}
	*last = at
	return at
}

func (c *conn) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.raw.LocalAddr(), Addr: c.raw.RemoteAddr(), Err: err}
}

func (c *conn) abortError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.abortErr
}

// Write queues p for delivery after the link's one-way latency. It returns
// once p is queued, like a kernel send buffer, and blocks while the
// direction already holds maxQueued bytes.
func (c *conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for {
		switch {
		case c.closed:
			return n, c.opErr("write", net.ErrClosed)
		case c.abortErr != nil:
			return n, c.opErr("write", c.abortErr)
		case c.werr != nil:
			return n, c.werr
		}
		if len(p) == 0 {
			return n, nil
		}
		now := time.Now()
		if !c.wdeadline.IsZero() && !now.Before(c.wdeadline) {
			return n, c.opErr("write", os.ErrDeadlineExceeded)
		}
		k := min(len(p), maxChunk)
		if c.wq.len() > 0 && c.wq.cost+k+chunkCost > maxQueued {
			c.wait(c.wwake, c.wdeadline)
			continue
		}
		b := make([]byte, k)
		copy(b, p)
		wasEmpty := c.wq.len() == 0
		c.wq.push(chunk{at: c.due(now, &c.wlast), b: b})
		if n == 0 {
			c.link.out.writes.Add(1)
		}
		c.link.out.bytes.Add(uint64(k))
		c.link.out.queued.Add(int64(k))
		n += k
		p = p[k:]
		if wasEmpty {
			c.signalW()
		}
	}
}

func (c *conn) writeLoop() {
	defer c.l.live.Add(-1)
	var bufs, batch net.Buffers
	c.mu.Lock()
	for c.abortErr == nil && c.werr == nil {
		if c.wq.len() == 0 {
			if c.closed {
				break
			}
			c.wait(c.wwake, time.Time{})
			continue
		}
		now := time.Now()
		if at := c.wq.front().at; at.After(now) {
			c.wait(c.wwake, at)
			continue
		}
		batch = batch[:0]
		size := 0
		for i := c.wq.head; i < len(c.wq.c) && size < maxBatch && !c.wq.c[i].at.After(now); i++ {
			batch = append(batch, c.wq.c[i].b)
			size += len(c.wq.c[i].b)
		}
		c.mu.Unlock()
		bufs = batch // WriteTo consumes its receiver
		_, err := bufs.WriteTo(c.raw)
		c.mu.Lock()
		if c.abortErr != nil {
			break // the queue is gone
		}
		for range batch {
			c.wq.pop()
		}
		c.link.out.queued.Add(-int64(size))
		clear(batch)
		if err != nil {
			c.werr = c.opErr("write", err)
		}
		c.signalW()
	}
	c.wdone = true
	c.signalW()
	if c.closed || c.abortErr != nil {
		c.closeRawLocked()
	}
	c.mu.Unlock()
}

// Read returns bytes whose delivery time has passed, waiting for them.
func (c *conn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		switch {
		case c.closed:
			return 0, c.opErr("read", net.ErrClosed)
		case c.abortErr != nil:
			return 0, c.opErr("read", c.abortErr)
		}
		now := time.Now()
		// An expired deadline wins over buffered bytes, as in package net.
		if !c.rdeadline.IsZero() && !now.Before(c.rdeadline) {
			return 0, c.opErr("read", os.ErrDeadlineExceeded)
		}
		if len(p) == 0 {
			return 0, nil
		}
		if c.rq.len() > 0 && !c.rq.front().at.After(now) {
			full := c.rq.cost >= maxQueued
			n := 0
			for n < len(p) && c.rq.len() > 0 {
				h := c.rq.front()
				if h.at.After(now) {
					break
				}
				if h.err != nil {
					if n > 0 {
						break
					}
					return 0, h.err // stays queued: the stream has ended
				}
				k := copy(p[n:], h.b)
				c.rq.consume(k)
				n += k
				if len(h.b) == 0 {
					c.rq.pop()
				}
			}
			c.link.in.queued.Add(-int64(n))
			if full && c.rq.cost < maxQueued {
				c.signalR()
			}
			return n, nil
		}
		until := c.rdeadline
		if c.rq.len() > 0 && (until.IsZero() || c.rq.front().at.Before(until)) {
			until = c.rq.front().at
		}
		c.wait(c.rwake, until)
	}
}

func (c *conn) readLoop() {
	defer c.l.live.Add(-1)
	buf := make([]byte, 32<<10)
	for {
		c.mu.Lock()
		for c.rq.cost >= maxQueued && !c.closed && c.abortErr == nil {
			c.wait(c.rwake, time.Time{})
		}
		stop := c.closed || c.abortErr != nil
		c.mu.Unlock()
		if stop {
			return
		}
		n, err := c.raw.Read(buf)
		now := time.Now()
		c.mu.Lock()
		if c.closed || c.abortErr != nil {
			c.mu.Unlock()
			return
		}
		wasEmpty := c.rq.len() == 0
		if n > 0 {
			c.rq.push(chunk{at: c.due(now, &c.rlast), b: append([]byte(nil), buf[:n]...)})
			c.link.in.count(n)
			c.link.in.queued.Add(int64(n))
		}
		if err != nil {
			// The FIN or reset travels the link like data. io.EOF stays
			// unwrapped: callers compare it with ==.
			c.rq.push(chunk{at: c.due(now, &c.rlast), err: err})
		}
		if wasEmpty {
			c.signalR()
		}
		c.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// Close closes the connection: pending and future Read and Write calls
// return net.ErrClosed at once. Bytes already written are still delivered
// at their time (as a kernel does after close), for at most linger past
// the last one's delivery time; then the socket is closed.
func (c *conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.opErr("close", net.ErrClosed)
	}
	c.closed = true
	c.signalR()
	c.signalW()
	if c.abortErr != nil || c.wdone || c.wq.len() == 0 {
		c.closeRawLocked()
	} else {
		// Keep the socket for the writer and unblock the reader.
		c.raw.SetWriteDeadline(c.wlast.Add(linger))
		c.raw.SetReadDeadline(time.Unix(1, 0))
	}
	c.mu.Unlock()
	return nil
}

// abort cuts the connection for a partition: queued bytes are dropped and
// the socket closed now, so the peer sees the connection go away.
func (c *conn) abort(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.abortErr != nil || c.rawDone {
		return
	}
	c.abortErr = err
	c.link.out.queued.Add(-int64(c.wq.bytes))
	c.link.in.queued.Add(-int64(c.rq.bytes))
	c.wq.reset()
	c.rq.reset()
	c.signalR()
	c.signalW()
	c.closeRawLocked()
}

func (c *conn) closeRawLocked() {
	if c.rawDone {
		return
	}
	c.rawDone = true
	c.raw.Close()
	if c.abortErr == nil {
		// Bytes a closed connection still held are not in flight anymore.
		c.link.out.queued.Add(-int64(c.wq.bytes))
		c.link.in.queued.Add(-int64(c.rq.bytes))
		c.wq.reset()
		c.rq.reset()
	}
	c.link.remove(c)
}

func (c *conn) LocalAddr() net.Addr  { return c.raw.LocalAddr() }
func (c *conn) RemoteAddr() net.Addr { return c.raw.RemoteAddr() }

func (c *conn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return c.opErr("set", net.ErrClosed)
	}
	c.rdeadline, c.wdeadline = t, t
	c.signalR()
	c.signalW()
	return nil
}

func (c *conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return c.opErr("set", net.ErrClosed)
	}
	c.rdeadline = t
	c.signalR()
	return nil
}

func (c *conn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return c.opErr("set", net.ErrClosed)
	}
	c.wdeadline = t
	c.signalW()
	return nil
}

// rawConn is a connection dialed with no delay: the socket itself, counted
// and cut by partitions.
type rawConn struct {
	net.Conn
	link    *link
	aborted atomic.Pointer[error]
}

func (c *rawConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.link.in.count(n)
	}
	if err != nil {
		if a := c.aborted.Load(); a != nil {
			err = &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: *a}
		}
	}
	return n, err
}

func (c *rawConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.link.out.count(n)
	if err != nil {
		if a := c.aborted.Load(); a != nil {
			err = &net.OpError{Op: "write", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: *a}
		}
	}
	return n, err
}

func (c *rawConn) Close() error {
	c.link.remove(c)
	return c.Conn.Close()
}

func (c *rawConn) abort(err error) {
	c.aborted.CompareAndSwap(nil, &err)
	c.Conn.Close()
}
