package rooms

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/wasm"
)

// WebSockets at this PoP (RFC 6455 through gorilla/websocket; see
// RATIONALE.md). A socket has one goroutine reading it; one writing it
// exists only while it has something to send, and the PoP's pinger pings
// every socket from one goroutine, so an idle socket costs its reading
// goroutine, a small read buffer and its state.

var upgrader = websocket.Upgrader{
	ReadBufferSize:  512,
	WriteBufferPool: &sync.Pool{},
	// Rooms are reached by browsers from pages of any origin, like any
	// public API; a room that cares checks the Origin header in on_connect.
	CheckOrigin: func(*http.Request) bool { return true },
}

func isUpgrade(r *http.Request) bool {
	return r.Method == http.MethodGet && headerHas(r.Header, "Connection", "upgrade") && headerHas(r.Header, "Upgrade", "websocket")
}

func headerHas(h http.Header, name, token string) bool {
	for _, v := range h[name] {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// wsConn is one client socket at this PoP.
type wsConn struct {
	s      *Service
	ws     *websocket.Conn
	bc     *batchConn // ws's connection; nil: writes go straight out
	opts   verge.RoomOptions
	mu     sync.Mutex
	queue  []outMsg
	bytes  int
	active bool // a writer goroutine runs
	closed bool
	ping   time.Time
}

type outMsg struct {
	pm     *websocket.PreparedMessage
	close  bool
	code   int
	reason string
}

// maxQueued bounds what waits to be written to one socket: a client that
// does not read is closed (1008) rather than allowed to hold memory.
const maxQueued = 8 << 20

func (c *wsConn) send(pm *websocket.PreparedMessage, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if c.bytes+n > maxQueued {
		c.queue = append(c.queue[:0], outMsg{close: true, code: ClosePolicy, reason: "the client does not read fast enough"})
		c.closed = true
	} else {
		c.queue = append(c.queue, outMsg{pm: pm})
		c.bytes += n
	}
	c.kick()
}

// close sends a close frame with code after what is queued, then closes.
func (c *wsConn) close(code int, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	c.queue = append(c.queue, outMsg{close: true, code: code, reason: reason})
	c.kick()
}

// kick starts the writer. c.mu is held.
func (c *wsConn) kick() {
	if !c.active {
		c.active = true
		go c.writer()
	}
}

func (c *wsConn) writer() {
	for {
		c.mu.Lock()
		if len(c.queue) == 0 {
			c.active = false
			c.mu.Unlock()
			return
		}
		q := c.queue
		c.queue = nil
		c.bytes = 0
		c.mu.Unlock()
		// What was queued meanwhile leaves in one write: gorilla frames
		// each message into the batch, and the batch costs one system call
		// however many messages it holds.
		c.bc.begin()
		for _, m := range q {
			c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if m.close {
				c.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(m.code, m.reason))
				c.bc.flush()
				// Let the client answer the close; the reader ends then,
				// or at this deadline.
				c.ws.SetReadDeadline(time.Now().Add(2 * time.Second))
				c.mu.Lock()
				c.queue = nil
				c.active = false
				c.mu.Unlock()
				return
			}
			if err := c.ws.WritePreparedMessage(m.pm); err != nil {
				c.fail()
				return
			}
		}
		c.ws.UnderlyingConn().SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := c.bc.flush(); err != nil {
			c.fail()
			return
		}
	}
}

// fail ends a socket whose writes fail.
func (c *wsConn) fail() {
	c.bc.flush()
	c.mu.Lock()
	c.closed = true
	c.queue = nil
	c.active = false
	c.mu.Unlock()
	c.ws.Close()
}

// batchConn is a socket's connection, under gorilla: between begin and
// flush its writes gather in a buffer and leave in one write.
type batchConn struct {
	net.Conn
	mu       sync.Mutex
	batching bool
	buf      []byte
}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.batching {
		b.buf = append(b.buf, p...)
		return len(p), nil
	}
	return b.Conn.Write(p)
}

func (b *batchConn) begin() {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.batching = true
	b.mu.Unlock()
}

func (b *batchConn) flush() error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.batching = false
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.Conn.Write(b.buf)
	if cap(b.buf) > 64<<10 {
		b.buf = nil // an idle socket keeps no large buffer
	} else {
		b.buf = b.buf[:0]
	}
	return err
}

// hijacker hands gorilla the connection wrapped in bc.
type hijacker struct {
	http.ResponseWriter
	bc *batchConn
}

func (h hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.bc.Conn = c
	return h.bc, rw, nil
}

// readLoop reads the socket until it closes, passing each message to
// onMessage (throttled to messages_per_second), and returns the close
// code.
func (c *wsConn) readLoop(onMessage func(data []byte, binary bool) bool) int {
	rate := float64(c.opts.MessagesPerSecond)
	tokens := rate
	last := time.Now()
	c.ws.SetReadLimit(c.opts.MaxMessage)
	c.ws.SetReadDeadline(time.Now().Add(c.opts.IdleTimeout))
	c.ws.SetPongHandler(func(string) error {
		c.ws.SetReadDeadline(time.Now().Add(c.opts.IdleTimeout))
		return nil
	})
	for {
		mt, data, err := c.ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			switch {
			case errors.As(err, &ce):
				return ce.Code
			case errors.Is(err, websocket.ErrReadLimit):
				return CloseTooBig
			default:
				return 1006
			}
		}
		now := time.Now()
		c.ws.SetReadDeadline(now.Add(c.opts.IdleTimeout))
		tokens = min(rate, tokens+now.Sub(last).Seconds()*rate)
		last = now
		if tokens < 1 {
			// Over the rate: stop reading until it allows one more; the
			// client's sends back up in TCP.
			time.Sleep(time.Duration((1 - tokens) / rate * float64(time.Second)))
			tokens = 1
			last = time.Now()
		}
		tokens--
		if !onMessage(data, mt == websocket.BinaryMessage) {
			return 1006
		}
	}
}

// pinger pings every socket of this PoP whose ping is due, from one
// goroutine.
func (s *Service) pinger() {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		s.wsMu.Lock()
		due := make([]*wsConn, 0)
		for c := range s.ws {
			if now.Sub(c.ping) >= c.opts.PingInterval {
				c.ping = now
				due = append(due, c)
			}
		}
		s.wsMu.Unlock()
		for _, c := range due {
			c.ws.WriteControl(websocket.PingMessage, nil, now.Add(5*time.Second))
		}
	}
}

// serveSocket upgrades a request and connects it to room k, here or
// through the owner's PoP.
func (s *Service) serveSocket(w http.ResponseWriter, r *http.Request, k Key, opts verge.RoomOptions) {
	opts = opts.WithDefaults()
	if !s.countConn(k, 1, opts.MaxAppConnections) {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "too many connections to this app's rooms at this PoP (max_app_connections)", http.StatusServiceUnavailable)
		return
	}
	bc := &batchConn{}
	ws, err := upgrader.Upgrade(hijacker{w, bc}, r, nil)
	if err != nil {
		s.countConn(k, -1, 0)
		return // the upgrader answered
	}
	c := &wsConn{s: s, ws: ws, bc: bc, opts: opts, ping: time.Now()}
	s.wsMu.Lock()
	s.ws[c] = struct{}{}
	s.wsMu.Unlock()
	req := requestOf(r, nil)
	// The socket gets a goroutine of its own and the HTTP server's
	// goroutine returns: its deep stack and the server's buffers would
	// otherwise stay with every idle socket.
	s.sockets.Add(1)
	go func() {
		defer s.sockets.Done()
		defer func() {
			s.wsMu.Lock()
			delete(s.ws, c)
			s.wsMu.Unlock()
			s.countConn(k, -1, 0)
			ws.Close()
		}()
		s.connect(c, k, opts, req)
	}()
}

// connect attaches a socket to its room: at this PoP if it owns the room
// (or becomes its owner), else relayed to the owner. While the room's
// owner is being found (a failover) the socket waits, its messages held.
func (s *Service) connect(c *wsConn, k Key, opts verge.RoomOptions, req *wasm.Request) {
	deadline := time.Now().Add(s.opts.LeaseTTL + 2*time.Second)
	for {
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		rm, owner, err := s.ensure(ctx, k, opts, "")
		cancel()
		switch {
		case err == nil && rm != nil:
			rc := &rconn{local: c}
			if !rm.addConn(rc, req) {
				if rm.isStopped() {
					continue // it stopped as we came: ask again
				}
				c.close(CloseTryAgain, "the room is full (max_connections)")
				c.readLoop(func([]byte, bool) bool { return true })
				return
			}
			code := c.readLoop(func(data []byte, binary bool) bool {
				return rm.post(&event{kind: evMessage, conn: rc, data: data, binary: binary})
			})
			rm.dropConn(rc, code)
			return
		case err == nil && owner != "" && s.opts.Mesh.Up(owner):
			if s.relay(c, k, owner, req) {
				return
			}
		}
		if err != nil {
			s.log.Warn("room owner lookup failed", "room", k.String(), "err", err)
		}
		if time.Now().After(deadline) || s.ctx.Err() != nil {
			c.close(CloseUnreachable, "the room's PoP cannot be reached from here; reconnect")
			c.readLoop(func([]byte, bool) bool { return true })
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (r *room) isStopped() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopped
}

// requestOf is what a room's guest sees of an HTTP request (on_connect's
// upgrade request, on_request's request).
func requestOf(r *http.Request, body []byte) *wasm.Request {
	return &wasm.Request{Method: r.Method, URI: r.RequestURI, Path: r.URL.Path, Query: r.URL.RawQuery, Proto: r.Proto,
		Host: r.Host, RemoteAddr: r.RemoteAddr, Header: r.Header.Clone(), Body: body}
}

func newPrepared(binary bool, data []byte) (*websocket.PreparedMessage, error) {
	return websocket.NewPreparedMessage(msgType(binary), data)
}
