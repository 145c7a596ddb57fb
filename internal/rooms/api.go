package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/verge-edge/verge/internal/mesh"
	"github.com/verge-edge/verge/internal/replicate/wire"
)

// centreAPI is the centre as a PoP's rooms see it: in process at the
// central PoP, over the mesh (one round trip) elsewhere.
type centreAPI interface {
	Heartbeat(ctx context.Context, pop string, session uint64) (bool, error)
	Acquire(ctx context.Context, k Key, pop string, session uint64, placement string) (Grant, error)
	Release(ctx context.Context, k Key, token uint64, to string) error
	Backup(ctx context.Context, k Key, token, seq uint64, puts []kv, nextAlarm int64) error
	Load(ctx context.Context, k Key, token uint64) ([]kv, error)
}

type localCentre struct{ c *Centre }

func (l localCentre) Heartbeat(_ context.Context, pop string, id uint64) (bool, error) {
	return l.c.Heartbeat(pop, id), nil
}
func (l localCentre) Acquire(ctx context.Context, k Key, pop string, id uint64, placement string) (Grant, error) {
	return l.c.Acquire(ctx, k, pop, id, placement)
}
func (l localCentre) Release(ctx context.Context, k Key, token uint64, to string) error {
	return l.c.Release(ctx, k, token, to)
}
func (l localCentre) Backup(ctx context.Context, k Key, token, seq uint64, puts []kv, next int64) error {
	return l.c.Backup(ctx, k, token, seq, puts, next)
}
func (l localCentre) Load(ctx context.Context, k Key, token uint64) ([]kv, error) {
	return l.c.Load(ctx, k, token)
}

// The centre's requests, kind "rooms.c": an op, then its fields; the reply
// is a status (0 ok, 1 fenced, 2 session ended) and the answer.
const (
	opHeartbeat = iota + 1
	opAcquire
	opRelease
	opBackup
	opLoad
)

const (
	replyOK = iota
	replyFenced
	replySessionEnded
)

type meshCentre struct {
	m       *mesh.Mesh
	central string
	timeout time.Duration
}

func (mc *meshCentre) call(ctx context.Context, w *wire.Writer) (*wire.Reader, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, mc.timeout)
		defer cancel()
	}
	out, err := mc.m.Request(ctx, mc.central, "rooms.c", w.B)
	if err != nil {
		var re *mesh.RemoteError
		if errors.As(err, &re) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	r := wire.NewReader(out)
	switch r.U64() {
	case replyOK:
		return r, nil
	case replyFenced:
		return nil, ErrFenced
	case replySessionEnded:
		return nil, ErrSessionEnded
	}
	return nil, errors.New("rooms: bad reply from the centre")
}

func (mc *meshCentre) Heartbeat(ctx context.Context, pop string, id uint64) (bool, error) {
	w := wire.NewWriter()
	w.U64(opHeartbeat)
	w.Str(pop)
	w.U64(id)
	r, err := mc.call(ctx, w)
	if errors.Is(err, ErrSessionEnded) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, r.Done()
}

func (mc *meshCentre) Acquire(ctx context.Context, k Key, pop string, id uint64, placement string) (Grant, error) {
	w := wire.NewWriter()
	w.U64(opAcquire)
	putKey(w, k)
	w.Str(pop)
	w.U64(id)
	w.Str(placement)
	r, err := mc.call(ctx, w)
	if err != nil {
		return Grant{}, err
	}
	g := Grant{Owner: r.Str(maxName), Token: r.U64(), From: r.Str(maxName)}
	return g, r.Done()
}

func (mc *meshCentre) Release(ctx context.Context, k Key, token uint64, to string) error {
	w := wire.NewWriter()
	w.U64(opRelease)
	putKey(w, k)
	w.U64(token)
	w.Str(to)
	_, err := mc.call(ctx, w)
	return err
}

func (mc *meshCentre) Backup(ctx context.Context, k Key, token, seq uint64, puts []kv, next int64) error {
	w := wire.NewWriter()
	w.U64(opBackup)
	putKey(w, k)
	w.U64(token)
	w.U64(seq)
	w.U64(uint64(next))
	putKVs(w, puts)
	_, err := mc.call(ctx, w)
	return err
}

func (mc *meshCentre) Load(ctx context.Context, k Key, token uint64) ([]kv, error) {
	w := wire.NewWriter()
	w.U64(opLoad)
	putKey(w, k)
	w.U64(token)
	r, err := mc.call(ctx, w)
	if err != nil {
		return nil, err
	}
	out := getKVs(r)
	return out, r.Done()
}

func putKVs(w *wire.Writer, puts []kv) {
	w.U64(uint64(len(puts)))
	for _, p := range puts {
		w.Str(p.k)
		w.Bool(p.v != nil)
		if p.v != nil {
			w.Bytes(p.v)
		}
	}
}

func getKVs(r *wire.Reader) []kv {
	n := r.Count(2)
	out := make([]kv, 0, n)
	for i := 0; i < n && r.Err == nil; i++ {
		x := kv{k: r.Str(MaxStorageKey)}
		if r.Bool() {
			x.v = append([]byte{}, r.Bytes(MaxValue)...)
		}
		out = append(out, x)
	}
	return out
}

// serveCentre answers the other PoPs' requests to the centre.
func (s *Service) serveCentre() error {
	return s.opts.Mesh.HandleRequestsAsync("rooms.c", func(p []byte, respond func([]byte, error)) {
		ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
		defer cancel()
		r := wire.NewReader(p)
		w := wire.NewWriter()
		var err error
		switch r.U64() {
		case opHeartbeat:
			pop, id := r.Str(maxName), r.U64()
			if err = r.Done(); err == nil && !s.centre.Heartbeat(pop, id) {
				err = ErrSessionEnded
			}
			w.U64(replyOK)
		case opAcquire:
			k, pop, id, placement := getKey(r), r.Str(maxName), r.U64(), r.Str(maxName)
			if err = r.Done(); err == nil {
				var g Grant
				if g, err = s.centre.Acquire(ctx, k, pop, id, placement); err == nil {
					w.U64(replyOK)
					w.Str(g.Owner)
					w.U64(g.Token)
					w.Str(g.From)
				}
			}
		case opRelease:
			k, token, to := getKey(r), r.U64(), r.Str(maxName)
			if err = r.Done(); err == nil {
				err = s.centre.Release(ctx, k, token, to)
				w.U64(replyOK)
			}
		case opBackup:
			k, token, seq, next := getKey(r), r.U64(), r.U64(), int64(r.U64())
			puts := getKVs(r)
			if err = r.Done(); err == nil {
				err = s.centre.Backup(ctx, k, token, seq, puts, next)
				w.U64(replyOK)
			}
		case opLoad:
			k, token := getKey(r), r.U64()
			if err = r.Done(); err == nil {
				var state []kv
				if state, err = s.centre.Load(ctx, k, token); err == nil {
					w.U64(replyOK)
					putKVs(w, state)
				}
			}
		default:
			err = errors.New("rooms: unknown request")
		}
		switch {
		case errors.Is(err, ErrFenced):
			w = wire.NewWriter()
			w.U64(replyFenced)
			respond(w.B, nil)
		case errors.Is(err, ErrSessionEnded):
			w = wire.NewWriter()
			w.U64(replySessionEnded)
			respond(w.B, nil)
		case err != nil:
			respond(nil, err)
		default:
			respond(w.B, nil)
		}
	})
}

// ---- operators: list and move ----

// RoomInfo describes one room for `verge rooms list`.
type RoomInfo struct {
	Function    string `json:"function"`
	Room        string `json:"room"`
	Owner       string `json:"owner"`
	Connections int    `json:"connections"`
	Hibernating bool   `json:"hibernating"`
	Alarms      int    `json:"alarms"`
	Token       uint64 `json:"token"`
}

// Local lists the rooms of app this PoP owns.
func (s *Service) Local(app string) []RoomInfo {
	s.mu.Lock()
	rooms := make([]*room, 0)
	for k, r := range s.rooms {
		if k.App == app {
			rooms = append(rooms, r)
		}
	}
	s.mu.Unlock()
	out := make([]RoomInfo, 0, len(rooms))
	for _, r := range rooms {
		r.mu.Lock()
		out = append(out, RoomInfo{Function: r.key.Fn, Room: r.key.Room, Owner: s.opts.Self, Connections: len(r.conns),
			Hibernating: r.cache == nil, Alarms: len(r.alarms), Token: r.token})
		r.mu.Unlock()
	}
	return out
}

// ErrNotCentral: listing and moving rooms is the central PoP's.
var ErrNotCentral = errors.New("rooms: ask the central PoP")

// List lists every live room of app in the network (at the centre): the
// lease table, with each owner's count of connections.
func (s *Service) List(ctx context.Context, app string) ([]RoomInfo, error) {
	if s.centre == nil {
		return nil, ErrNotCentral
	}
	byOwner := map[string]map[Key]RoomInfo{}
	var out []RoomInfo
	for _, l := range s.centre.Leases(app) {
		if !l.Valid {
			continue
		}
		if byOwner[l.Owner] == nil {
			byOwner[l.Owner] = map[Key]RoomInfo{}
			var infos []RoomInfo
			if l.Owner == s.opts.Self {
				infos = s.Local(app)
			} else {
				rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				p, err := s.opts.Mesh.Request(rctx, l.Owner, "rooms.stats", []byte(app))
				cancel()
				if err == nil {
					json.Unmarshal(p, &infos)
				}
			}
			for _, in := range infos {
				byOwner[l.Owner][Key{app, in.Function, in.Room}] = in
			}
		}
		in, ok := byOwner[l.Owner][l.Key]
		if !ok {
			in = RoomInfo{Function: l.Key.Fn, Room: l.Key.Room, Owner: l.Owner, Hibernating: true}
		}
		in.Token = l.Token
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Function != out[j].Function {
			return out[i].Function < out[j].Function
		}
		return out[i].Room < out[j].Room
	})
	return out, nil
}

// Move hands room k over to PoP to with its state (at the centre): its
// owner finishes what is running, makes every write durable, gives the
// lease to `to` and closes its sockets with 4001; clients reconnect and
// reach the room at `to`.
func (s *Service) Move(ctx context.Context, k Key, to string) error {
	if s.centre == nil {
		return ErrNotCentral
	}
	if _, ok := s.opts.Network.PoP(to); !ok {
		return fmt.Errorf("rooms: %q is not a PoP of the network", to)
	}
	l, ok := s.centre.Lease(k)
	if !ok {
		return fmt.Errorf("rooms: room %q of %s/%s is not live; it starts wherever its next client is", k.Room, k.App, k.Fn)
	}
	if l.Owner == to {
		return nil
	}
	if l.Owner == s.opts.Self {
		return s.handOver(k, to)
	}
	w := wire.NewWriter()
	putKey(w, k)
	w.Str(to)
	_, err := s.opts.Mesh.Request(ctx, l.Owner, "rooms.move", w.B)
	return err
}

// handOver moves a room owned here to PoP to without losing a message:
//
//  1. no new event starts (they queue); the running one ends and every
//     write is durable here and at the centre;
//  2. the lease goes to `to` (the centre notes that it came by a move, so
//     the new owner holds its events until step 4);
//  3. every socket is closed with 4001; what the sockets still send until
//     their clients answer the close (frames in flight, locally or through
//     relays) joins the queued messages;
//  4. the queued messages go to `to` in one hand-off, which runs them before
//     any event of its own: those of the clients' new connections included,
//     so each client's messages keep their order across the move.
func (s *Service) handOver(k Key, to string) error {
	r := s.owned(k)
	if r == nil {
		// The lease is ours but the room may still be loading its state.
		s.mu.Lock()
		st := s.starting[k]
		s.mu.Unlock()
		if st != nil {
			select {
			case <-st.done:
			case <-time.After(10 * time.Second):
			}
			r = s.owned(k)
		}
	}
	if r == nil {
		return fmt.Errorf("rooms: room %s is not owned here", k)
	}
	r.mu.Lock()
	if r.moving || r.stopped {
		r.mu.Unlock()
		return fmt.Errorf("rooms: room %s is already moving", k)
	}
	r.moving = true
	r.mu.Unlock()
	r.drain()
	if err := s.release(k, r.token, to); err != nil {
		r.mu.Lock()
		r.moving = false
		r.kickLocked()
		r.mu.Unlock()
		return err
	}
	s.mu.Lock()
	if s.rooms[k] == r {
		delete(s.rooms, k)
	}
	s.handing[k] = r
	s.mu.Unlock()

	r.mu.Lock()
	r.handing = true
	if r.alarmTimer != nil {
		r.alarmTimer.Stop()
	}
	conns := make([]*rconn, 0, len(r.conns))
	for _, c := range r.conns {
		conns = append(conns, c)
	}
	r.dispatch(&output{targets: conns, close: true, code: CloseMoved, reason: movedReason})
	wake := time.AfterFunc(handOffWait, func() {
		r.mu.Lock()
		r.idle.Broadcast()
		r.mu.Unlock()
	})
	deadline := time.Now().Add(handOffWait)
	for len(r.conns) > 0 && time.Now().Before(deadline) {
		r.idle.Wait()
	}
	wake.Stop()
	left := len(r.conns)
	if left > 0 {
		s.log.Warn("room moved; some sockets did not answer the close in time", "room", k.String(), "sockets", left)
	}
	var frames []heldFrame
	for _, ev := range r.queue {
		switch ev.kind {
		case evMessage:
			frames = append(frames, heldFrame{conn: ev.conn.id, data: ev.data, binary: ev.binary})
		case evRequest:
			ev.reply <- unavailable("the room moved; retry")
		}
	}
	r.queue = nil
	// Sockets that did not answer the close in time are cut; frames they
	// send from now on are not the room's.
	r.stopLocked(CloseMoved, movedReason, false)
	s.mu.Lock()
	if s.handing[k] == r {
		delete(s.handing, k)
	}
	s.mu.Unlock()
	s.heldFrames.Add(uint64(len(frames)))
	if err := s.sendHandOff(k, to, frames); err != nil {
		s.log.Error("room moved, but its held messages did not reach the new owner", "room", k.String(), "to", to, "messages", len(frames), "err", err)
		return fmt.Errorf("rooms: room %s moved to %s, but %d held messages did not reach it: %w", k, to, len(frames), err)
	}
	s.log.Info("room moved", "room", k.String(), "to", to, "held", len(frames))
	return nil
}

// handOffWait bounds how long a hand-over waits for the room's clients to
// answer its close; holdFor bounds how long a new owner waits for the
// hand-off (the old owner may have died meanwhile).
const (
	handOffWait = 3 * time.Second
	holdFor     = handOffWait + 3*time.Second
)

// heldFrame is a message a room's socket sent during a hand-over, from
// connection conn of the old owner.
type heldFrame struct {
	conn   uint32
	data   []byte
	binary bool
}

// sendHandOff gives the new owner the held frames (in chunks within a mesh
// message; the last one ends its hold), retrying while it can.
func (s *Service) sendHandOff(k Key, to string, frames []heldFrame) error {
	for {
		n, size := 0, 0
		for n < len(frames) && (n == 0 || size+len(frames[n].data) < mesh.MaxPayload/2) {
			size += len(frames[n].data) + 16
			n++
		}
		w := wire.NewWriter()
		putKey(w, k)
		w.Bool(n == len(frames))
		w.U64(uint64(n))
		for _, f := range frames[:n] {
			w.U64(uint64(f.conn))
			w.Bool(f.binary)
			w.Bytes(f.data)
		}
		var err error
		for try := 0; try < 5; try++ {
			ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
			_, err = s.opts.Mesh.Request(ctx, to, "room.handoff", w.B)
			cancel()
			if err == nil || s.ctx.Err() != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			return err
		}
		frames = frames[n:]
		if len(frames) == 0 {
			return nil
		}
	}
}

// handleHandOff takes a room's held frames at its new owner.
func (s *Service) handleHandOff(p []byte, respond func([]byte, error)) {
	rd := wire.NewReader(p)
	k := getKey(rd)
	last := rd.Bool()
	n := rd.Count(3)
	frames := make([]heldFrame, 0, n)
	for i := 0; i < n && rd.Err == nil; i++ {
		frames = append(frames, heldFrame{conn: uint32(rd.U64()), binary: rd.Bool(), data: rd.Bytes(mesh.MaxPayload)})
	}
	if err := rd.Done(); err != nil {
		respond(nil, err)
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	r, err := s.ownedHere(ctx, k)
	if err != nil {
		respond(nil, err)
		return
	}
	r.handOffIn(frames, last)
	respond(nil, nil)
}

// serveOwner answers the centre's questions to an owner.
func (s *Service) serveOwner() error {
	if err := s.opts.Mesh.HandleRequestsAsync("rooms.stats", func(p []byte, respond func([]byte, error)) {
		b, err := json.Marshal(s.Local(string(p)))
		respond(b, err)
	}); err != nil {
		return err
	}
	if err := s.opts.Mesh.HandleRequestsAsync("room.handoff", s.handleHandOff); err != nil {
		return err
	}
	return s.opts.Mesh.HandleRequestsAsync("rooms.move", func(p []byte, respond func([]byte, error)) {
		r := wire.NewReader(p)
		k, to := getKey(r), r.Str(maxName)
		if err := r.Done(); err != nil {
			respond(nil, err)
			return
		}
		respond(nil, s.handOver(k, to))
	})
}

// eventStats keeps the durations of the last events, those that woke their
// room apart.
type eventStats struct {
	mu          sync.Mutex
	live, woken []time.Duration
	nl, nw      int
}

const statsKept = 256

func (st *eventStats) event(d time.Duration, woke bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if woke {
		st.woken = ring(st.woken, &st.nw, d)
	} else {
		st.live = ring(st.live, &st.nl, d)
	}
}

func ring(v []time.Duration, n *int, d time.Duration) []time.Duration {
	if len(v) < statsKept {
		v = append(v, d)
	} else {
		v[*n%statsKept] = d
	}
	*n++
	return v
}

// EventTimes returns how long the last events took at this PoP (up to 256
// of each): on a live room, and on a hibernated room they woke (a fresh
// instance, the room's storage read, then the event).
func (s *Service) EventTimes() (live, woken []time.Duration) {
	s.stats.mu.Lock()
	defer s.stats.mu.Unlock()
	return append([]time.Duration(nil), s.stats.live...), append([]time.Duration(nil), s.stats.woken...)
}

// Stats are one room function's figures at this PoP.
type Stats struct {
	App, Function     string
	Live, Hibernating int // rooms owned here, with an instance and without
	Sockets           int // WebSockets open at this PoP (to rooms here or relayed)
}

// Stats returns the figures of every room function with rooms or sockets
// here.
func (s *Service) Stats() []Stats {
	s.mu.Lock()
	rooms := slices.Collect(maps.Values(s.rooms))
	by := map[string]*Stats{}
	get := func(app, fn string) *Stats {
		k := app + "/" + fn
		if by[k] == nil {
			by[k] = &Stats{App: app, Function: fn}
		}
		return by[k]
	}
	for name, n := range s.openConns {
		app, fn, _ := strings.Cut(name, "/")
		get(app, fn).Sockets = n
	}
	s.mu.Unlock()
	for _, r := range rooms {
		st := get(r.key.App, r.key.Fn)
		if r.hibernating() {
			st.Hibernating++
		} else {
			st.Live++
		}
	}
	out := make([]Stats, 0, len(by))
	for _, st := range by {
		out = append(out, *st)
	}
	return out
}

// EventCount is how many events of one kind a room function ran here.
type EventCount struct {
	App, Function, Event string
	N                    uint64
}

func (s *Service) countEvent(k Key, kind eventKind) {
	s.evMu.Lock()
	if s.events == nil {
		s.events = map[[3]string]uint64{}
	}
	s.events[[3]string{k.App, k.Fn, kind.String()}]++
	s.evMu.Unlock()
}

// Events returns the events run here since start, by function and kind.
func (s *Service) Events() []EventCount {
	s.evMu.Lock()
	defer s.evMu.Unlock()
	out := make([]EventCount, 0, len(s.events))
	for k, n := range s.events {
		out = append(out, EventCount{App: k[0], Function: k[1], Event: k[2], N: n})
	}
	return out
}

// HeldFrames counts the messages this PoP's rooms held while moving away and
// handed to their new owners.
func (s *Service) HeldFrames() uint64 { return s.heldFrames.Load() }
