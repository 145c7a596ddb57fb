// Package mesh is how PoPs talk to each other: every PoP embeds a NATS
// server (github.com/nats-io/nats-server/v2) and keeps one nats.go client
// connection to every peer's server.
//
// The topology is a full mesh of client connections, not a NATS cluster.
// Traffic from PoP A to PoP B always crosses exactly one link, the one
// between them, whatever the number of PoPs:
//
//   - A pushes to B (replication batches) by publishing on its own server,
//     subject verge.to.B.<kind>; B's connection to A's server subscribes to
//     it. The message crosses the A–B link once.
//   - A asks B something (a resend, anti-entropy digests, a document that
//     follows its user, a SPOT operation when B is the centre) with a
//     request on its connection to B's server, subject verge.at.B.<kind>;
//     B subscribes to that on its own server.
//
// Why not a NATS cluster (routes): routes gossip each other's addresses and
// connect implicitly, so a test could not force every link through the
// userspace WAN emulation (internal/netsim), and interest propagation adds
// its own delays and failure modes on partitions. With client connections
// the dialer of every link is ours: latency, loss and partitions apply per
// link, and a partition is as simple as closing that link's connections.
// See RATIONALE.md.
package mesh

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
)

// Peer is another PoP: its id and the address of its NATS server.
type Peer struct {
	ID   string
	Addr string // host:port
}

// Options configures a PoP's mesh endpoint.
type Options struct {
	// ID is this PoP's id: letters, digits, '-' and '_' (it is part of subjects).
	ID string
	// Listen is the host:port of the embedded NATS server ("127.0.0.1:0" picks a port).
	Listen string
	// Peers are the other PoPs. Connections are made in the background and
	// retried forever, so peers may start in any order.
	Peers []Peer
	// ServerTLS, when set, makes the embedded server require TLS from peers;
	// ClientTLS is what this PoP presents and verifies when dialing them.
	ServerTLS, ClientTLS *tls.Config
	// Dialer opens connections to peers (internal/netsim's Layer emulates the
	// WAN); nil dials directly.
	Dialer nats.CustomDialer
	// JetStreamDir, when set, enables JetStream on the embedded server with
	// its storage there and an fsync on every write (the central PoP's SPOT).
	JetStreamDir string
	// Cluster, with JetStreamDir, joins this PoP's server to the cluster of
	// central servers that replicate the SPOT (JetStream R3). The routes
	// are the other central servers; edge PoPs never join it.
	Cluster *Cluster
	// PingInterval bounds how long a silently dead link goes unnoticed
	// (about three intervals). Default 1 s.
	PingInterval time.Duration
	// OnPeer is called (from a nats.go callback goroutine) when a peer's
	// connection comes up or goes down.
	OnPeer func(id string, up bool)
}

// Cluster is a NATS cluster of central servers.
type Cluster struct {
	Name   string   // the same on every member
	Listen string   // host:port for routes from the other members
	Routes []string // host:port of the other members' route listeners
}

// Apply sets the cluster options of a NATS server.
func (c *Cluster) Apply(so *server.Options) error {
	host, portStr, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("cluster listen address %q: %w", c.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("cluster listen address %q: bad port", c.Listen)
	}
	so.Cluster = server.ClusterOpts{Name: c.Name, Host: host, Port: port}
	var routes []string
	for _, r := range c.Routes {
		routes = append(routes, "nats-route://"+r)
	}
	so.Routes = server.RoutesFromStr(strings.Join(routes, ","))
	return nil
}

// MaxPayload is the largest message the mesh carries. Replication batches
// and anti-entropy pages are cut to stay under it.
const MaxPayload = 8 << 20

// Mesh is one PoP's endpoint. Its methods are safe for concurrent use.
type Mesh struct {
	opts  Options
	srv   *server.Server
	local *nats.Conn

	mu    sync.Mutex
	peers map[string]*nats.Conn
	subs  []*nats.Subscription
}

// ValidID reports whether id can name a PoP.
func ValidID(id string) error {
	if id == "" || len(id) > 64 {
		return fmt.Errorf("PoP id %q: want 1 to 64 characters", id)
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("PoP id %q: only letters, digits, '-' and '_' are allowed", id)
		}
	}
	return nil
}

// Start starts the embedded server and the connections to the peers.
func Start(opts Options) (*Mesh, error) {
	if err := ValidID(opts.ID); err != nil {
		return nil, err
	}
	for _, p := range opts.Peers {
		if err := ValidID(p.ID); err != nil {
			return nil, err
		}
		if p.ID == opts.ID {
			return nil, fmt.Errorf("mesh: peer %q is this PoP itself", p.ID)
		}
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = time.Second
	}
	host, portStr, err := net.SplitHostPort(opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("mesh: listen address %q: %w", opts.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("mesh: listen address %q: bad port", opts.Listen)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	so := &server.Options{
		ServerName: "verge-" + opts.ID,
		Host:       host,
		Port:       port,
		NoLog:      true,
		NoSigs:     true,
		MaxPayload: MaxPayload,
		// Replication pushes to a slow peer must not be dropped by the
		// server's slow-consumer protection before our own flow control
		// (one window of batches) notices.
		MaxPending:    64 << 20,
		WriteDeadline: 10 * time.Second,
	}
	if opts.ServerTLS != nil {
		so.TLSConfig = opts.ServerTLS
		so.TLS = true
		so.TLSVerify = opts.ServerTLS.ClientAuth == tls.RequireAndVerifyClientCert
		so.TLSTimeout = 5
		so.AllowNonTLS = false
	}
	if opts.JetStreamDir != "" {
		so.JetStream = true
		so.StoreDir = opts.JetStreamDir
		so.SyncAlways = true
		so.DisableJetStreamBanner = true
		if opts.Cluster != nil {
			if err := opts.Cluster.Apply(so); err != nil {
				return nil, fmt.Errorf("mesh: %w", err)
			}
		}
	}
	srv, err := server.NewServer(so)
	if err != nil {
		return nil, fmt.Errorf("mesh: starting the NATS server: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("mesh: the NATS server on %s did not start within 10 s (port in use?)", opts.Listen)
	}
	m := &Mesh{opts: opts, srv: srv, peers: make(map[string]*nats.Conn)}
	m.local, err = nats.Connect("", nats.InProcessServer(srv), nats.Name(opts.ID+"-local"),
		nats.MaxReconnects(-1), nats.NoCallbacksAfterClientClose())
	if err != nil {
		srv.Shutdown()
		return nil, fmt.Errorf("mesh: in-process connection: %w", err)
	}
	for _, p := range opts.Peers {
		if err := m.connect(p); err != nil {
			m.Close()
			return nil, err
		}
	}
	return m, nil
}

func (m *Mesh) connect(p Peer) error {
	scheme := "nats://"
	nopts := []nats.Option{
		nats.Name(m.opts.ID + "->" + p.ID),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(100 * time.Millisecond),
		nats.ReconnectJitter(50*time.Millisecond, 50*time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.PingInterval(m.opts.PingInterval),
		nats.MaxPingsOutstanding(3),
		nats.Timeout(5 * time.Second),
		// A peer's server is not clustered, but never follow addresses it
		// advertises: every link must go through our dialer.
		nats.IgnoreDiscoveredServers(),
		nats.DontRandomize(),
		// Buffer nothing while disconnected: replication resends from the
		// log, and a request should fail fast rather than wait for a heal.
		nats.ReconnectBufSize(-1),
		nats.NoCallbacksAfterClientClose(),
		nats.ConnectHandler(func(*nats.Conn) { m.peerEvent(p.ID, true) }),
		nats.ReconnectHandler(func(*nats.Conn) { m.peerEvent(p.ID, true) }),
		nats.DisconnectErrHandler(func(*nats.Conn, error) { m.peerEvent(p.ID, false) }),
	}
	if m.opts.Dialer != nil {
		nopts = append(nopts, nats.SetCustomDialer(m.opts.Dialer))
	}
	if m.opts.ClientTLS != nil {
		scheme = "tls://"
		nopts = append(nopts, nats.Secure(m.opts.ClientTLS))
	}
	nc, err := nats.Connect(scheme+p.Addr, nopts...)
	if err != nil {
		return fmt.Errorf("mesh: connection to peer %s at %s: %w", p.ID, p.Addr, err)
	}
	m.mu.Lock()
	m.peers[p.ID] = nc
	m.mu.Unlock()
	return nil
}

func (m *Mesh) peerEvent(id string, up bool) {
	if m.opts.OnPeer != nil {
		m.opts.OnPeer(id, up)
	}
}

// ID returns this PoP's id.
func (m *Mesh) ID() string { return m.opts.ID }

// Addr returns the address the embedded server listens on.
func (m *Mesh) Addr() string { return m.srv.Addr().String() }

// Server returns the embedded NATS server.
func (m *Mesh) Server() *server.Server { return m.srv }

// Local returns this PoP's in-process connection to its own server.
func (m *Mesh) Local() *nats.Conn { return m.local }

// Peers returns the ids of the peers, in configuration order.
func (m *Mesh) Peers() []string {
	out := make([]string, len(m.opts.Peers))
	for i, p := range m.opts.Peers {
		out[i] = p.ID
	}
	return out
}

// Conn returns the connection to peer's server.
func (m *Mesh) Conn(peer string) (*nats.Conn, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	nc, ok := m.peers[peer]
	return nc, ok
}

// Up reports whether the link to peer is connected.
func (m *Mesh) Up(peer string) bool {
	nc, ok := m.Conn(peer)
	return ok && nc.IsConnected()
}

// ErrUnreachable is returned for a peer whose link is down: the caller should
// fail fast (or try another PoP) rather than wait for it.
var ErrUnreachable = errors.New("peer unreachable")

// Request asks peer: a request on subject verge.at.<peer>.<kind> over the
// link to it. ctx bounds the wait.
func (m *Mesh) Request(ctx context.Context, peer, kind string, data []byte) ([]byte, error) {
	nc, ok := m.Conn(peer)
	if !ok {
		return nil, fmt.Errorf("mesh: %q is not a peer of %s", peer, m.opts.ID)
	}
	if !nc.IsConnected() {
		return nil, fmt.Errorf("mesh: %s -> %s: %w (the link is down)", m.opts.ID, peer, ErrUnreachable)
	}
	msg, err := nc.RequestMsgWithContext(ctx, outgoing(ctx, "verge.at."+peer+"."+kind, data))
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionReconnecting) {
			return nil, fmt.Errorf("mesh: %s -> %s %s: %w (%v)", m.opts.ID, peer, kind, ErrUnreachable, err)
		}
		return nil, fmt.Errorf("mesh: %s -> %s %s: %w", m.opts.ID, peer, kind, err)
	}
	return replyPayload(msg)
}

// Push sends data to peer on subject verge.to.<peer>.<kind> through this
// PoP's own server and waits for the peer's reply. ctx bounds the wait.
func (m *Mesh) Push(ctx context.Context, peer, kind string, data []byte) ([]byte, error) {
	msg, err := m.local.RequestMsgWithContext(ctx, outgoing(ctx, "verge.to."+peer+"."+kind, data))
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return nil, fmt.Errorf("mesh: %s -> %s %s: %w (not subscribed: the link is down)", m.opts.ID, peer, kind, ErrUnreachable)
		}
		return nil, fmt.Errorf("mesh: %s -> %s %s: %w", m.opts.ID, peer, kind, err)
	}
	return replyPayload(msg)
}

// Errors travel as replies with this header, so a handler's error reaches
// the caller as an error, not as data.
const errHeader = "Verge-Error"

func replyPayload(msg *nats.Msg) ([]byte, error) {
	if e := msg.Header.Get(errHeader); e != "" {
		return nil, &RemoteError{Msg: e}
	}
	return msg.Data, nil
}

// RemoteError is an error returned by the peer's handler.
type RemoteError struct{ Msg string }

func (e *RemoteError) Error() string { return "peer: " + e.Msg }

// Handler answers a request or a push. from is the asking PoP for pushes
// (the peer whose server delivered it) and "" for requests, where the
// payload must say who asks if it matters.
type Handler func(from string, data []byte) ([]byte, error)

// HandlerCtx is a Handler that also gets the message's context: the trace
// it belongs to (obs.Extract) and the headers the sender added (Header).
type HandlerCtx func(ctx context.Context, from string, data []byte) ([]byte, error)

// Message headers travel beside the payload: the W3C trace context of the
// sender's ctx (so one trace follows a request across PoPs), and whatever
// the sender put in its ctx with WithHeader.

type headersKey struct{}

// WithHeader returns ctx with a header to send on the mesh messages made
// under it.
func WithHeader(ctx context.Context, key, value string) context.Context {
	old, _ := ctx.Value(headersKey{}).(map[string]string)
	h := make(map[string]string, len(old)+1)
	for k, v := range old {
		h[k] = v
	}
	h[key] = value
	return context.WithValue(ctx, headersKey{}, h)
}

// Header returns a header of the message a HandlerCtx is answering.
func Header(ctx context.Context, key string) string {
	h, _ := ctx.Value(headersKey{}).(map[string]string)
	return h[key]
}

func outgoing(ctx context.Context, subject string, data []byte) *nats.Msg {
	msg := nats.NewMsg(subject)
	msg.Data = data
	h, _ := ctx.Value(headersKey{}).(map[string]string)
	for k, v := range h {
		msg.Header.Set(k, v)
	}
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(msg.Header))
	return msg
}

// incoming is the context of a received message: its headers and trace.
func incoming(msg *nats.Msg) context.Context {
	ctx := context.Background()
	if len(msg.Header) == 0 {
		return ctx
	}
	h := make(map[string]string, len(msg.Header))
	for k := range msg.Header {
		h[k] = msg.Header.Get(k)
	}
	ctx = context.WithValue(ctx, headersKey{}, h)
	return propagation.TraceContext{}.Extract(ctx, propagation.HeaderCarrier(msg.Header))
}

// HandleRequests answers requests of kind addressed to this PoP.
func (m *Mesh) HandleRequests(kind string, h Handler) error {
	return m.HandleRequestsCtx(kind, func(_ context.Context, from string, data []byte) ([]byte, error) { return h(from, data) })
}

// HandleRequestsCtx answers requests of kind addressed to this PoP, with
// their context.
func (m *Mesh) HandleRequestsCtx(kind string, h HandlerCtx) error {
	sub, err := m.local.Subscribe("verge.at."+m.opts.ID+"."+kind, func(msg *nats.Msg) {
		out, err := h(incoming(msg), "", msg.Data)
		respond(msg, out, err)
	})
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.subs = append(m.subs, sub)
	m.mu.Unlock()
	// The subscription is only sent, not yet known to the server: a peer's
	// request arriving on another connection meanwhile would find no
	// responder. One round trip to our own server settles it.
	if err := m.local.FlushTimeout(5 * time.Second); err != nil {
		return fmt.Errorf("mesh: registering the %q handler with this PoP's NATS server: %w", kind, err)
	}
	return nil
}

// HandlePushes answers pushes of kind from every peer. Pushes from one peer
// are handled one at a time, in the order sent.
func (m *Mesh) HandlePushes(kind string, h Handler) error {
	return m.HandlePushesCtx(kind, func(_ context.Context, from string, data []byte) ([]byte, error) { return h(from, data) })
}

// HandlePushesCtx answers pushes of kind from every peer, with their
// context.
func (m *Mesh) HandlePushesCtx(kind string, h HandlerCtx) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, nc := range m.peers {
		sub, err := nc.Subscribe("verge.to."+m.opts.ID+"."+kind, func(msg *nats.Msg) {
			out, err := h(incoming(msg), id, msg.Data)
			respond(msg, out, err)
		})
		if err != nil {
			return err
		}
		m.subs = append(m.subs, sub)
	}
	return nil
}

func respond(msg *nats.Msg, out []byte, err error) {
	if msg.Reply == "" {
		return
	}
	r := nats.NewMsg(msg.Reply)
	if err != nil {
		r.Header.Set(errHeader, strings.ReplaceAll(err.Error(), "\n", " "))
	} else {
		r.Data = out
	}
	_ = msg.RespondMsg(r)
}

// Close closes every connection and stops the server.
func (m *Mesh) Close() {
	m.mu.Lock()
	peers := m.peers
	m.peers = map[string]*nats.Conn{}
	m.mu.Unlock()
	for _, nc := range peers {
		nc.Close()
	}
	if m.local != nil {
		m.local.Close()
	}
	m.srv.Shutdown()
	m.srv.WaitForShutdown()
}
