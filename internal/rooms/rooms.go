// Package rooms is a PoP's rooms service: durable realtime actors reached
// over WebSockets at every PoP.
//
// A room is one (app, function, room id). At any moment it has one live
// instance in the whole network, at its owner PoP, which holds the room's
// lease at the centre (centre.go). Clients connect to any PoP; a PoP that
// is not the owner relays their frames to the owner over the mesh, one
// message per frame (relay.go). At the owner the room's events (a
// connection, a message, a close, an HTTP request, an alarm) run one at a
// time in a Wasm instance dedicated to the room (room.go); what an event
// writes to the room's storage is durable in this PoP's store and at the
// centre before anything the event sends leaves (the output gate). A room
// with no event for a while gives its instance back (hibernation) and keeps
// its sockets open; its next event wakes it from storage.
package rooms

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/mesh"
	"github.com/verge-edge/verge/internal/store"
	"github.com/verge-edge/verge/internal/wasm"
)

// WebSocket close codes a client sees from the platform (docs/rooms.md).
// 4001-4003 mean "reconnect": the room is still there, elsewhere.
const (
	// CloseMoved: the room moved to another PoP (verge rooms move).
	CloseMoved = 4001
	// CloseRestart: the room's owner PoP was lost (killed, cut off from the
	// centre); reconnect and the room restarts elsewhere from its storage.
	CloseRestart = 4002
	// CloseUnreachable: this PoP cannot reach the room's owner; reconnect
	// (to another PoP, or here later).
	CloseUnreachable = 4003
	// CloseGoingAway: the PoP is shutting down (1001).
	CloseGoingAway = 1001
	// CloseTooBig: a message over max_message (1009).
	CloseTooBig = 1009
	// CloseTryAgain: a connection limit was reached, or the room could not
	// start (1013).
	CloseTryAgain = 1013
	// ClosePolicy: the client does not read what the room sends (1008).
	ClosePolicy = 1008
	// CloseError: the guest refused the connection (its on_connect failed).
	CloseError = 1011
)

// Key names a room: an app's room function and the room's id.
type Key struct{ App, Fn, Room string }

func (k Key) String() string { return k.App + "/" + k.Fn + "/" + k.Room }

// Limits of room ids and storage.
const (
	MaxRoomID      = 256
	MaxStorageKey  = 512
	MaxValue       = 128 << 10
	MaxRoomStorage = 16 << 20
	MaxAlarms      = 1000
	MaxTags        = 10
	MaxTag         = 256
	MaxOutMessage  = 16 << 20
)

// Options configure a Service.
type Options struct {
	Self    string
	Network *verge.Network
	Mesh    *mesh.Mesh
	Store   *store.Store
	// Function returns the live version of an app's function at this PoP,
	// held until release (a swap waits for it).
	Function func(app, fn string) (f *wasm.Function, release func(), ok bool)
	// LeaseTTL: a PoP that does not reach the centre for this long loses
	// its rooms (default 3 s); it stops serving them a little earlier.
	LeaseTTL time.Duration
	Logger   *slog.Logger
}

// Service is a PoP's rooms.
type Service struct {
	opts    Options
	log     *slog.Logger
	central string
	centre  *Centre // at the central PoP
	api     centreAPI

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	rooms     map[Key]*room     // rooms owned here
	handing   map[Key]*room     // rooms moving away from here, collecting their sockets' last frames
	starting  map[Key]*starting // rooms being activated here
	relayed   map[uint64]*relayConn
	openConns map[string]int // app/fn → open sockets at this PoP
	pendingUp map[remoteID]*pendingOpen

	sessionID   uint64
	sessionGood atomic.Int64 // Unix nanos until which this PoP's session is surely valid
	nextRID     atomic.Uint64
	heldFrames  atomic.Uint64 // messages handed to a new owner by moves

	stats  eventStats
	evMu   sync.Mutex
	events map[[3]string]uint64 // app, function, event kind → count

	spareMu sync.Mutex
	spares  map[string]*spare // app/fn → an instance started ahead of need

	wsMu    sync.Mutex
	ws      map[*wsConn]struct{}
	sockets sync.WaitGroup // the sockets' goroutines
}

type starting struct {
	done  chan struct{}
	room  *room
	owner string
	err   error
}

// New creates the rooms service of a PoP.
func New(opts Options) (*Service, error) {
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = 3 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	central, ok := opts.Network.Central()
	if !ok {
		return nil, errors.New("rooms: the network has no central PoP")
	}
	s := &Service{opts: opts, log: opts.Logger.With("service", "rooms"), central: central.ID,
		rooms: map[Key]*room{}, handing: map[Key]*room{}, starting: map[Key]*starting{}, relayed: map[uint64]*relayConn{},
		openConns: map[string]int{}, spares: map[string]*spare{}, pendingUp: map[remoteID]*pendingOpen{}, ws: map[*wsConn]struct{}{},
		sessionID: uint64(time.Now().UnixNano())}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if central.ID == opts.Self {
		c, err := openCentre(opts.Self, opts.Network, opts.Store, opts.LeaseTTL, opts.Mesh.Up)
		if err != nil {
			return nil, err
		}
		s.centre = c
		s.api = localCentre{c}
	} else {
		s.api = &meshCentre{m: opts.Mesh, central: central.ID, timeout: 2 * time.Second}
	}
	return s, nil
}

// Start registers the mesh handlers and starts the background work.
func (s *Service) Start() error {
	if s.centre != nil {
		if err := s.serveCentre(); err != nil {
			return err
		}
	}
	if err := s.serveRelay(); err != nil {
		return err
	}
	s.heartbeat() // the first session before any room is asked for
	s.wg.Add(3)
	go s.heartbeats()
	go s.sweeper()
	go s.pinger()
	return nil
}

// Close closes every socket (1001) and stops.
func (s *Service) Close() {
	s.cancel()
	s.mu.Lock()
	rooms := slices.Collect(maps.Values(s.rooms))
	relayed := slices.Collect(maps.Values(s.relayed))
	s.mu.Unlock()
	// The leases go back at once: the rooms restart at the PoPs their
	// clients reconnect to, without waiting for this PoP's session to end.
	var wg sync.WaitGroup
	for _, r := range rooms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.stop(CloseRestart, "the room's PoP is shutting down; reconnect", true)
		}()
	}
	for _, rc := range relayed {
		rc.ws.close(CloseRestart, "this PoP is shutting down; reconnect")
	}
	wg.Wait()
	s.wg.Wait()
	s.closeSpares()
	// Sockets still waiting for their room (a failover in progress) give
	// up once the context is done; those closed above finish their close
	// handshake. Wait a little for them, not for a client that never answers.
	s.wsMu.Lock()
	for c := range s.ws {
		c.close(CloseRestart, "this PoP is shutting down; reconnect")
	}
	s.wsMu.Unlock()
	done := make(chan struct{})
	go func() { s.sockets.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
	}
}

// ---- sessions ----

const heartbeatEvery = 500 * time.Millisecond

// heartbeat renews this PoP's session at the centre. A session the centre
// ended takes every room owned here with it.
func (s *Service) heartbeat() {
	sent := time.Now()
	ctx, cancel := context.WithTimeout(s.ctx, heartbeatEvery*2)
	ok, err := s.api.Heartbeat(ctx, s.opts.Self, s.sessionID)
	cancel()
	switch {
	case err != nil:
		// Keep serving until the session may have ended.
	case !ok:
		s.log.Warn("the centre ended this PoP's rooms session; dropping its rooms", "session", s.sessionID)
		s.sessionGood.Store(0)
		s.dropAll(CloseRestart, "the room's PoP lost its lease; reconnect")
		s.mu.Lock()
		s.sessionID = max(s.sessionID+1, uint64(time.Now().UnixNano()))
		s.mu.Unlock()
	default:
		// The centre's deadline is at least TTL after it received this,
		// which is after we sent it; stop a margin earlier.
		s.sessionGood.Store(sent.Add(s.opts.LeaseTTL - s.margin()).UnixNano())
	}
}

func (s *Service) margin() time.Duration { return s.opts.LeaseTTL / 5 }

func (s *Service) session() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessionID
}

func (s *Service) heartbeats() {
	defer s.wg.Done()
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.heartbeat()
		if s.centre == nil && time.Now().UnixNano() > s.sessionGood.Load() {
			if s.ownsAny() {
				s.log.Warn("no word from the centre for a lease's time; dropping this PoP's rooms")
				s.dropAll(CloseRestart, "the room's PoP lost contact with the centre; reconnect")
			}
		}
	}
}

func (s *Service) ownsAny() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.rooms) > 0
}

// dropAll stops every room owned here (their leases are gone).
func (s *Service) dropAll(code int, reason string) {
	s.mu.Lock()
	rooms := slices.Collect(maps.Values(s.rooms))
	s.mu.Unlock()
	for _, r := range rooms {
		r.stop(code, reason, false)
	}
}

// sweeper hibernates idle rooms, forgets empty ones and, at the centre,
// wakes rooms whose alarms are due while nobody owns them.
func (s *Service) sweeper() {
	defer s.wg.Done()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	n := 0
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		s.mu.Lock()
		rooms := slices.Collect(maps.Values(s.rooms))
		s.mu.Unlock()
		for _, r := range rooms {
			r.sweep(now)
		}
		s.capLive(rooms)
		if n++; s.centre != nil && n%5 == 0 {
			for _, k := range s.centre.Orphans(now.Add(time.Second)) {
				go s.wakeOrphan(k)
			}
		}
	}
}

// capLive hibernates the least recently used idle rooms of a function
// whose live rooms hold more instances than its limits.max_instances: many
// rooms waking at once must not each keep an instance until their
// hibernate_after.
func (s *Service) capLive(rooms []*room) {
	type liveRoom struct {
		r    *room
		last time.Time
	}
	live := map[*wasm.Function][]liveRoom{}
	for _, r := range rooms {
		r.mu.Lock()
		if r.actor != nil && !r.running && !r.committing && len(r.out) == 0 && len(r.batches) == 0 && !r.stopped {
			live[r.fn] = append(live[r.fn], liveRoom{r, r.last})
		}
		r.mu.Unlock()
	}
	for f, rs := range live {
		if len(rs) <= f.Limits.MaxInstances {
			continue
		}
		sort.Slice(rs, func(i, j int) bool { return rs[i].last.Before(rs[j].last) })
		for _, lr := range rs[:len(rs)-f.Limits.MaxInstances] {
			lr.r.hibernate()
		}
	}
}

// wakeOrphan places a room whose alarm is due and that nobody owns at the
// centre, so that the alarm fires.
func (s *Service) wakeOrphan(k Key) {
	opts, ok := s.roomOptions(k)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	if r, _, err := s.ensure(ctx, k, opts, "central"); err == nil && r != nil {
		r.kickAlarms()
	}
}

// ownedHere returns room k at this PoP for a request another PoP sent it
// (a hand-off, an HTTP request), starting it here if it is not live; it
// fails if this PoP does not serve the room function or cannot own the room.
func (s *Service) ownedHere(ctx context.Context, k Key) (*room, error) {
	opts, ok := s.roomOptions(k)
	if !ok {
		return nil, fmt.Errorf("no room function %s/%s here", k.App, k.Fn)
	}
	r, _, err := s.ensure(ctx, k, opts, "")
	if err != nil || r == nil {
		return nil, fmt.Errorf("rooms: not the owner of room %s: %v", k, err)
	}
	return r, nil
}

// roomOptions returns the room function's options, if this PoP serves it.
func (s *Service) roomOptions(k Key) (verge.RoomOptions, bool) {
	f, release, ok := s.opts.Function(k.App, k.Fn)
	if !ok {
		return verge.RoomOptions{}, false
	}
	defer release()
	if f.Spec.Kind != verge.KindRoom {
		return verge.RoomOptions{}, false
	}
	return f.Spec.Room, true
}

// ---- ownership ----

// owned returns the room if this PoP owns it and it is serving.
func (s *Service) owned(k Key) *room {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rooms[k]
}

// ensure returns the room if this PoP owns it, becoming its owner if the
// centre says so, or else the owner's id. placement overrides the
// function's when not "".
func (s *Service) ensure(ctx context.Context, k Key, opts verge.RoomOptions, placement string) (*room, string, error) {
	for {
		s.mu.Lock()
		if r := s.rooms[k]; r != nil {
			s.mu.Unlock()
			return r, s.opts.Self, nil
		}
		if st := s.starting[k]; st != nil {
			s.mu.Unlock()
			select {
			case <-st.done:
			case <-ctx.Done():
				return nil, "", ctx.Err()
			}
			if st.err != nil || st.room != nil || st.owner != "" {
				return st.room, st.owner, st.err
			}
			continue
		}
		st := &starting{done: make(chan struct{})}
		s.starting[k] = st
		s.mu.Unlock()
		st.room, st.owner, st.err = s.activate(ctx, k, opts, placement)
		s.mu.Lock()
		delete(s.starting, k)
		if st.room != nil {
			s.rooms[k] = st.room
		}
		s.mu.Unlock()
		close(st.done)
		if st.room != nil {
			st.room.scheduleAlarm()
		}
		return st.room, st.owner, st.err
	}
}

// activate asks the centre who owns k and, when it is this PoP, loads the
// room's storage from the centre into this PoP's store.
func (s *Service) activate(ctx context.Context, k Key, opts verge.RoomOptions, placement string) (*room, string, error) {
	if placement == "" {
		placement = opts.Placement
	}
	g, err := s.api.Acquire(ctx, k, s.opts.Self, s.session(), placement)
	if errors.Is(err, ErrSessionEnded) {
		s.heartbeat()
		g, err = s.api.Acquire(ctx, k, s.opts.Self, s.session(), placement)
	}
	if err != nil {
		return nil, "", err
	}
	if g.Owner != s.opts.Self {
		return nil, g.Owner, nil
	}
	r := newRoom(s, k, opts, g.Token)
	if g.From != "" && g.From != s.opts.Self {
		// Moved here: the old owner's held messages run first.
		r.holding = true
		time.AfterFunc(holdFor, r.endHold)
	}
	var state []kv
	if s.centre != nil {
		state, err = scanRoom(s.opts.Store, k)
	} else {
		// The centre has everything any client of the room could have
		// observed; what this PoP's store holds may be older or newer.
		if state, err = s.api.Load(ctx, k, g.Token); err == nil {
			err = s.replaceLocal(ctx, k, state)
		}
	}
	if err != nil {
		s.release(k, g.Token, "")
		return nil, "", fmt.Errorf("rooms: loading room %s: %w", k, err)
	}
	for _, x := range state {
		if name, ok := alarmName(x.k); ok && len(x.v) == 8 {
			r.alarms[name] = int64(beUint64(x.v))
		} else {
			r.size += len(x.k) + len(x.v)
		}
	}
	s.log.Info("room started here", "room", k.String(), "token", g.Token)
	return r, s.opts.Self, nil
}

// replaceLocal makes this PoP's copy of a room's storage state.
func (s *Service) replaceLocal(ctx context.Context, k Key, state []kv) error {
	old, err := scanRoom(s.opts.Store, k)
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	var puts []store.Put
	for _, x := range state {
		keep[x.k] = true
		puts = append(puts, store.Put{Key: store.Key{App: nsApp, Collection: roomColl(k), Doc: roomDoc(k, x.k)}, Value: x.v})
	}
	for _, x := range old {
		if !keep[x.k] {
			puts = append(puts, store.Put{Key: store.Key{App: nsApp, Collection: roomColl(k), Doc: roomDoc(k, x.k)}})
		}
	}
	p, err := s.opts.Store.Write(puts)
	if err != nil {
		return err
	}
	return p.Wait(ctx)
}

func (s *Service) release(k Key, token uint64, to string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.api.Release(ctx, k, token, to)
}

// forget removes r from the rooms owned here.
func (s *Service) forget(r *room) {
	s.mu.Lock()
	if s.rooms[r.key] == r {
		delete(s.rooms, r.key)
	}
	s.mu.Unlock()
}

// countConn adjusts the open sockets of a function at this PoP; it
// refuses one past the limit.
func (s *Service) countConn(k Key, delta, limit int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := k.App + "/" + k.Fn
	if delta > 0 && s.openConns[name]+delta > limit {
		return false
	}
	s.openConns[name] += delta
	return true
}

// ---- instances ----

// spare is an instance of a room function started ahead of need: waking a
// room takes it (a channel receive) instead of starting a Go runtime.
type spare struct {
	f       *wasm.Function
	a       *wasm.Actor
	filling bool
}

// actorFor returns a fresh instance of f for a room that wakes, and starts
// the next one in the background.
func (s *Service) actorFor(f *wasm.Function) (*wasm.Actor, error) {
	name := f.Spec.App + "/" + f.Spec.Name
	s.spareMu.Lock()
	sp := s.spares[name]
	if sp != nil && sp.f != f {
		// A new version: the old one's spare is of no use.
		if sp.a != nil {
			sp.a.Close()
		}
		sp = nil
	}
	if sp == nil {
		sp = &spare{f: f}
		s.spares[name] = sp
	}
	a := sp.a
	sp.a = nil
	if !sp.filling && s.ctx.Err() == nil {
		sp.filling = true
		s.wg.Add(1)
		// Not now: starting an instance holds a guest slot for a
		// millisecond or two, which the room that just woke needs for its
		// event. Soon after it.
		time.AfterFunc(spareDelay, func() {
			defer s.wg.Done()
			na, err := f.NewActor(context.Background())
			s.spareMu.Lock()
			defer s.spareMu.Unlock()
			sp.filling = false
			if err != nil || s.spares[name] != sp || s.ctx.Err() != nil {
				if na != nil {
					na.Close()
				}
				return
			}
			sp.a = na
		})
	}
	s.spareMu.Unlock()
	if a != nil {
		return a, nil
	}
	return f.NewActor(context.Background())
}

// spareDelay is how long after a room takes the spare instance the next
// one is started.
const spareDelay = 20 * time.Millisecond

// closeSpares frees the spare instances.
func (s *Service) closeSpares() {
	s.spareMu.Lock()
	defer s.spareMu.Unlock()
	for name, sp := range s.spares {
		if sp.a != nil {
			sp.a.Close()
		}
		delete(s.spares, name)
	}
}

// ---- HTTP ----

// ServeHTTP serves a request to room k of a room function with options
// opts: a WebSocket upgrade connects to the room; any other request is
// the room's on_request (rest is the path after the room id).
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request, k Key, opts verge.RoomOptions) {
	if k.Room == "" || len(k.Room) > MaxRoomID {
		http.Error(w, "bad room id", http.StatusBadRequest)
		return
	}
	if isUpgrade(r) {
		s.serveSocket(w, r, k, opts)
		return
	}
	s.serveRequest(w, r, k, opts)
}

func alarmName(key string) (string, bool) {
	if len(key) > len(alarmKey) && key[:len(alarmKey)] == alarmKey {
		return key[len(alarmKey):], true
	}
	return "", false
}

func beUint64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 | uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
}
