// Package room is a Go client of Verge rooms: a WebSocket to a room that
// reconnects by itself, like PartySocket in JavaScript. It knows the PoPs it
// may reach: when the room moves or restarts (close codes 4001-4003), or a
// PoP goes away, it reconnects, to the same PoP first and then to the next.
// What the application sends while it reconnects is queued and sent, in
// order, on the next connection (as PartySocket does).
//
//	c, err := room.Dial(ctx, []string{"ws://127.0.0.1:8001", "ws://127.0.0.1:8002"}, "/chat/lobby", room.Options{})
//	c.SendText("hello")
//	for m := range c.Messages() { ... }
package room

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Close codes of Verge rooms that mean "reconnect" (docs/rooms.md).
const (
	CloseMoved       = 4001 // the room moved to another PoP
	CloseRestart     = 4002 // the room's PoP was lost; it restarts elsewhere
	CloseUnreachable = 4003 // this PoP cannot reach the room's PoP
)

// Message is one message from the room.
type Message struct {
	Data   []byte
	Binary bool
	// Conn counts the client's connections: 1 for the first, 2 after the
	// first reconnect... Messages a room sends on connect (a history) carry
	// the connection they arrived on.
	Conn int
}

// Options tune a client.
type Options struct {
	// Header is sent with every upgrade request.
	Header http.Header
	// NoReconnect: stop at the first close.
	NoReconnect bool
	// MaxBackoff bounds the wait between attempts (default 1 s; the first
	// retry is immediate).
	MaxBackoff time.Duration
	// OnOpen is called (from the client's goroutine) each time a connection
	// opens, with its number.
	OnOpen func(conn int, url string)
	// OnClose is called each time a connection closes, with its close code.
	OnClose func(conn int, code int)
	// MaxQueued bounds the messages queued while reconnecting (default
	// 1000); past it Send returns ErrNotConnected.
	MaxQueued int
}

type queued struct {
	data   []byte
	binary bool
}

// Client is a room connection that reconnects.
type Client struct {
	urls []string
	path string
	opts Options
	msgs chan Message

	mu     sync.Mutex
	ws     *websocket.Conn
	conn   int
	cur    int // index in urls
	closed bool
	queue  []queued // sent while reconnecting; they go first on the next connection
	codes  []int
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// Dial connects to path (e.g. "/chat/lobby") at the first of urls that
// answers ("ws://host:port", tried in order) and keeps the room connected
// until Close.
func Dial(ctx context.Context, urls []string, path string, opts Options) (*Client, error) {
	if len(urls) == 0 {
		return nil, errors.New("room: no URL")
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = time.Second
	}
	if opts.MaxQueued <= 0 {
		opts.MaxQueued = 1000
	}
	c := &Client{urls: urls, path: path, opts: opts, msgs: make(chan Message, 4096), done: make(chan struct{})}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if err := c.connect(ctx); err != nil {
		c.cancel()
		return nil, err
	}
	go c.loop()
	return c, nil
}

// connect opens a connection, trying each URL once from the current one.
func (c *Client) connect(ctx context.Context) error {
	var last error
	for i := 0; i < len(c.urls); i++ {
		c.mu.Lock()
		u := c.urls[(c.cur+i)%len(c.urls)]
		c.mu.Unlock()
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ws, _, err := websocket.DefaultDialer.DialContext(dctx, u+c.path, c.opts.Header)
		cancel()
		if err != nil {
			last = err
			continue
		}
		c.mu.Lock()
		c.cur = (c.cur + i) % len(c.urls)
		c.ws = ws
		c.conn++
		n := c.conn
		// What was sent while reconnecting goes before anything sent from
		// now on (Send waits for the lock).
		for len(c.queue) > 0 {
			if c.write(c.queue[0].data, c.queue[0].binary) != nil {
				break // this connection failed already; the next one sends the rest
			}
			c.queue[0] = queued{}
			c.queue = c.queue[1:]
		}
		c.mu.Unlock()
		if c.opts.OnOpen != nil {
			c.opts.OnOpen(n, u)
		}
		return nil
	}
	return last
}

func (c *Client) loop() {
	defer close(c.done)
	defer close(c.msgs)
	backoff := time.Duration(0)
	for {
		c.mu.Lock()
		ws, n := c.ws, c.conn
		c.mu.Unlock()
		code := c.read(ws, n)
		c.mu.Lock()
		c.codes = append(c.codes, code)
		c.ws = nil
		closed := c.closed
		c.mu.Unlock()
		if c.opts.OnClose != nil {
			c.opts.OnClose(n, code)
		}
		if closed || c.opts.NoReconnect || code == 1000 {
			return
		}
		if code == CloseUnreachable {
			// This PoP cannot reach the room: try the next one.
			c.mu.Lock()
			c.cur = (c.cur + 1) % len(c.urls)
			c.mu.Unlock()
		}
		for {
			select {
			case <-c.ctx.Done():
				return
			case <-time.After(backoff):
			}
			if err := c.connect(c.ctx); err == nil {
				backoff = 0
				break
			}
			backoff = min(max(2*backoff, 50*time.Millisecond), c.opts.MaxBackoff)
			// Next time start from the next PoP.
			c.mu.Lock()
			c.cur = (c.cur + 1) % len(c.urls)
			c.mu.Unlock()
		}
	}
}

func (c *Client) read(ws *websocket.Conn, n int) int {
	for {
		mt, b, err := ws.ReadMessage()
		if err != nil {
			ws.Close()
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code
			}
			return 1006
		}
		select {
		case c.msgs <- Message{Data: b, Binary: mt == websocket.BinaryMessage, Conn: n}:
		case <-c.ctx.Done():
			ws.Close()
			return 1000
		}
	}
}

// Messages is every message received, in order, across reconnections. It
// is closed when the client stops.
func (c *Client) Messages() <-chan Message { return c.msgs }

// ErrNotConnected: the message was not sent and will not be: the client
// is closed, does not reconnect, or has MaxQueued messages queued.
var ErrNotConnected = errors.New("room: not connected")

// Send sends a message on the open connection or, while the client
// reconnects, queues it for the next one. A message Send accepts (nil) is
// sent once, in order: either the room took it before the connection
// closed (a room that moves hands such messages to its new PoP), or the
// connection refused it (a close had been sent) and it is queued.
func (c *Client) Send(data []byte, binary bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ws != nil {
		err := c.write(data, binary)
		if err == nil || c.opts.NoReconnect || c.closed {
			return err
		}
		// The connection is closing: gorilla wrote nothing of it.
	}
	if c.closed || c.opts.NoReconnect || len(c.queue) >= c.opts.MaxQueued {
		return ErrNotConnected
	}
	c.queue = append(c.queue, queued{data: append([]byte(nil), data...), binary: binary})
	return nil
}

// write sends one message on c.ws. c.mu is held.
func (c *Client) write(data []byte, binary bool) error {
	mt := websocket.TextMessage
	if binary {
		mt = websocket.BinaryMessage
	}
	c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return c.ws.WriteMessage(mt, data)
}

// Queued is how many messages wait for the next connection.
func (c *Client) Queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}

// SendText sends a text message.
func (c *Client) SendText(s string) error { return c.Send([]byte(s), false) }

// Conn is the number of the current (or last) connection.
func (c *Client) Conn() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn
}

// URL is the PoP the client is (or was last) connected to.
func (c *Client) URL() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.urls[c.cur]
}

// Codes are the close codes of the connections that closed so far.
func (c *Client) Codes() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.codes...)
}

// Close closes the connection (1000) and stops reconnecting.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	ws := c.ws
	c.mu.Unlock()
	if ws != nil {
		ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(time.Second))
	}
	c.cancel()
	if ws != nil {
		ws.Close()
	}
	<-c.done
	return nil
}
