package rooms

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/host"
	"github.com/verge-edge/verge/internal/obs"
	"github.com/verge-edge/verge/internal/store"
	"github.com/verge-edge/verge/internal/wasm"
)

// Guest exports of a room function (docs/abi.md). A module without one of
// them ignores that event.
const (
	exportConnect = "verge_room_connect" // (conn i32) -> i32
	exportMessage = "verge_room_message" // (conn i32, binary i32) -> i32; the message is the body of handle 1
	exportClose   = "verge_room_close"   // (conn i32, code i32) -> i32
	exportAlarm   = "verge_room_alarm"   // () -> i32; the alarm's name is the body of handle 1
	exportRequest = "verge_room_request" // (req i32, resp i32) -> i32, as verge_handle
)

type eventKind int

const (
	evConnect eventKind = iota
	evMessage
	evClose
	evRequest
	evAlarm
)

func (k eventKind) String() string {
	switch k {
	case evConnect:
		return "connect"
	case evMessage:
		return "message"
	case evClose:
		return "close"
	case evRequest:
		return "request"
	}
	return "alarm"
}

// event is one thing that happens to a room; events run one at a time.
type event struct {
	kind   eventKind
	conn   *rconn
	data   []byte
	binary bool
	code   int
	req    *wasm.Request
	reply  chan *wasm.Response // evRequest
	alarm  string
}

// rconn is a connection of a room: a socket at this PoP, or one at a
// relay PoP (relay, rid).
type rconn struct {
	id    uint32
	tags  []string
	local *wsConn
	relay string
	rid   uint64
	open  bool // its connect event ran: broadcasts reach it
	gone  bool // closed: outputs to it are dropped
}

type remoteID struct {
	pop string
	rid uint64
}

// output is something an event sends, held by the output gate until the
// writes before it are durable (req ≤ durable).
type output struct {
	req     uint64
	targets []*rconn
	data    []byte
	binary  bool
	close   bool
	code    int
	reason  string
	reply   chan *wasm.Response
	resp    *wasm.Response
}

// batch is one event's storage writes.
type batch struct {
	seq  uint64
	puts []kv
}

type room struct {
	s     *Service
	key   Key
	opts  verge.RoomOptions
	token uint64

	mu      sync.Mutex
	queue   []*event
	running bool
	conns   map[uint32]*rconn
	remote  map[remoteID]*rconn
	nextID  uint32
	stopped bool
	// moving: a hand-over is under way; no event starts (they queue).
	// handing: the lease is the new owner's; the room's sockets are being
	// closed and what they still send is collected for the new owner.
	// holding: this PoP just took the room over by a move; no event starts
	// until the old owner's held frames arrive (or holdFor passes).
	moving  bool
	handing bool
	holding bool

	// Owned by the running event (and by sweep while nothing runs).
	actor *wasm.Actor
	fn    *wasm.Function
	cache map[string][]byte // nil: hibernating
	size  int               // bytes of keys and values stored
	last  time.Time         // end of the last event

	alarms     map[string]int64 // name → Unix ms, always loaded
	alarmTimer *time.Timer
	alarmFails map[string]int

	// the output gate
	out        []*output
	wseq       uint64
	durable    uint64
	batches    []batch    // staged, waiting for a backup slot
	inflight   []*flight  // backups on their way, oldest first
	bseq       uint64     // backups sent under token
	committing bool       // len(inflight) > 0
	idle       *sync.Cond // signalled when the gate empties
}

func newRoom(s *Service, k Key, opts verge.RoomOptions, token uint64) *room {
	r := &room{s: s, key: k, opts: opts.WithDefaults(), token: token, conns: map[uint32]*rconn{},
		remote: map[remoteID]*rconn{}, alarms: map[string]int64{}, alarmFails: map[string]int{}, last: time.Now()}
	r.idle = sync.NewCond(&r.mu)
	return r
}

// post queues an event and makes sure it runs.
func (r *room) post(ev *event) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.postLocked(ev)
}

func (r *room) postLocked(ev *event) bool {
	if r.stopped {
		return false
	}
	r.queue = append(r.queue, ev)
	r.kickLocked()
	return true
}

// kickLocked starts the event loop if events wait and may run. r.mu is
// held.
func (r *room) kickLocked() {
	if !r.running && !r.moving && !r.holding && len(r.queue) > 0 && !r.stopped {
		r.running = true
		go r.run()
	}
}

// addConn registers a connection and queues its connect event. It refuses
// a connection past the room's limit.
func (r *room) addConn(c *rconn, req *wasm.Request) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped || len(r.conns) >= r.opts.MaxConnections {
		return false
	}
	r.nextID++
	c.id = r.nextID
	r.conns[c.id] = c
	if c.local == nil {
		r.remote[remoteID{c.relay, c.rid}] = c
	}
	if r.handing {
		// It came as the room left: it is told to reconnect like every
		// other socket, and what it sends meanwhile goes with the room.
		r.dispatch(&output{targets: []*rconn{c}, close: true, code: CloseMoved, reason: movedReason})
		return true
	}
	return r.postLocked(&event{kind: evConnect, conn: c, req: req})
}

const movedReason = "the room moved to another PoP; reconnect"

// dropConn unregisters a connection (its socket is closed) and queues its
// close event.
func (r *room) dropConn(c *rconn, code int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c.gone {
		return
	}
	c.gone = true
	delete(r.conns, c.id)
	if c.local == nil {
		delete(r.remote, remoteID{c.relay, c.rid})
	}
	if r.handing {
		r.idle.Broadcast() // the hand-over waits for the last socket
		return
	}
	r.postLocked(&event{kind: evClose, conn: c, code: code})
}

func (r *room) run() {
	for {
		r.mu.Lock()
		if r.moving && !r.stopped {
			// A hand-over: what is queued stays queued for the new owner.
			r.running = false
			r.idle.Broadcast()
			r.mu.Unlock()
			return
		}
		if len(r.queue) == 0 || r.stopped {
			r.queue = nil
			r.running = false
			r.last = time.Now()
			r.idle.Broadcast()
			if r.stopped && r.actor != nil {
				r.actor.Close()
				r.actor = nil
			}
			r.mu.Unlock()
			return
		}
		ev := r.queue[0]
		r.queue[0] = nil
		r.queue = r.queue[1:]
		r.mu.Unlock()
		r.handle(ev)
	}
}

// handle runs one event in the room's instance.
func (r *room) handle(ev *event) {
	start, woke := time.Now(), r.actor == nil || r.cache == nil
	defer func() { r.s.stats.event(time.Since(start), woke) }()
	r.s.countEvent(r.key, ev.kind)
	f, release, ok := r.s.opts.Function(r.key.App, r.key.Fn)
	if !ok || f.Spec.Kind != verge.KindRoom {
		r.fail(ev, nil)
		go r.stop(CloseRestart, "the room's function is not served here any more", true)
		return
	}
	defer release()
	if err := r.wake(f); err != nil {
		r.s.log.Error("room could not start", "room", r.key.String(), "err", err)
		r.fail(ev, err)
		return
	}
	var export string
	var args []uint64
	req := ev.req
	switch ev.kind {
	case evConnect:
		// From now on the connection is the room's: what this event and
		// later ones broadcast reaches it, and nothing before did.
		r.mu.Lock()
		ev.conn.open = true
		r.mu.Unlock()
		export, args = exportConnect, []uint64{uint64(ev.conn.id)}
	case evMessage:
		export, args = exportMessage, []uint64{uint64(ev.conn.id), b2u(ev.binary)}
		req = &wasm.Request{ID: "", Method: "MESSAGE", Body: ev.data}
	case evClose:
		export, args = exportClose, []uint64{uint64(ev.conn.id), uint64(uint32(ev.code))}
	case evRequest:
		export, args = exportRequest, []uint64{1, 2}
	case evAlarm:
		export = exportAlarm
		req = &wasm.Request{Method: "ALARM", Body: []byte(ev.alarm)}
	}
	ec := &eventCtx{r: r}
	if ev.kind == evAlarm {
		// The alarm is spent before it runs; the guest may set it again.
		if at, ok := r.alarms[ev.alarm]; !ok || at > time.Now().UnixMilli() {
			return // cancelled or moved later since it was queued
		}
		ec.CancelAlarm(ev.alarm)
	}
	var resp *wasm.Response
	var err error
	var rc uint32
	if f.HasExport(export) {
		ctx, span := r.eventSpan(ev, export, woke)
		ctx = host.WithRoom(ctx, ec)
		resp, rc, err = r.actor.Call(ctx, export, args, req)
		if span.IsRecording() {
			if resp != nil {
				span.SetAttributes(attribute.Int64("verge.cpu_time_us", resp.CPU.Microseconds()))
			}
			if err != nil {
				span.SetStatus(codes.Error, err.Error())
			}
		}
		span.End()
		if err == nil && rc != 0 {
			err = &wasm.Error{Kind: wasm.KindGuestError, Status: http.StatusInternalServerError, Msg: fmt.Sprintf("%s returned error code %d", export, rc)}
		}
	} else if ev.kind == evRequest {
		resp = &wasm.Response{Status: http.StatusNotFound, Header: http.Header{}, Body: []byte("this room serves no HTTP requests\n")}
	}
	if err != nil {
		ec.undo()
		r.s.log.Warn("room event failed; the room goes on", "room", r.key.String(), "event", export, "err", err)
		if ev.kind == evAlarm {
			r.retryAlarm(ev.alarm)
		}
		r.fail(ev, err)
		return
	}
	if ev.kind == evAlarm {
		delete(r.alarmFails, ev.alarm)
	}
	if ev.kind == evRequest {
		if resp.Header == nil {
			resp.Header = http.Header{}
		}
		ec.outs = append(ec.outs, &output{reply: ev.reply, resp: resp})
	}
	r.commit(ec)
}

// eventSpan starts the span of a room event: in the trace of the client's
// upgrade or HTTP request when it carried one, else a trace of its own
// (a message or an alarm has no request to continue).
func (r *room) eventSpan(ev *event, export string, woke bool) (context.Context, trace.Span) {
	ctx := context.Background()
	if (ev.kind == evConnect || ev.kind == evRequest) && ev.req != nil && ev.req.Header != nil {
		ctx = obs.Propagator.Extract(ctx, propagation.HeaderCarrier(ev.req.Header))
	}
	return obs.Tracer().Start(ctx, "room "+strings.TrimPrefix(export, "verge_room_"),
		trace.WithAttributes(attribute.String("verge.app", r.key.App), attribute.String("verge.function", r.key.Fn),
			attribute.String("verge.room", r.key.Room), attribute.String("verge.pop", r.s.opts.Self), attribute.Bool("verge.woke", woke)))
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// fail answers an event that could not run: a connection is closed, a
// request gets an error.
func (r *room) fail(ev *event, err error) {
	switch ev.kind {
	case evConnect:
		if ev.conn != nil {
			r.mu.Lock()
			r.out = append(r.out, &output{req: r.wseq, targets: []*rconn{ev.conn}, close: true, code: CloseError, reason: "the room refused the connection"})
			r.pump()
			r.mu.Unlock()
		}
	case evRequest:
		e := wasm.AsError(err)
		if err == nil {
			e = &wasm.Error{Kind: "unavailable", Status: http.StatusServiceUnavailable, Msg: "the room is not available here"}
		}
		ev.reply <- e.Response("")
	}
}

// wake gives the room an instance of f and its storage, if it is
// hibernating (or f is a new version).
func (r *room) wake(f *wasm.Function) error {
	if r.actor != nil && r.fn != f {
		r.actor.Close()
		r.mu.Lock()
		r.actor = nil
		r.mu.Unlock()
	}
	if r.actor == nil {
		a, err := r.s.actorFor(f)
		if err != nil {
			return err
		}
		r.mu.Lock()
		r.actor, r.fn = a, f
		r.mu.Unlock()
	}
	if r.cache == nil {
		state, err := scanRoom(r.s.opts.Store, r.key)
		if err != nil {
			return err
		}
		cache := make(map[string][]byte, len(state))
		for _, x := range state {
			if _, isAlarm := alarmName(x.k); !isAlarm {
				cache[x.k] = x.v
			}
		}
		r.mu.Lock()
		r.cache = cache
		r.mu.Unlock()
	}
	return nil
}

// commit hands an event's writes to the committer and its outputs to the
// gate.
func (r *room) commit(ec *eventCtx) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(ec.puts) > 0 {
		r.wseq++
		r.batches = append(r.batches, batch{seq: r.wseq, puts: ec.puts})
		r.startBackupLocked()
	}
	for _, o := range ec.outs {
		o.req = r.wseq
		r.out = append(r.out, o)
	}
	if ec.alarmsChanged {
		r.scheduleAlarmLocked()
	}
	r.pump()
}

// pump sends the outputs whose writes are durable, in order. r.mu is held.
func (r *room) pump() {
	n := 0
	for _, o := range r.out {
		if o.req > r.durable {
			break
		}
		r.dispatch(o)
		n++
	}
	if n > 0 {
		clear(r.out[:n])
		r.out = r.out[n:]
	}
	if len(r.out) == 0 && !r.committing {
		r.idle.Broadcast()
	}
}

// dispatch sends one output: to sockets here, and one mesh message per
// relay PoP.
func (r *room) dispatch(o *output) {
	if o.reply != nil {
		o.reply <- o.resp
		return
	}
	var pm *websocket.PreparedMessage
	var byRelay map[string][]uint64
	for _, c := range o.targets {
		if c.gone && !o.close {
			continue
		}
		if c.local != nil {
			if o.close {
				c.local.close(o.code, o.reason)
				continue
			}
			if pm == nil {
				var err error
				if pm, err = websocket.NewPreparedMessage(msgType(o.binary), o.data); err != nil {
					continue
				}
			}
			c.local.send(pm, len(o.data))
			continue
		}
		if byRelay == nil {
			byRelay = map[string][]uint64{}
		}
		byRelay[c.relay] = append(byRelay[c.relay], c.rid)
	}
	for pop, rids := range byRelay {
		m := downMsg{key: r.key, rids: rids, data: o.data, binary: o.binary, close: o.close, code: o.code, reason: o.reason}
		r.s.publishDown(pop, &m)
	}
}

func msgType(binary bool) int {
	if binary {
		return websocket.BinaryMessage
	}
	return websocket.TextMessage
}

// maxInFlight is how many backups of a room may be in flight at once.
// One would make a write that comes while a backup travels wait for the
// rest of that round trip and then its own (1.5 round trips to the centre
// on average); several let each write leave at once. Past it, writes merge
// into the next backup.
const maxInFlight = 8

// flight is a backup on its way: the writes up to seq.
type flight struct {
	seq  uint64
	done bool
}

// startBackupLocked sends the staged batches as one backup, unless
// maxInFlight are on their way. The local store's write is staged here, in
// the room's order; the centre applies backups in their numbers' order.
// r.mu is held.
func (r *room) startBackupLocked() {
	if len(r.batches) == 0 || len(r.inflight) >= maxInFlight || r.stopped {
		return
	}
	bs := r.batches
	r.batches = nil
	puts := mergeBatches(bs)
	f := &flight{seq: bs[len(bs)-1].seq}
	r.inflight = append(r.inflight, f)
	r.committing = true
	r.bseq++
	var local *store.Pending
	var err error
	if r.s.centre == nil {
		sp := make([]store.Put, len(puts))
		for i, p := range puts {
			sp[i] = store.Put{Key: store.Key{App: nsApp, Collection: roomColl(r.key), Doc: roomDoc(r.key, p.k)}, Value: p.v}
		}
		local, err = r.s.opts.Store.Write(sp)
	}
	go r.backup(f, puts, r.token, r.bseq, r.nextAlarm(), local, err)
}

// backup makes one flight durable and opens the gate behind every flight
// before it that is durable too.
func (r *room) backup(f *flight, puts []kv, token, bseq uint64, next int64, local *store.Pending, err error) {
	if err == nil {
		err = r.persist(puts, token, bseq, next, local)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		if !r.stopped {
			if errors.Is(err, ErrFenced) {
				r.s.log.Warn("room fenced: its lease moved; stopping it here", "room", r.key.String())
				go r.stop(CloseRestart, "the room moved; reconnect", false)
			} else {
				r.s.log.Error("room storage write failed; stopping the room", "room", r.key.String(), "err", err)
				go r.stop(CloseRestart, "the room's storage failed; reconnect", false)
			}
		}
		// Nothing behind it may leave: the gate stays shut.
		r.inflight, r.batches = nil, nil
		r.committing = false
		r.idle.Broadcast()
		return
	}
	f.done = true
	n := 0
	for n < len(r.inflight) && r.inflight[n].done {
		r.durable = r.inflight[n].seq
		n++
	}
	if n == 0 {
		return // an earlier flight is still on its way
	}
	clear(r.inflight[:n])
	r.inflight = r.inflight[n:]
	r.committing = len(r.inflight) > 0
	r.startBackupLocked()
	r.pump()
	if !r.committing {
		r.idle.Broadcast()
	}
}

// persist makes puts durable at the centre (the same store at the central
// PoP) and waits for this PoP's staged write of them, retrying the centre
// while this PoP's session lasts.
func (r *room) persist(puts []kv, token, bseq uint64, nextAlarm int64, local *store.Pending) error {
	s := r.s
	if s.centre != nil {
		ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
		defer cancel()
		return s.centre.Backup(ctx, r.key, token, bseq, puts, nextAlarm)
	}
	var err error
	for {
		ctx, cancel := context.WithTimeout(s.ctx, 2*time.Second)
		err = s.api.Backup(ctx, r.key, token, bseq, puts, nextAlarm)
		cancel()
		if err == nil || errors.Is(err, ErrFenced) || s.ctx.Err() != nil {
			break
		}
		if time.Now().UnixNano() > s.sessionGood.Load() {
			return ErrFenced // the lease may be gone: nothing may leave
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	return local.Wait(s.ctx)
}

// mergeBatches joins batches into one write, the last value of each key
// winning, in first-write order.
func mergeBatches(bs []batch) []kv {
	if len(bs) == 1 {
		return bs[0].puts
	}
	idx := map[string]int{}
	var out []kv
	for _, b := range bs {
		for _, p := range b.puts {
			if i, ok := idx[p.k]; ok {
				out[i].v = p.v
				continue
			}
			idx[p.k] = len(out)
			out = append(out, p)
		}
	}
	return out
}

// drain waits until no event runs and every output has left.
func (r *room) drain() {
	r.mu.Lock()
	for (r.running || r.committing || len(r.out) > 0 || len(r.batches) > 0) && !r.stopped {
		r.idle.Wait()
	}
	r.mu.Unlock()
}

// stop ends the room here: every connection is closed with code (relayed
// ones through their PoPs), pending requests fail, and the room is
// forgotten. release gives the lease back too.
func (r *room) stop(code int, reason string, release bool) {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return
	}
	r.stopLocked(code, reason, release)
}

// stopLocked is stop with r.mu held; it unlocks it.
func (r *room) stopLocked(code int, reason string, release bool) {
	r.stopped = true
	conns := make([]*rconn, 0, len(r.conns))
	for _, c := range r.conns {
		conns = append(conns, c)
		c.gone = true
	}
	r.conns = map[uint32]*rconn{}
	r.remote = map[remoteID]*rconn{}
	for _, ev := range r.queue {
		if ev.kind == evRequest {
			ev.reply <- (&wasm.Error{Kind: "unavailable", Status: http.StatusServiceUnavailable, Msg: "the room moved; retry"}).Response("")
		}
	}
	r.queue = nil
	for _, o := range r.out {
		if o.reply != nil {
			o.reply <- (&wasm.Error{Kind: "unavailable", Status: http.StatusServiceUnavailable, Msg: "the room moved; retry"}).Response("")
		}
	}
	r.out = nil
	if r.alarmTimer != nil {
		r.alarmTimer.Stop()
	}
	r.idle.Broadcast()
	r.dispatch(&output{targets: conns, close: true, code: code, reason: reason})
	running := r.running
	r.mu.Unlock()
	r.s.forget(r)
	if !running && r.actor != nil {
		r.actor.Close()
		r.actor = nil
	}
	if release {
		if err := r.s.release(r.key, r.token, ""); err != nil && !errors.Is(err, ErrFenced) {
			r.s.log.Warn("releasing a room's lease", "room", r.key.String(), "err", err)
		}
	}
}

// sweep hibernates the room after hibernate_after without events, and
// forgets it (giving its lease back) when nobody is connected and no
// alarm is set.
func (r *room) sweep(now time.Time) {
	r.mu.Lock()
	busy := r.running || r.committing || len(r.out) > 0 || len(r.batches) > 0 || r.stopped || r.moving || r.holding
	idleFor := now.Sub(r.last)
	if busy || idleFor < r.opts.HibernateAfter {
		r.mu.Unlock()
		return
	}
	r.hibernateLocked()
	evict := len(r.conns) == 0 && len(r.alarms) == 0 && idleFor >= r.opts.HibernateAfter+evictAfter
	r.mu.Unlock()
	if evict {
		r.stop(CloseGoingAway, "", true)
	}
}

// hibernate gives the room's instance back if nothing runs.
func (r *room) hibernate() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running || r.committing || len(r.out) > 0 || len(r.batches) > 0 {
		return
	}
	r.hibernateLocked()
}

func (r *room) hibernateLocked() {
	if r.actor != nil {
		r.actor.Close()
	}
	r.actor, r.cache = nil, nil
}

// evictAfter is how long a room nobody is connected to keeps its lease
// after hibernating, so that a client coming back finds it here.
const evictAfter = 30 * time.Second

// hibernating reports whether the room has no instance.
func (r *room) hibernating() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cache == nil
}

// ---- alarms ----

// nextAlarm is the earliest alarm (0: none). r.mu is held.
func (r *room) nextAlarm() int64 {
	var next int64
	for _, at := range r.alarms {
		if next == 0 || at < next {
			next = at
		}
	}
	return next
}

func (r *room) scheduleAlarm() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.scheduleAlarmLocked()
}

func (r *room) scheduleAlarmLocked() {
	if r.alarmTimer != nil {
		r.alarmTimer.Stop()
		r.alarmTimer = nil
	}
	next := r.nextAlarm()
	if next == 0 || r.stopped {
		return
	}
	r.alarmTimer = time.AfterFunc(time.Until(time.UnixMilli(next)), r.kickAlarms)
}

// kickAlarms queues an event for each alarm that is due.
func (r *room) kickAlarms() {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now().UnixMilli()
	var due []string
	for name, at := range r.alarms {
		if at <= now {
			due = append(due, name)
		}
	}
	sort.Slice(due, func(i, j int) bool { return r.alarms[due[i]] < r.alarms[due[j]] })
	for _, name := range due {
		r.postLocked(&event{kind: evAlarm, alarm: name})
	}
	if len(due) == 0 {
		r.scheduleAlarmLocked()
	}
}

// retryAlarm sets a failed alarm again, a second later per failure, five
// times at most.
func (r *room) retryAlarm(name string) {
	r.alarmFails[name]++
	if r.alarmFails[name] > 5 {
		r.s.log.Error("room alarm failed five times; dropped", "room", r.key.String(), "alarm", name)
		delete(r.alarmFails, name)
		ec := &eventCtx{r: r}
		ec.CancelAlarm(name)
		r.commit(ec)
		return
	}
	ec := &eventCtx{r: r}
	ec.SetAlarm(name, time.Now().Add(time.Duration(r.alarmFails[name])*time.Second))
	r.commit(ec)
}

// ---- what the guest's host calls do (host.Room) ----

// eventCtx is the room as one event's host calls see it: its writes and
// outputs are the event's, applied at once to the room's cache (so later
// reads see them) and undone if the event fails.
type eventCtx struct {
	r             *room
	puts          []kv
	undoLog       []undoEntry
	outs          []*output
	alarmsChanged bool
}

type undoEntry struct {
	key     string
	val     []byte
	had     bool
	alarm   bool
	alarmAt int64
}

func (e *eventCtx) ID() string { return e.r.key.Room }

func (e *eventCtx) conn(id uint32) (*rconn, error) {
	e.r.mu.Lock()
	c := e.r.conns[id]
	if c != nil && !c.open {
		c = nil
	}
	e.r.mu.Unlock()
	if c == nil {
		return nil, host.Errorf(host.ErrNoConnection, "no open connection %d in room %q", id, e.r.key.Room)
	}
	return c, nil
}

func (e *eventCtx) Send(id uint32, data []byte, binary bool) error {
	if len(data) > MaxOutMessage {
		return host.Errorf(host.ErrRoomLimit, "a message of %d bytes; the limit is %d", len(data), MaxOutMessage)
	}
	c, err := e.conn(id)
	if err != nil {
		return err
	}
	e.outs = append(e.outs, &output{targets: []*rconn{c}, data: append([]byte(nil), data...), binary: binary})
	return nil
}

func (e *eventCtx) Broadcast(data []byte, binary bool, exclude []uint32, tag string) error {
	if len(data) > MaxOutMessage {
		return host.Errorf(host.ErrRoomLimit, "a message of %d bytes; the limit is %d", len(data), MaxOutMessage)
	}
	e.r.mu.Lock()
	targets := make([]*rconn, 0, len(e.r.conns))
	for _, c := range e.r.conns {
		if !c.open || (tag != "" && !hasTag(c.tags, tag)) {
			continue
		}
		excluded := false
		for _, x := range exclude {
			if x == c.id {
				excluded = true
				break
			}
		}
		if !excluded {
			targets = append(targets, c)
		}
	}
	e.r.mu.Unlock()
	if len(targets) > 0 {
		e.outs = append(e.outs, &output{targets: targets, data: append([]byte(nil), data...), binary: binary})
	}
	return nil
}

func hasTag(tags []string, t string) bool {
	for _, x := range tags {
		if x == t {
			return true
		}
	}
	return false
}

func (e *eventCtx) Close(id uint32, code int, reason string) error {
	if code != 1000 && (code < 3000 || code > 4999) {
		return host.Errorf(host.ErrRoomInvalid, "close code %d: expected 1000 or 3000-4999", code)
	}
	if len(reason) > 123 {
		return host.Errorf(host.ErrRoomInvalid, "a close reason of %d bytes; WebSockets allow 123", len(reason))
	}
	c, err := e.conn(id)
	if err != nil {
		return err
	}
	e.outs = append(e.outs, &output{targets: []*rconn{c}, close: true, code: code, reason: reason})
	return nil
}

func (e *eventCtx) Conns(tag string) []host.RoomConn {
	e.r.mu.Lock()
	out := make([]host.RoomConn, 0, len(e.r.conns))
	for _, c := range e.r.conns {
		if c.open && (tag == "" || hasTag(c.tags, tag)) {
			out = append(out, host.RoomConn{ID: c.id, Tags: c.tags})
		}
	}
	e.r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (e *eventCtx) SetTags(id uint32, tags []string) error {
	if len(tags) > MaxTags {
		return host.Errorf(host.ErrRoomInvalid, "%d tags; a connection has at most %d", len(tags), MaxTags)
	}
	for _, t := range tags {
		if t == "" || len(t) > MaxTag {
			return host.Errorf(host.ErrRoomInvalid, "a tag is 1 to %d bytes", MaxTag)
		}
	}
	c, err := e.conn(id)
	if err != nil {
		return err
	}
	e.r.mu.Lock()
	c.tags = append([]string(nil), tags...)
	e.r.mu.Unlock()
	return nil
}

func checkKey(key string) error {
	if key == "" || len(key) > MaxStorageKey || key[0] == 0 {
		return host.Errorf(host.ErrRoomInvalid, "a storage key is 1 to %d bytes and does not start with a NUL", MaxStorageKey)
	}
	return nil
}

func (e *eventCtx) Get(key string) ([]byte, bool, error) {
	if err := checkKey(key); err != nil {
		return nil, false, err
	}
	v, ok := e.r.cache[key]
	return v, ok, nil
}

func (e *eventCtx) Put(key string, value []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if len(value) > MaxValue {
		return host.Errorf(host.ErrRoomLimit, "a value of %d bytes; the limit is %d", len(value), MaxValue)
	}
	if value == nil {
		value = []byte{}
	}
	old, had := e.r.cache[key]
	size := e.r.size + len(value) - len(old)
	if !had {
		size += len(key)
	}
	if size > MaxRoomStorage {
		return host.Errorf(host.ErrRoomLimit, "the room would store %d bytes; the limit is %d", size, MaxRoomStorage)
	}
	e.undoLog = append(e.undoLog, undoEntry{key: key, val: old, had: had})
	e.r.mu.Lock()
	e.r.cache[key] = value
	e.r.size = size
	e.r.mu.Unlock()
	e.puts = append(e.puts, kv{k: key, v: value})
	return nil
}

func (e *eventCtx) Delete(key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	old, had := e.r.cache[key]
	if !had {
		return nil
	}
	e.undoLog = append(e.undoLog, undoEntry{key: key, val: old, had: true})
	e.r.mu.Lock()
	delete(e.r.cache, key)
	e.r.size -= len(key) + len(old)
	e.r.mu.Unlock()
	e.puts = append(e.puts, kv{k: key})
	return nil
}

func (e *eventCtx) List(prefix, after string, limit int) ([]string, [][]byte, string, error) {
	var keys []string
	for k := range e.r.cache {
		if strings.HasPrefix(k, prefix) && k > after {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	next := ""
	if len(keys) > limit {
		keys = keys[:limit]
		next = keys[limit-1]
	}
	values := make([][]byte, len(keys))
	for i, k := range keys {
		values[i] = e.r.cache[k]
	}
	return keys, values, next, nil
}

func (e *eventCtx) SetAlarm(name string, at time.Time) error {
	if name == "" || len(name) > MaxStorageKey-len(alarmKey) {
		return host.Errorf(host.ErrRoomInvalid, "an alarm name is 1 to %d bytes", MaxStorageKey-len(alarmKey))
	}
	old, had := e.r.alarms[name]
	if !had && len(e.r.alarms) >= MaxAlarms {
		return host.Errorf(host.ErrRoomLimit, "a room has at most %d alarms", MaxAlarms)
	}
	e.undoLog = append(e.undoLog, undoEntry{key: name, alarm: true, had: had, alarmAt: old})
	ms := at.UnixMilli()
	e.r.mu.Lock()
	e.r.alarms[name] = ms
	e.r.mu.Unlock()
	e.puts = append(e.puts, kv{k: alarmKey + name, v: binary.BigEndian.AppendUint64(nil, uint64(ms))})
	e.alarmsChanged = true
	return nil
}

func (e *eventCtx) CancelAlarm(name string) error {
	old, had := e.r.alarms[name]
	if !had {
		return host.Errorf(host.ErrNoAlarm, "no alarm %q is set", name)
	}
	e.undoLog = append(e.undoLog, undoEntry{key: name, alarm: true, had: true, alarmAt: old})
	e.r.mu.Lock()
	delete(e.r.alarms, name)
	e.r.mu.Unlock()
	e.puts = append(e.puts, kv{k: alarmKey + name})
	e.alarmsChanged = true
	return nil
}

func (e *eventCtx) Alarms() []host.RoomAlarm {
	out := make([]host.RoomAlarm, 0, len(e.r.alarms))
	for name, at := range e.r.alarms {
		out = append(out, host.RoomAlarm{Name: name, At: time.UnixMilli(at)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// undo takes back a failed event's writes, newest first.
func (e *eventCtx) undo() {
	r := e.r
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(e.undoLog) - 1; i >= 0; i-- {
		u := e.undoLog[i]
		switch {
		case u.alarm && u.had:
			r.alarms[u.key] = u.alarmAt
		case u.alarm:
			delete(r.alarms, u.key)
		case u.had:
			if cur, ok := r.cache[u.key]; ok {
				r.size -= len(cur)
			} else {
				r.size += len(u.key)
			}
			r.cache[u.key] = u.val
			r.size += len(u.val)
		default:
			if cur, ok := r.cache[u.key]; ok {
				r.size -= len(u.key) + len(cur)
			}
			delete(r.cache, u.key)
		}
	}
	if r.cache == nil {
		// A failed wake: nothing was applied.
		return
	}
	e.puts, e.outs, e.undoLog = nil, nil, nil
}

// handOffIn runs, before anything else, the messages a room's previous
// owner held during its move; last ends the hold. The held messages come
// from connections that no longer exist (their clients reconnected as new
// ones): sends to them go nowhere, broadcasts reach everyone else.
func (r *room) handOffIn(frames []heldFrame, last bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return
	}
	ghosts := map[uint32]*rconn{}
	evs := make([]*event, 0, len(frames)+len(r.queue))
	for _, f := range frames {
		c := ghosts[f.conn]
		if c == nil {
			r.nextID++
			c = &rconn{id: r.nextID, gone: true}
			ghosts[f.conn] = c
		}
		evs = append(evs, &event{kind: evMessage, conn: c, data: f.data, binary: f.binary})
	}
	r.queue = append(evs, r.queue...)
	if last {
		r.holding = false
	}
	r.kickLocked()
}

// endHold lets a room that waited for a hand-off that never came run.
func (r *room) endHold() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.holding {
		r.s.log.Warn("a moved room's previous owner sent no hand-off; going on without it", "room", r.key.String())
		r.holding = false
		r.kickLocked()
	}
}
