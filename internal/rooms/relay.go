package rooms

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/mesh"
	"github.com/verge-edge/verge/internal/replicate/wire"
	"github.com/verge-edge/verge/internal/wasm"
)

// Relays. A client's PoP that does not own the room relays the client's
// socket to the owner over the mesh: one message per frame each way, on
// the link between the two PoPs (NATS keeps a link's messages in order, so
// each connection's frames stay in order). The relay PoP keeps the socket;
// the owner keeps a connection record (rconn with the relay's id).
//
//	relay → owner  "room.up":   open (the upgrade request), frame, close
//	owner → relay  "room.down": frames (one message per frame for all the
//	                            relay's connections it goes to), close
//	relay → owner  "room.http": an HTTP request to the room (request/reply)

const (
	upOpen = iota + 1
	upFrame
	upClose
)

type upMsg struct {
	op     int
	key    Key
	rid    uint64
	data   []byte
	binary bool
	code   int
	req    *wasm.Request
}

type downMsg struct {
	key    Key
	rids   []uint64
	data   []byte
	binary bool
	close  bool
	code   int
	reason string
}

// relayConn is a socket at this PoP whose room is owned elsewhere.
type relayConn struct {
	key   Key
	owner string
	ws    *wsConn
}

type pendingOpen struct {
	frames []upMsg
	closed bool
	code   int
}

const maxName = 1024

func putKey(w *wire.Writer, k Key) { w.Str(k.App); w.Str(k.Fn); w.Str(k.Room) }

func getKey(r *wire.Reader) Key {
	return Key{App: r.Str(maxName), Fn: r.Str(maxName), Room: r.Str(maxName)}
}

func putReq(w *wire.Writer, q *wasm.Request) {
	w.Str(q.Method)
	w.Str(q.URI)
	w.Str(q.Host)
	w.Str(q.RemoteAddr)
	n := 0
	for _, vs := range q.Header {
		n += len(vs)
	}
	w.U64(uint64(n))
	for k, vs := range q.Header {
		for _, v := range vs {
			w.Str(k)
			w.Str(v)
		}
	}
	w.Bytes(q.Body)
}

func getReq(r *wire.Reader) *wasm.Request {
	q := &wasm.Request{Method: r.Str(64), URI: r.Str(64 << 10), Host: r.Str(1024), RemoteAddr: r.Str(256), Header: http.Header{}, Proto: "HTTP/1.1"}
	n := r.Count(2)
	for i := 0; i < n && r.Err == nil; i++ {
		k, v := r.Str(64<<10), r.Str(64<<10)
		q.Header[k] = append(q.Header[k], v)
	}
	q.Body = r.Bytes(mesh.MaxPayload)
	q.Path, q.Query = splitURI(q.URI)
	return q
}

func splitURI(uri string) (string, string) {
	for i := 0; i < len(uri); i++ {
		if uri[i] == '?' {
			return uri[:i], uri[i+1:]
		}
	}
	return uri, ""
}

func (m *upMsg) encode() []byte {
	w := wire.NewWriter()
	w.U64(uint64(m.op))
	putKey(w, m.key)
	w.U64(m.rid)
	switch m.op {
	case upOpen:
		putReq(w, m.req)
	case upFrame:
		w.Bool(m.binary)
		w.Bytes(m.data)
	case upClose:
		w.U64(uint64(m.code))
	}
	return w.B
}

func decodeUp(p []byte) (upMsg, error) {
	r := wire.NewReader(p)
	m := upMsg{op: int(r.U64()), key: getKey(r), rid: r.U64()}
	switch m.op {
	case upOpen:
		m.req = getReq(r)
	case upFrame:
		m.binary = r.Bool()
		m.data = r.Bytes(mesh.MaxPayload)
	case upClose:
		m.code = int(r.U64())
	default:
		r.Fail("unknown relay op %d", m.op)
	}
	return m, r.Done()
}

func (m *downMsg) encode() []byte {
	w := wire.NewWriter()
	putKey(w, m.key)
	w.U64(uint64(len(m.rids)))
	for _, id := range m.rids {
		w.U64(id)
	}
	w.Bool(m.close)
	if m.close {
		w.U64(uint64(m.code))
		w.Str(m.reason)
	} else {
		w.Bool(m.binary)
		w.Bytes(m.data)
	}
	return w.B
}

func decodeDown(p []byte) (downMsg, error) {
	r := wire.NewReader(p)
	m := downMsg{key: getKey(r)}
	n := r.Count(1)
	for i := 0; i < n && r.Err == nil; i++ {
		m.rids = append(m.rids, r.U64())
	}
	if m.close = r.Bool(); m.close {
		m.code = int(r.U64())
		m.reason = r.Str(256)
	} else {
		m.binary = r.Bool()
		m.data = r.Bytes(mesh.MaxPayload)
	}
	return m, r.Done()
}

func (s *Service) publishDown(pop string, m *downMsg) {
	if err := s.opts.Mesh.Publish(pop, "room.down", m.encode()); err != nil {
		s.log.Debug("relaying to a PoP failed", "pop", pop, "err", err)
	}
}

func (s *Service) publishUp(pop string, m *upMsg) {
	if err := s.opts.Mesh.Publish(pop, "room.up", m.encode()); err != nil {
		s.log.Debug("relaying to a room's owner failed", "pop", pop, "err", err)
	}
}

func (s *Service) serveRelay() error {
	if err := s.opts.Mesh.HandleMessages("room.up", s.handleUp); err != nil {
		return err
	}
	if err := s.opts.Mesh.HandleMessages("room.down", s.handleDown); err != nil {
		return err
	}
	if err := s.opts.Mesh.HandleRequestsAsync("room.http", s.handleHTTP); err != nil {
		return err
	}
	return s.serveOwner()
}

// relay connects a socket to the room's owner through the mesh and serves
// it until it closes. false: the owner could not be asked.
func (s *Service) relay(c *wsConn, k Key, owner string, req *wasm.Request) bool {
	rid := s.nextRID.Add(1)
	rc := &relayConn{key: k, owner: owner, ws: c}
	s.mu.Lock()
	s.relayed[rid] = rc
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.relayed, rid)
		s.mu.Unlock()
	}()
	if !s.opts.Mesh.Up(owner) {
		return false
	}
	s.publishUp(owner, &upMsg{op: upOpen, key: k, rid: rid, req: req})
	code := c.readLoop(func(data []byte, binary bool) bool {
		s.publishUp(owner, &upMsg{op: upFrame, key: k, rid: rid, data: data, binary: binary})
		return true
	})
	s.publishUp(owner, &upMsg{op: upClose, key: k, rid: rid, code: code})
	return true
}

// handleDown delivers the owner's frames to sockets here.
func (s *Service) handleDown(from string, p []byte) {
	m, err := decodeDown(p)
	if err != nil {
		s.log.Warn("bad relay message", "from", from, "err", err)
		return
	}
	s.mu.Lock()
	targets := make([]*wsConn, 0, len(m.rids))
	for _, id := range m.rids {
		if rc := s.relayed[id]; rc != nil && rc.owner == from {
			targets = append(targets, rc.ws)
		}
	}
	s.mu.Unlock()
	if m.close {
		for _, c := range targets {
			c.close(m.code, m.reason)
		}
		return
	}
	if len(targets) == 0 {
		return
	}
	pm, err := newPrepared(m.binary, m.data)
	if err != nil {
		return
	}
	for _, c := range targets {
		c.send(pm, len(m.data))
	}
}

// handleUp takes a relay's messages at the owner.
func (s *Service) handleUp(from string, p []byte) {
	m, err := decodeUp(p)
	if err != nil {
		s.log.Warn("bad relay message", "from", from, "err", err)
		return
	}
	id := remoteID{from, m.rid}
	s.mu.Lock()
	if po := s.pendingUp[id]; po != nil {
		switch m.op {
		case upFrame:
			po.frames = append(po.frames, m)
		case upClose:
			po.closed, po.code = true, m.code
		}
		s.mu.Unlock()
		return
	}
	r := s.rooms[m.key]
	if r == nil {
		r = s.handing[m.key] // moving away: its sockets' last frames go with it
	}
	switch m.op {
	case upOpen:
		if r == nil {
			s.pendingUp[id] = &pendingOpen{}
			s.mu.Unlock()
			go s.openRemote(from, m)
			return
		}
		s.mu.Unlock()
		s.attachRemote(r, from, m)
	case upFrame:
		s.mu.Unlock()
		if c := r.remoteConn(id); c != nil {
			r.post(&event{kind: evMessage, conn: c, data: m.data, binary: m.binary})
		} else {
			s.publishDown(from, &downMsg{key: m.key, rids: []uint64{m.rid}, close: true, code: CloseMoved, reason: "the room is not here; reconnect"})
		}
	case upClose:
		s.mu.Unlock()
		if c := r.remoteConn(id); c != nil {
			r.dropConn(c, m.code)
		}
	}
}

func (r *room) remoteConn(id remoteID) *rconn {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.remote[id]
}

func (s *Service) attachRemote(r *room, from string, m upMsg) bool {
	c := &rconn{relay: from, rid: m.rid}
	if !r.addConn(c, m.req) {
		s.publishDown(from, &downMsg{key: m.key, rids: []uint64{m.rid}, close: true, code: CloseTryAgain, reason: "the room is full or moving; reconnect"})
		return false
	}
	return true
}

// openRemote finds (or becomes) the owner of a room a relay opens a
// connection to, then replays what the connection sent meanwhile.
func (s *Service) openRemote(from string, m upMsg) {
	id := remoteID{from, m.rid}
	var r *room
	if opts, ok := s.roomOptions(m.key); ok {
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		r, _, _ = s.ensure(ctx, m.key, opts, "")
		cancel()
	}
	s.mu.Lock()
	po := s.pendingUp[id]
	delete(s.pendingUp, id)
	if r == nil {
		s.mu.Unlock()
		s.publishDown(from, &downMsg{key: m.key, rids: []uint64{m.rid}, close: true, code: CloseMoved, reason: "the room is owned elsewhere; reconnect"})
		return
	}
	if po.closed {
		s.mu.Unlock()
		return
	}
	if !s.attachRemote(r, from, m) {
		s.mu.Unlock()
		return
	}
	c := r.remoteConn(id)
	for _, f := range po.frames {
		r.post(&event{kind: evMessage, conn: c, data: f.data, binary: f.binary})
	}
	s.mu.Unlock()
}

// PeerEvent tells the rooms that the link to a PoP went up or down: a
// relay's sockets whose owner is out of reach are closed (4003: reconnect);
// an owner's connections relayed by a PoP out of reach are closed.
func (s *Service) PeerEvent(peer string, up bool) {
	if up {
		return
	}
	s.mu.Lock()
	var relayed []*wsConn
	for _, rc := range s.relayed {
		if rc.owner == peer {
			relayed = append(relayed, rc.ws)
		}
	}
	rooms := make([]*room, 0, len(s.rooms)+len(s.handing))
	for _, r := range s.rooms {
		rooms = append(rooms, r)
	}
	for _, r := range s.handing {
		rooms = append(rooms, r)
	}
	for id := range s.pendingUp {
		if id.pop == peer {
			s.pendingUp[id].closed = true
		}
	}
	s.mu.Unlock()
	for _, c := range relayed {
		c.close(CloseUnreachable, "the room's PoP cannot be reached; reconnect")
	}
	for _, r := range rooms {
		r.mu.Lock()
		var gone []*rconn
		for id, c := range r.remote {
			if id.pop == peer {
				gone = append(gone, c)
			}
		}
		r.mu.Unlock()
		for _, c := range gone {
			r.dropConn(c, 1006)
		}
	}
}

// ---- HTTP requests to rooms ----

// maxRoomRequest bounds a request body to a room.
const maxRoomRequest = 4 << 20

func (s *Service) serveRequest(w http.ResponseWriter, hr *http.Request, k Key, opts verge.RoomOptions) {
	body, err := io.ReadAll(io.LimitReader(hr.Body, maxRoomRequest+1))
	if err != nil || len(body) > maxRoomRequest {
		http.Error(w, fmt.Sprintf("a request to a room carries at most %d bytes", maxRoomRequest), http.StatusRequestEntityTooLarge)
		return
	}
	req := requestOf(hr, body)
	resp := s.request(hr.Context(), k, opts, req)
	for name, vs := range resp.Header {
		w.Header()[name] = vs
	}
	w.WriteHeader(resp.Status)
	w.Write(resp.Body)
}

// request runs req as room k's on_request, here or at its owner.
func (s *Service) request(ctx context.Context, k Key, opts verge.RoomOptions, req *wasm.Request) *wasm.Response {
	for try := 0; ; try++ {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		r, owner, err := s.ensure(rctx, k, opts, "")
		cancel()
		if err == nil && r != nil {
			return r.request(ctx, req)
		}
		if err == nil && owner != "" {
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			w := wire.NewWriter()
			putKey(w, k)
			putReq(w, req)
			out, err := s.opts.Mesh.Request(rctx, owner, "room.http", w.B)
			cancel()
			if err == nil {
				if resp, err := decodeResp(out); err == nil {
					return resp
				}
			}
			var re *mesh.RemoteError
			if !errors.As(err, &re) || try > 0 {
				return unavailable(fmt.Sprintf("the room's PoP %s did not answer: %v", owner, err))
			}
			continue // not the owner any more: ask again
		}
		if try > 0 || err != nil {
			return unavailable(fmt.Sprintf("the room is not available: %v", err))
		}
	}
}

func unavailable(msg string) *wasm.Response {
	resp := (&wasm.Error{Kind: "unavailable", Status: http.StatusServiceUnavailable, Msg: msg}).Response("")
	resp.Header.Set("Retry-After", "1")
	return resp
}

// request queues an HTTP request as an event and waits for its response
// (which leaves once the event's writes are durable).
func (r *room) request(ctx context.Context, req *wasm.Request) *wasm.Response {
	reply := make(chan *wasm.Response, 1)
	if !r.post(&event{kind: evRequest, req: req, reply: reply}) {
		return unavailable("the room moved; retry")
	}
	select {
	case resp := <-reply:
		return resp
	case <-ctx.Done():
		return unavailable("the room did not answer in time")
	}
}

func (s *Service) handleHTTP(p []byte, respond func([]byte, error)) {
	rd := wire.NewReader(p)
	k := getKey(rd)
	req := getReq(rd)
	if err := rd.Done(); err != nil {
		respond(nil, err)
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	r, err := s.ownedHere(ctx, k)
	if err != nil {
		respond(nil, err)
		return
	}
	respond(encodeResp(r.request(ctx, req)), nil)
}

func encodeResp(resp *wasm.Response) []byte {
	w := wire.NewWriter()
	w.U64(uint64(resp.Status))
	n := 0
	for _, vs := range resp.Header {
		n += len(vs)
	}
	w.U64(uint64(n))
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Str(k)
			w.Str(v)
		}
	}
	w.Bytes(resp.Body)
	return w.B
}

func decodeResp(p []byte) (*wasm.Response, error) {
	r := wire.NewReader(p)
	resp := &wasm.Response{Status: int(r.U64()), Header: http.Header{}}
	n := r.Count(2)
	for i := 0; i < n && r.Err == nil; i++ {
		k, v := r.Str(64<<10), r.Str(64<<10)
		resp.Header[k] = append(resp.Header[k], v)
	}
	resp.Body = r.Bytes(mesh.MaxPayload)
	return resp, r.Done()
}
