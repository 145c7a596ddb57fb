package netsim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrPartitioned is matched (errors.Is) by every error caused by a partition:
// failed dials and the Read/Write errors of connections it cut.
var ErrPartitioned = errors.New("netsim: link partitioned")

// PartitionError says which link is partitioned.
type PartitionError struct{ Peer, Addr string }

func (e *PartitionError) Error() string {
	return fmt.Sprintf("netsim: link to peer %q (%s) is partitioned; Heal(%q) restores it", e.Peer, e.Addr, e.Peer)
}

// Is makes errors.Is(err, ErrPartitioned) true.
func (e *PartitionError) Is(target error) bool { return target == ErrPartitioned }

// dialTimeout bounds a dial: nats.go applies its Timeout option only to its
// own net.Dialer, never to a custom dialer.
const dialTimeout = 5 * time.Second

// Layer is one PoP's side of the emulated WAN. It is a dialer: connections
// to a known peer's address are wrapped and delayed by the link's one-way
// latency in both directions; dials to any other address pass through
// undelayed and untracked (local services, the PoP's own server, clients).
// It satisfies nats.CustomDialer. All methods are safe for concurrent use.
type Layer struct {
	self Point

	mu     sync.Mutex
	model  Model
	peers  map[string]*link
	byAddr map[string]*link

	// live counts the goroutines of delayed connections, so tests can check
	// that Close leaves none behind.
	live atomic.Int64
}

// NewLayer returns the network layer of a PoP located at self.
func NewLayer(self Point, m Model) *Layer {
	return &Layer{
		self:   self,
		model:  m.normalize(),
		peers:  make(map[string]*link),
		byAddr: make(map[string]*link),
	}
}

// link is the path to one peer. Its traffic counters outlive connections.
type link struct {
	id   string
	addr string
	at   Point

	delay atomic.Pointer[delay]
	out   counters
	in    counters

	mu    sync.Mutex
	up    bool
	conns map[tracked]struct{}
}

type counters struct {
	bytes, writes atomic.Uint64
	queued        atomic.Int64
}

func (c *counters) count(n int) {
	c.bytes.Add(uint64(n))
	c.writes.Add(1)
}

// tracked is a connection a partition must be able to cut.
type tracked interface{ abort(error) }

func (k *link) add(c tracked) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.up {
		return k.partitionErr()
	}
	k.conns[c] = struct{}{}
	return nil
}

func (k *link) remove(c tracked) {
	k.mu.Lock()
	delete(k.conns, c)
	k.mu.Unlock()
}

func (k *link) partitionErr() error { return &PartitionError{Peer: k.id, Addr: k.addr} }

// AddPeer declares the peer id reachable at addr (the host:port that will be
// dialed, as nats.go passes it: an IP literal unless SkipHostLookup is set;
// a host name is also registered under the addresses it resolves to), and at
// the further addresses more (say, its HTTP gateway), which share the link:
// its latency, its partitions, its traffic counts.
// Adding an existing id again moves it to the new addresses and location.
func (l *Layer) AddPeer(id, addr string, at Point, more ...string) error {
	if id == "" {
		return errors.New("netsim: AddPeer: empty peer id")
	}
	var addrs []string
	for _, a := range append([]string{addr}, more...) {
		resolved, err := resolve(a)
		if err != nil {
			return fmt.Errorf("netsim: AddPeer %q: %w", id, err)
		}
		addrs = append(addrs, resolved...)
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range addrs {
		if k, ok := l.byAddr[a]; ok && k.id != id {
			return fmt.Errorf("netsim: AddPeer %q: address %s already belongs to peer %q", id, a, k.id)
		}
	}
	k := l.peers[id]
	if k == nil {
		k = &link{id: id, up: true, conns: make(map[tracked]struct{})}
		l.peers[id] = k
	}
	for a, owner := range l.byAddr {
		if owner == k {
			delete(l.byAddr, a)
		}
	}
	k.addr, k.at = addr, at
	for _, a := range addrs {
		l.byAddr[a] = k
	}
	k.delay.Store(l.model.resolve(l.self, at))
	return nil
}

// resolve returns addr and, for a host name, the addresses it resolves to.
func resolve(addr string) ([]string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("address %q is not host:port: %w", addr, err)
	}
	addrs := []string{addr}
	if net.ParseIP(host) == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		ips, err := net.DefaultResolver.LookupHost(ctx, host)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("resolve %q: %w", host, err)
		}
		for _, ip := range ips {
			addrs = append(addrs, net.JoinHostPort(ip, port))
		}
	}
	return addrs, nil
}

// Dial connects to addr; see [Layer.DialContext].
func (l *Layer) Dial(network, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	return l.DialContext(ctx, network, addr)
}

// DialContext connects to addr. For a peer's address it fails with a
// *PartitionError while the link is partitioned; otherwise it connects,
// then waits one round trip (the TCP handshake) before returning a
// connection whose bytes are delayed by the link's one-way latency in each
// direction. A connection dialed while the model's Scale is 0 is a bare
// pass-through (it still counts traffic and is cut by partitions) and stays
// so: SetModel affects only connections dialed with a nonzero Scale.
func (l *Layer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	l.mu.Lock()
	k := l.byAddr[addr]
	l.mu.Unlock()
	var d net.Dialer
	if k == nil {
		return d.DialContext(ctx, network, addr)
	}
	k.mu.Lock()
	up := k.up
	k.mu.Unlock()
	if !up {
		return nil, k.partitionErr()
	}
	raw, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("netsim: dial peer %q: %w", k.id, err)
	}
	dl := k.delay.Load()
	if dl.zero() {
		c := &rawConn{Conn: raw, link: k}
		if err := k.add(c); err != nil {
			raw.Close()
			return nil, err
		}
		return c, nil
	}
	c := newConn(l, k, raw)
	if err := k.add(c); err != nil {
		c.Close()
		return nil, err
	}
	c.start()
	t := time.NewTimer(2 * dl.lat)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		c.Close()
		return nil, fmt.Errorf("netsim: dial peer %q: %w", k.id, ctx.Err())
	}
	if err := c.abortError(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Partition cuts the link to peer: every open connection is closed at once
// (queued bytes are dropped; Read and Write return a *PartitionError) and new
// dials fail until Heal.
func (l *Layer) Partition(peer string) error {
	k, err := l.peer(peer)
	if err != nil {
		return err
	}
	k.partition()
	return nil
}

// Heal restores the link to peer. Connections cut by the partition stay
// closed; clients redial.
func (l *Layer) Heal(peer string) error {
	k, err := l.peer(peer)
	if err != nil {
		return err
	}
	k.mu.Lock()
	k.up = true
	k.mu.Unlock()
	return nil
}

// PartitionAll cuts every link: the PoP is isolated from all its peers.
func (l *Layer) PartitionAll() {
	for _, k := range l.links() {
		k.partition()
	}
}

// HealAll restores every link.
func (l *Layer) HealAll() {
	for _, k := range l.links() {
		k.mu.Lock()
		k.up = true
		k.mu.Unlock()
	}
}

func (k *link) partition() {
	k.mu.Lock()
	k.up = false
	conns := make([]tracked, 0, len(k.conns))
	for c := range k.conns {
		conns = append(conns, c)
	}
	clear(k.conns)
	k.mu.Unlock()
	err := k.partitionErr()
	for _, c := range conns {
		c.abort(err)
	}
}

// SetModel changes the model. It applies to bytes written or received from
// now on; bytes already queued keep their delivery time.
func (l *Layer) SetModel(m Model) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.model = m.normalize()
	for _, k := range l.peers {
		k.delay.Store(l.model.resolve(l.self, k.at))
	}
}

// Model returns the current model (normalised).
func (l *Layer) Model() Model {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.model
}

// LinkStatus is a snapshot of one link, for metrics and `verge net`.
type LinkStatus struct {
	Peer   string
	Addr   string
	Up     bool
	OneWay time.Duration
	Conns  int     // open connections
	Out    Traffic // towards the peer
	In     Traffic // from the peer
}

// Traffic counts one direction of a link since AddPeer.
type Traffic struct {
	Bytes  uint64
	Writes uint64 // Write calls going out; socket reads coming in
	Queued int64  // bytes held by the emulation right now
}

// Links returns the status of every link, sorted by peer id.
func (l *Layer) Links() []LinkStatus {
	ks := l.links()
	out := make([]LinkStatus, 0, len(ks))
	for _, k := range ks {
		k.mu.Lock()
		s := LinkStatus{Peer: k.id, Addr: k.addr, Up: k.up, Conns: len(k.conns)}
		k.mu.Unlock()
		s.OneWay = k.delay.Load().lat
		s.Out = k.out.snapshot()
		s.In = k.in.snapshot()
		out = append(out, s)
	}
	return out
}

func (c *counters) snapshot() Traffic {
	return Traffic{Bytes: c.bytes.Load(), Writes: c.writes.Load(), Queued: c.queued.Load()}
}

func (l *Layer) links() []*link {
	l.mu.Lock()
	ks := make([]*link, 0, len(l.peers))
	for _, k := range l.peers {
		ks = append(ks, k)
	}
	l.mu.Unlock()
	slices.SortFunc(ks, func(a, b *link) int { return strings.Compare(a.id, b.id) })
	return ks
}

func (l *Layer) peer(id string) (*link, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := l.peers[id]
	if k == nil {
		return nil, fmt.Errorf("netsim: unknown peer %q; declare it with AddPeer", id)
	}
	return k, nil
}
