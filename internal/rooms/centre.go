package rooms

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/store"
)

// The centre's side of rooms: the lease table and the rooms' backup.
//
// Every PoP holds one session at the centre, kept alive by heartbeats; a
// room's lease names its owner PoP, the session it was granted to and a
// fencing token (a number the centre never hands out twice). A lease is
// valid while its session is: when a PoP stops heartbeating for the TTL
// (killed, cut off from the centre) all its rooms are free; a PoP that
// starts again opens a new session, which ends its old one at once.
//
// The owner ships every storage write of a room here, with the room's
// token, before the writes' output gate opens; a write whose token is not
// the room's current one (the lease moved) is refused, so two owners can
// never both have writes accepted, and the new owner starts from exactly
// what the old one's clients could have observed. An owner keeps several
// backups in flight (pipelined); each carries its number under the token,
// and the centre applies them in that order whatever order they arrive in,
// recording the last one applied with the writes. Leases, tokens and
// backups live in the centre's store (one fsync covers a batch of them),
// so checking a token and writing the backup are one step under one lock.

// Store namespaces (app names never start with '_').
const (
	nsApp     = "_rooms"
	collLease = "\x00lease"
	collMeta  = "\x00meta"
	collAlarm = "\x00alarm"
	collSeq   = "\x00seq" // a room's last applied backup: token, sequence number
	alarmKey  = "\x00a/"  // room storage keys of alarms: alarmKey + name → u64 Unix ms
)

// ErrFenced is a backup refused because the room's lease is no longer the
// writer's: the room moved or its owner's session ended.
var ErrFenced = errors.New("rooms: fenced: the room's lease moved")

// ErrUnavailable: the centre could not be reached.
var ErrUnavailable = errors.New("rooms: the central PoP is unreachable")

// roomColl is the store collection of a function's rooms' storage; a
// room's keys are its id, a NUL, and the key.
func roomColl(k Key) string { return k.App + "/" + k.Fn }

func roomDoc(k Key, key string) string { return k.Room + "\x00" + key }

// encodeKey encodes a room key for the lease table.
func encodeKey(k Key) string { return k.App + "\x00" + k.Fn + "\x00" + k.Room }

func decodeKey(s string) (Key, bool) {
	p := strings.SplitN(s, "\x00", 3)
	if len(p) != 3 {
		return Key{}, false
	}
	return Key{p[0], p[1], p[2]}, true
}

type lease struct {
	owner   string
	session uint64
	token   uint64
	from    string        // the owner it was moved from, until the new owner asks (not stored)
	applied uint64        // the last backup applied under token
	next    chan struct{} // closed when applied grows; nil: nobody waits
}

type session struct {
	id       uint64
	deadline time.Time
	dead     bool
}

// Centre is the lease table and the backup of every room, at the central
// PoP.
type Centre struct {
	self    string
	network *verge.Network
	st      *store.Store
	ttl     time.Duration
	up      func(pop string) bool // the centre's link to pop is up
	started time.Time

	mu        sync.Mutex
	leases    map[Key]*lease
	sessions  map[string]*session
	nextToken uint64
	alarms    map[Key]int64 // rooms' next alarms, Unix ms
}

func openCentre(self string, network *verge.Network, st *store.Store, ttl time.Duration, up func(string) bool) (*Centre, error) {
	c := &Centre{self: self, network: network, st: st, ttl: ttl, up: up, started: time.Now(),
		leases: map[Key]*lease{}, sessions: map[string]*session{}, alarms: map[Key]int64{}}
	var bad error
	err := st.Scan(nsApp, collLease, "", func(doc string, v []byte) bool {
		k, ok := decodeKey(doc)
		i := strings.IndexByte(string(v), 0)
		if !ok || i < 0 || len(v) != i+17 {
			bad = fmt.Errorf("rooms: damaged lease record %q", doc)
			return false
		}
		l := &lease{owner: string(v[:i]), session: binary.BigEndian.Uint64(v[i+1:]), token: binary.BigEndian.Uint64(v[i+9:])}
		c.leases[k] = l
		c.nextToken = max(c.nextToken, l.token)
		return true
	})
	if err == nil {
		err = bad
	}
	if err != nil {
		return nil, err
	}
	if v, ok, err := st.Get(store.Key{App: nsApp, Collection: collMeta, Doc: "token"}); err != nil {
		return nil, err
	} else if ok && len(v) == 8 {
		c.nextToken = max(c.nextToken, binary.BigEndian.Uint64(v))
	}
	err = st.Scan(nsApp, collSeq, "", func(doc string, v []byte) bool {
		if k, ok := decodeKey(doc); ok && len(v) == 16 {
			if l := c.leases[k]; l != nil && l.token == binary.BigEndian.Uint64(v) {
				l.applied = binary.BigEndian.Uint64(v[8:])
			}
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	err = st.Scan(nsApp, collAlarm, "", func(doc string, v []byte) bool {
		if k, ok := decodeKey(doc); ok && len(v) == 8 {
			c.alarms[k] = int64(binary.BigEndian.Uint64(v))
		}
		return true
	})
	return c, err
}

// alive reports whether pop's session id is alive. c.mu is held.
func (c *Centre) alive(pop string, id uint64, now time.Time) bool {
	s := c.sessions[pop]
	if s == nil {
		// Not heard of since the centre started: sessions are not stored,
		// so each gets a TTL's grace to show up.
		return now.Before(c.started.Add(c.ttl))
	}
	if s.id != id || s.dead {
		return false
	}
	if now.After(s.deadline) {
		s.dead = true
		return false
	}
	return true
}

// valid reports whether l is a live lease. c.mu is held.
func (c *Centre) valid(l *lease, now time.Time) bool {
	return l != nil && c.alive(l.owner, l.session, now)
}

// Heartbeat renews pop's session id (opening it if new; a new id ends the
// PoP's previous session). false: the session already ended, so its rooms
// may be elsewhere; the PoP must drop them and open a new session.
func (c *Centre) Heartbeat(pop string, id uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.heartbeat(pop, id, time.Now())
}

func (c *Centre) heartbeat(pop string, id uint64, now time.Time) bool {
	s := c.sessions[pop]
	switch {
	case s == nil || s.id != id:
		if s != nil && s.id > id && !s.dead {
			return false // a late heartbeat of an older session
		}
		c.sessions[pop] = &session{id: id, deadline: now.Add(c.ttl)}
		return true
	case s.dead || now.After(s.deadline):
		s.dead = true
		return false
	default:
		s.deadline = now.Add(c.ttl)
		return true
	}
}

// Grant is the centre's answer to Acquire.
type Grant struct {
	Owner string
	Token uint64 // 0 when Owner is not the asker: ask Owner
	// From: the lease came to Owner by a move from this PoP, which will
	// hand over the messages it held during the move.
	From string
}

// Acquire returns the room's owner, making pop (session id) the owner when
// the room has no valid lease and the placement puts it at pop. The lease
// is durable when Acquire returns it.
func (c *Centre) Acquire(ctx context.Context, k Key, pop string, id uint64, placement string) (Grant, error) {
	now := time.Now()
	c.mu.Lock()
	if !c.heartbeat(pop, id, now) {
		c.mu.Unlock()
		return Grant{}, ErrSessionEnded
	}
	if l := c.leases[k]; c.valid(l, now) {
		if l.owner != pop {
			c.mu.Unlock()
			return Grant{Owner: l.owner}, nil
		}
		// Already pop's: a move gave it, or a room object there stopped
		// without giving it back. A new token all the same, so that no
		// backup an older object still has in flight is applied among the
		// new one's (their numbers start again at 1).
		if l.next != nil {
			close(l.next)
			l.next = nil
		}
		from := l.from
		nl, p, err := c.grant(k, pop, id)
		c.mu.Unlock()
		if err != nil {
			return Grant{}, err
		}
		if err := p.Wait(ctx); err != nil {
			return Grant{}, err
		}
		return Grant{Owner: pop, Token: nl.token, From: from}, nil
	}
	target := c.place(placement, pop)
	if target != pop {
		c.mu.Unlock()
		return Grant{Owner: target}, nil
	}
	l, p, err := c.grant(k, pop, id)
	c.mu.Unlock()
	if err != nil {
		return Grant{}, err
	}
	if err := p.Wait(ctx); err != nil {
		return Grant{}, err
	}
	return Grant{Owner: pop, Token: l.token}, nil
}

// settled waits until everything staged so far is durable (a lease just
// granted by a concurrent Acquire).
func (c *Centre) settled(ctx context.Context) error {
	p, err := c.st.Write([]store.Put{{Key: store.Key{App: nsApp, Collection: collMeta, Doc: "sync"}, Value: []byte{}}})
	if err != nil {
		return err
	}
	return p.Wait(ctx)
}

// grant stages a new lease of k for (pop, id). c.mu is held.
func (c *Centre) grant(k Key, pop string, id uint64) (*lease, *store.Pending, error) {
	c.nextToken++
	l := &lease{owner: pop, session: id, token: c.nextToken}
	v := append([]byte(pop), 0)
	v = binary.BigEndian.AppendUint64(v, id)
	v = binary.BigEndian.AppendUint64(v, l.token)
	p, err := c.st.Write([]store.Put{
		{Key: store.Key{App: nsApp, Collection: collLease, Doc: encodeKey(k)}, Value: v},
		{Key: store.Key{App: nsApp, Collection: collMeta, Doc: "token"}, Value: binary.BigEndian.AppendUint64(nil, c.nextToken)},
	})
	if err != nil {
		c.nextToken--
		return nil, nil, err
	}
	c.leases[k] = l
	return l, p, nil
}

// place picks the PoP a new room goes to. c.mu is held.
func (c *Centre) place(placement, asker string) string {
	switch placement {
	case "", "first-client":
		return asker
	case "central":
		return c.self
	}
	var cands []string
	for _, p := range c.network.PoPs {
		if p.Region == placement {
			if p.ID == asker {
				return asker
			}
			if p.ID == c.self || c.up(p.ID) {
				cands = append(cands, p.ID)
			}
		}
	}
	if len(cands) == 0 {
		return asker // no PoP of the region is up: serve rather than refuse
	}
	sort.Strings(cands)
	return cands[0]
}

// Release ends the room's lease if token is still its token; to, if not
// "", becomes the owner at once (a move), with a new token.
func (c *Centre) Release(ctx context.Context, k Key, token uint64, to string) error {
	c.mu.Lock()
	l := c.leases[k]
	if l == nil || l.token != token {
		c.mu.Unlock()
		return ErrFenced
	}
	if l.next != nil {
		close(l.next) // backups waiting for their predecessor are fenced now
		l.next = nil
	}
	var p *store.Pending
	var err error
	if to != "" {
		s := c.sessions[to]
		if s == nil || s.dead {
			c.mu.Unlock()
			return fmt.Errorf("rooms: PoP %s has no session at the centre (is it up?)", to)
		}
		var nl *lease
		if nl, p, err = c.grant(k, to, s.id); err == nil {
			nl.from = l.owner
		}
	} else {
		delete(c.leases, k)
		p, err = c.st.Write([]store.Put{{Key: store.Key{App: nsApp, Collection: collLease, Doc: encodeKey(k)}}})
	}
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return p.Wait(ctx)
}

// Backup writes a room's storage writes if token is the room's lease, and
// records its next alarm (0: none). It returns once they are durable.
// Backups of one lease are applied in the order of seq (1, 2, ...): one
// that arrives before its predecessor waits for it (bounded by ctx); one
// already applied (a retry) only waits until it is durable.
func (c *Centre) Backup(ctx context.Context, k Key, token, seq uint64, puts []kv, nextAlarm int64) error {
	c.mu.Lock()
	var l *lease
	for {
		l = c.leases[k]
		if l == nil || l.token != token || !c.valid(l, time.Now()) {
			c.mu.Unlock()
			return ErrFenced
		}
		if seq == l.applied+1 {
			break
		}
		if seq <= l.applied {
			c.mu.Unlock()
			return c.settled(ctx)
		}
		if l.next == nil {
			l.next = make(chan struct{})
		}
		next := l.next
		c.mu.Unlock()
		select {
		case <-next:
		case <-ctx.Done():
			return fmt.Errorf("rooms: backup %d of %s came before %d, which did not: %w", seq, k, l.applied+1, ctx.Err())
		}
		c.mu.Lock()
	}
	sp := make([]store.Put, 0, len(puts)+2)
	sp = append(sp, store.Put{Key: store.Key{App: nsApp, Collection: collSeq, Doc: encodeKey(k)},
		Value: binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, token), seq)})
	for _, p := range puts {
		sp = append(sp, store.Put{Key: store.Key{App: nsApp, Collection: roomColl(k), Doc: roomDoc(k, p.k)}, Value: p.v})
	}
	if c.alarms[k] != nextAlarm {
		ak := store.Key{App: nsApp, Collection: collAlarm, Doc: encodeKey(k)}
		if nextAlarm == 0 {
			delete(c.alarms, k)
			sp = append(sp, store.Put{Key: ak})
		} else {
			c.alarms[k] = nextAlarm
			sp = append(sp, store.Put{Key: ak, Value: binary.BigEndian.AppendUint64(nil, uint64(nextAlarm))})
		}
	}
	p, err := c.st.Write(sp)
	if err == nil {
		l.applied = seq
		if l.next != nil {
			close(l.next)
			l.next = nil
		}
	}
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return p.Wait(ctx)
}

// Load returns a room's storage as the centre has it, for its new owner
// (token must be the room's lease).
func (c *Centre) Load(ctx context.Context, k Key, token uint64) ([]kv, error) {
	c.mu.Lock()
	l := c.leases[k]
	ok := l != nil && l.token == token
	c.mu.Unlock()
	if !ok {
		return nil, ErrFenced
	}
	if err := c.settled(ctx); err != nil { // every backup staged before the grant
		return nil, err
	}
	return scanRoom(c.st, k)
}

// scanRoom reads a room's durable storage from st.
func scanRoom(st *store.Store, k Key) ([]kv, error) {
	var out []kv
	prefix := k.Room + "\x00"
	err := st.Scan(nsApp, roomColl(k), prefix, func(doc string, v []byte) bool {
		out = append(out, kv{k: doc[len(prefix):], v: v})
		return true
	})
	return out, err
}

// LeaseInfo is one room's lease, for listing.
type LeaseInfo struct {
	Key   Key
	Owner string
	Token uint64
	Valid bool
}

// Leases lists the leases of app's rooms.
func (c *Centre) Leases(app string) []LeaseInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	var out []LeaseInfo
	for k, l := range c.leases {
		if k.App == app {
			out = append(out, LeaseInfo{Key: k, Owner: l.owner, Token: l.token, Valid: c.valid(l, now)})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Key.Fn != out[j].Key.Fn {
			return out[i].Key.Fn < out[j].Key.Fn
		}
		return out[i].Key.Room < out[j].Key.Room
	})
	return out
}

// Lease returns a room's lease if it is valid.
func (c *Centre) Lease(k Key) (LeaseInfo, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.leases[k]
	if !c.valid(l, time.Now()) {
		return LeaseInfo{}, false
	}
	return LeaseInfo{Key: k, Owner: l.owner, Token: l.token, Valid: true}, true
}

// Orphans returns rooms whose next alarm is due by `by` and that have no
// valid lease: nobody would fire their alarms.
func (c *Centre) Orphans(by time.Time) []Key {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	var out []Key
	for k, at := range c.alarms {
		if at <= by.UnixMilli() && !c.valid(c.leases[k], now) {
			out = append(out, k)
		}
	}
	return out
}

// ErrSessionEnded: the PoP's session at the centre ended; it must drop its
// rooms and open a new one.
var ErrSessionEnded = errors.New("rooms: this PoP's session at the centre ended")

// kv is one storage key and value (nil: deleted).
type kv struct {
	k string
	v []byte
}
