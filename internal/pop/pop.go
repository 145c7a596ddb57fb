// Package pop assembles one point of presence, and is the only place that
// does: `verge serve` runs one PoP of a network, `verge dev` a network of one
// PoP (its own centre), tests and benchmarks several in one process. A PoP
// opens its store and hands it to the services that share it (documents,
// replication, stock escrows), joins the mesh, starts the single point of
// truth (at the centre) or its client, loads its app with every host
// capability (internal/host), and serves HTTP and the admin API.
package pop

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/verge-edge/verge/internal/durable"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/crdt"
	"github.com/verge-edge/verge/internal/admin"
	"github.com/verge-edge/verge/internal/app"
	"github.com/verge-edge/verge/internal/cache"
	"github.com/verge-edge/verge/internal/deploy"
	"github.com/verge-edge/verge/internal/documents"
	"github.com/verge-edge/verge/internal/gateway"
	"github.com/verge-edge/verge/internal/host"
	"github.com/verge-edge/verge/internal/jsonapi"
	"github.com/verge-edge/verge/internal/mesh"
	"github.com/verge-edge/verge/internal/netsim"
	"github.com/verge-edge/verge/internal/obs"
	"github.com/verge-edge/verge/internal/replicate"
	"github.com/verge-edge/verge/internal/rooms"
	"github.com/verge-edge/verge/internal/spot"
	"github.com/verge-edge/verge/internal/stock"
	"github.com/verge-edge/verge/internal/store"
	"github.com/verge-edge/verge/internal/wasm"
)

// Options configures a PoP.
type Options struct {
	Self string
	// Network is every PoP with its addresses. This PoP listens on its own
	// entry's Mesh, HTTP and Admin addresses ("" disables HTTP or the
	// admin API; port 0 picks one) and reaches the others at theirs.
	Network verge.Network
	// AdminToken is required by every admin endpoint when set; an admin
	// address beyond loopback needs one (admin.CheckListen).
	AdminToken string
	// AdminFallback moves the admin API to a free loopback port when its
	// address is taken (verge dev's default address).
	AdminFallback bool
	// Server bounds what HTTP and admin clients can hold open (zero
	// fields: gateway's defaults).
	Server gateway.ServerOptions
	// Data is the PoP's data directory (identity, store, SPOT, deploys).
	Data string
	// App is an app this PoP serves from its directory (already built), as
	// `verge dev` does, beside what is deployed; it is the default app.
	App *verge.Manifest
	// DefaultApp names the app that answers a Host naming no app (App's
	// name when App is set; `verge net up --app` sets it).
	DefaultApp string
	// DeployWait bounds how long a starting PoP waits for the centre to
	// say which app versions it serves (default 10 s; without an answer it
	// serves what it served before).
	DeployWait time.Duration
	// CacheDir is the compilation cache ("" the user's cache, "-" none).
	CacheDir string
	// Layer is this PoP's side of the emulated WAN: mesh connections and
	// requests forwarded to other PoPs' HTTP gateways are dialed through it
	// (declare both addresses of each peer), and `verge net partition` acts
	// on it. nil dials directly.
	Layer *netsim.Layer
	// ServerTLS and ClientTLS secure the mesh (nil: plain TCP).
	ServerTLS, ClientTLS *tls.Config
	// Window and AntiEntropy tune replication (0: defaults).
	Window, AntiEntropy time.Duration
	// MaxLog is replicate.Options.MaxLog: the most log entries kept for
	// peers that have not acknowledged them (0: the default).
	MaxLog uint64
	// Applied is replicate.Options.Applied (benchmarks, metrics).
	Applied func(peer string, keys []store.Key)
	// NoSync acknowledges writes before fsync (tests and benchmarks only).
	NoSync bool
	// SpotReplicas and SpotCluster (central PoP only): replicate the SPOT
	// over three central servers (JetStream R3).
	SpotReplicas int
	SpotCluster  *mesh.Cluster
	// SpotTimeout bounds a SPOT operation from an edge PoP (default 2 s):
	// when the centre does not answer, it fails fast with a clear error.
	SpotTimeout time.Duration
	// CentralWait bounds how long a PoP with an empty data directory waits
	// for the central PoP to learn its incarnation (default 30 s).
	CentralWait time.Duration
	// AppDefaults and Apps are what the operator grants each app at this
	// PoP: its weight in the fair shares of guest slots (process-wide) and
	// its quotas (quota.go); an app's own entry wins field by field.
	AppDefaults AppPolicy
	Apps        map[string]AppPolicy
	// RoomLeaseTTL is rooms.Options.LeaseTTL (0: its default).
	RoomLeaseTTL time.Duration
	// HTTPCache configures the PoP's HTTP cache (docs/cache.md).
	HTTPCache HTTPCacheOptions
	Logger    *slog.Logger
}

// PoP is a running point of presence.
type PoP struct {
	opts Options
	self verge.PoP
	log  *slog.Logger

	Mesh  *mesh.Mesh
	Store *store.Store // the PoP's one store, shared by the services below
	Docs  *documents.Service
	Repl  *replicate.Replicator
	// Spot is the single point of truth as this PoP's functions and admin
	// API see it: the centre's engine (a client of it at an edge PoP)
	// behind the hybrid threshold of declared stocks; Stock is the same
	// decorator, for its escrows.
	Spot     spot.Engine
	Stock    *stock.Stock
	Rooms    *rooms.Service // realtime rooms (docs/rooms.md)
	Cache    *cache.Cache   // the HTTP cache (nil: off); see cache.go
	purges   *purger
	stopSpot func()
	eng      *wasm.Engine
	apps     apps
	stats    *deploy.Stats
	metrics  *obs.Metrics
	slow     obs.SlowLog
	quotas   *quotas
	agent    *deploy.Agent
	// Deploys is the centre's controller of versions and rollouts (nil at
	// an edge PoP).
	Deploys *deploy.Controller
	http    *http.Server
	admin   *http.Server
	httpL   net.Listener
	admL    net.Listener
	// forwarding carries requests forwarded to other PoPs' gateways,
	// through the emulated WAN when there is one.
	forwarding *http.Transport

	// Incarnation is this PoP's incarnation: 1 for a fresh network, +1
	// every time it starts with an empty data directory.
	Incarnation uint16
	// Rebuilt is the number of documents pulled at start by a PoP whose
	// data directory was empty.
	Rebuilt int

	store0   atomic.Pointer[store.Store] // for the incarnation handler, before Store is set
	fresh    atomic.Bool                 // starting with an empty data directory: has seen nothing
	repl0    atomic.Pointer[replicate.Replicator]
	agent0   atomic.Pointer[deploy.Agent]
	deploys0 atomic.Pointer[deploy.Controller]
	rooms0   atomic.Pointer[rooms.Service]

	closeOnce sync.Once
}

// Start starts the PoP. It returns once it serves HTTP.
func Start(ctx context.Context, opts Options) (_ *PoP, err error) {
	if err := opts.Network.Validate(); err != nil {
		return nil, err
	}
	self, ok := opts.Network.PoP(opts.Self)
	if !ok {
		return nil, fmt.Errorf("PoP %q is not in the network", opts.Self)
	}
	if err := admin.CheckToken(opts.AdminToken); err != nil {
		return nil, err
	}
	if self.Admin != "" {
		if err := admin.CheckListen(self.Admin, opts.AdminToken); err != nil {
			return nil, err
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.SpotTimeout <= 0 {
		opts.SpotTimeout = 2 * time.Second
	}
	if opts.CentralWait <= 0 {
		opts.CentralWait = 30 * time.Second
	}
	if opts.DeployWait <= 0 {
		opts.DeployWait = 10 * time.Second
	}
	if opts.App != nil && opts.DefaultApp == "" {
		opts.DefaultApp = opts.App.Name
	}
	p := &PoP{opts: opts, self: self, log: opts.Logger.With("pop", opts.Self), stats: deploy.NewStats(), metrics: obs.NewMetrics(opts.Self)}
	p.collectMetrics()
	p.slow.Threshold = 100 * time.Millisecond
	p.quotas = newQuotas(opts.AppDefaults, opts.Apps)
	applyWeights(opts.AppDefaults, opts.Apps)
	p.apps.init(opts.DefaultApp)
	p.purges = newPurger(p)
	p.forwarding = http.DefaultTransport.(*http.Transport).Clone()
	if opts.Layer != nil {
		p.forwarding.DialContext = opts.Layer.DialContext
	}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	if err := p.openCache(); err != nil {
		return nil, err
	}
	if err := p.startMesh(); err != nil {
		return nil, err
	}
	fresh, inc, err := p.identity(ctx)
	if err != nil {
		return nil, err
	}
	p.Incarnation = inc
	if err := p.openData(inc); err != nil {
		return nil, err
	}
	if err := p.startSpot(ctx); err != nil {
		return nil, err
	}
	if err := p.startEngine(); err != nil {
		return nil, err
	}
	// The apps before replication: a PoP rebuilding its data needs to know
	// their collections, and it serves nothing before both are done.
	if opts.App != nil {
		if err := p.serveStatic(ctx, opts.App); err != nil {
			return nil, err
		}
	}
	if err := p.startDeploys(ctx); err != nil {
		return nil, err
	}
	if err := p.startReplication(ctx, fresh); err != nil {
		return nil, err
	}
	if self.Central {
		if err := p.Mesh.HandleRequestsCtx("invoke", p.handleInvoke); err != nil {
			return nil, err
		}
	}
	if err := p.startRooms(); err != nil {
		return nil, err
	}
	if err := p.purges.start(); err != nil {
		return nil, err
	}
	if err := p.serveHTTP(); err != nil {
		return nil, err
	}
	if err := p.serveAdmin(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *PoP) startMesh() error {
	var peers []mesh.Peer
	for _, q := range p.opts.Network.PoPs {
		if q.ID != p.opts.Self {
			if q.Mesh == "" {
				return fmt.Errorf("no mesh address for PoP %q", q.ID)
			}
			peers = append(peers, mesh.Peer{ID: q.ID, Addr: q.Mesh})
		}
	}
	var jsDir string
	if p.self.Central {
		jsDir = filepath.Join(p.opts.Data, "spot")
	}
	o := mesh.Options{
		ID: p.opts.Self, Listen: p.self.Mesh, Peers: peers,
		ServerTLS: p.opts.ServerTLS, ClientTLS: p.opts.ClientTLS,
		JetStreamDir: jsDir, Cluster: p.opts.SpotCluster,
		OnPeer: func(id string, up bool) {
			p.log.Info("link", "peer", id, "up", up)
			if r := p.repl0.Load(); r != nil {
				r.PeerEvent(id, up)
			}
			if central, _ := p.opts.Network.Central(); up && id == central.ID {
				if a := p.agent0.Load(); a != nil {
					a.Resync() // deploys made while the link was down
				}
			}
			if d := p.deploys0.Load(); up && d != nil {
				d.PeerUp(id)
			}
			if r := p.rooms0.Load(); r != nil {
				r.PeerEvent(id, up)
			}
			p.purges.peerEvent(id, up)
		},
	}
	if p.opts.Layer != nil {
		o.Dialer = p.opts.Layer
	}
	var err error
	if p.Mesh, err = mesh.Start(o); err != nil {
		return err
	}
	return p.Mesh.HandleRequests("inc", p.handleIncarnation)
}

// openData opens the store, which this PoP owns, and the document service
// over it.
func (p *PoP) openData(inc uint16) error {
	var err error
	p.Store, err = store.Open(filepath.Join(p.opts.Data, "store"), store.Options{
		Origin:        p.opts.Self + "." + strconv.Itoa(int(inc)),
		NoSync:        p.opts.NoSync,
		MaxValueBytes: documents.StoreValueBytes(documents.DefaultMaxDocBytes),
		Committed:     func(took time.Duration, _ int) { p.metrics.StoreCommit.Observe(took.Seconds()) },
	})
	if err != nil {
		return err
	}
	p.store0.Store(p.Store)
	p.Docs = documents.New(p.Store, documents.Options{
		Replica: crdt.ReplicaID(uint32(p.self.Number)<<16 | uint32(inc)),
		Quota:   p.quotas.storedBytesFunc(),
		Written: func(ctx context.Context, _ store.Key, seq uint64) {
			if r := p.repl0.Load(); r != nil {
				r.Traced(ctx, seq)
			}
		},
	})
	return nil
}

func (p *PoP) startReplication(ctx context.Context, fresh bool) error {
	var err error
	p.Repl, err = replicate.New(replicate.Options{
		Self: p.opts.Self, Network: &p.opts.Network, Mesh: p.Mesh, Store: p.Store, Docs: p.Docs,
		Window: p.opts.Window, AntiEntropy: p.opts.AntiEntropy, MaxLog: p.opts.MaxLog, Applied: p.opts.Applied,
		Logger: p.log,
	})
	if err != nil {
		return err
	}
	if err := p.Repl.Start(); err != nil {
		return err
	}
	p.repl0.Store(p.Repl)
	for _, id := range p.Mesh.Peers() {
		if p.Mesh.Up(id) {
			p.Repl.PeerEvent(id, true)
		}
	}
	if fresh && p.Incarnation > 1 {
		// This PoP lost its data: pull what it should hold before serving.
		rctx, cancel := context.WithTimeout(ctx, p.opts.CentralWait)
		n, err := p.Repl.Rebuild(rctx)
		cancel()
		p.Rebuilt = n
		if err != nil {
			p.log.Warn("rebuild incomplete; anti-entropy will finish it", "docs", n, "err", err)
		} else {
			p.log.Info("rebuilt from the centre and peers", "docs", n)
		}
	}
	return nil
}

// startEngine creates the engine every app is loaded into, with every host
// capability.
func (p *PoP) startEngine() error {
	central, _ := p.opts.Network.Central()
	follower := &host.Follower{
		Self: p.opts.Self, Central: central.ID,
		Local: func(app, coll string) bool {
			c, err := p.Docs.Collection(app, coll)
			return err == nil && c.Scope.Kind == verge.ScopeLocal
		},
		Fetch: func(ctx context.Context, peer, app, coll, key string) error {
			_, err := p.Repl.Fetch(ctx, peer, app, coll, key)
			return err
		},
		HomeTimeout: homeTimeout, CentralTimeout: fetchTimeout,
		Log: p.log,
	}
	var err error
	p.eng, err = wasm.NewEngine(wasm.Options{CacheDir: p.opts.CacheDir, Logger: p.log,
		Capabilities: host.Capabilities(host.Services{Documents: p.Docs, Follower: follower, Spot: p.Spot, Invoker: invoker{p}, Fetchers: p.fetchers})})
	return err
}

// serveStatic serves an app from its directory (verge dev, tests).
func (p *PoP) serveStatic(ctx context.Context, m *verge.Manifest) error {
	if err := p.declare(m); err != nil {
		return err
	}
	if err := p.serve(ctx, localVersion(m), m); err != nil {
		return err
	}
	if h := p.apps.byName(m.Name); h != nil && h.app != nil {
		h.app.Reloaded = func() {
			v := localVersion(m)
			h.version.Store(&v)
			p.reloaded(m.Name)
		}
	}
	return nil
}

// startDeploys starts the deploy agent (and, at the centre, the
// controller) and serves the versions this PoP is assigned.
func (p *PoP) startDeploys(ctx context.Context) error {
	var err error
	dir := filepath.Join(p.opts.Data, "apps")
	p.agent, err = deploy.NewAgent(deploy.AgentOptions{Self: p.opts.Self, Dir: dir, Host: deployHost{p}, Stats: p.stats, Probe: p.probe, Logger: p.log})
	if err != nil {
		return err
	}
	var centre deploy.Centre
	if p.self.Central {
		reg, err := deploy.OpenRegistry(filepath.Join(p.opts.Data, "deploys"))
		if err != nil {
			return err
		}
		p.Deploys, err = deploy.NewController(deploy.ControllerOptions{Self: p.opts.Self, Network: &p.opts.Network, Mesh: p.Mesh,
			Registry: reg, Local: p.agent, Validate: p.validate, Logger: p.log})
		if err != nil {
			return err
		}
		centre = p.Deploys
		p.deploys0.Store(p.Deploys)
	} else {
		central, _ := p.opts.Network.Central()
		centre = deploy.MeshCentre{Mesh: p.Mesh, Central: central.ID}
		if err := p.agent.Handle(p.Mesh); err != nil {
			return err
		}
	}
	p.agent0.Store(p.agent)
	return p.agent.Start(ctx, centre, p.opts.DeployWait)
}

// validate loads an app version as this PoP would, and unloads it: the
// centre refuses a bundle that does not load before any PoP sees it.
func (p *PoP) validate(ctx context.Context, m *verge.Manifest) error {
	if len(m.Functions) == 0 {
		return nil
	}
	a, err := app.Load(ctx, p.eng, m, p.log.With("validating", m.Name))
	if err != nil {
		return err
	}
	a.Close()
	return nil
}

// serveHTTP listens for the apps' requests.
func (p *PoP) serveHTTP() error {
	if p.self.HTTP == "" {
		return nil
	}
	var err error
	p.httpL, err = net.Listen("tcp", p.self.HTTP)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", p.self.HTTP, err)
	}
	p.http = gateway.NewServer(p.router(), p.opts.Server, p.log)
	go p.http.Serve(p.httpL)
	return nil
}

// serveAdmin serves the admin API and the network controls, behind the
// token, on the PoP's admin address.
func (p *PoP) serveAdmin() error {
	addr := p.self.Admin
	if addr == "" {
		return nil
	}
	var err error
	p.admL, err = net.Listen("tcp", addr)
	if err != nil && p.opts.AdminFallback && errors.Is(err, syscall.EADDRINUSE) {
		p.log.Warn("the admin address is taken (another verge dev?); using a free port instead", "addr", addr)
		p.admL, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		return fmt.Errorf("admin API: cannot listen on %s: %w", addr, err)
	}
	h := admin.NewHandler(p.Docs, admin.Options{Token: p.opts.AdminToken, Logger: p.log, Spot: p.Spot, Mount: func(mux *http.ServeMux) {
		mux.Handle("/v1/net/", p.netControl())
		mux.Handle("GET /metrics", p.metrics.Handler())
		mux.HandleFunc("GET /v1/slow", func(w http.ResponseWriter, r *http.Request) {
			jsonapi.WriteValue(w, http.StatusOK, map[string]any{"pop": p.opts.Self, "slow": p.slow.Recent()})
		})
		p.deployAPI(mux)
		p.roomsAPI(mux)
		p.cacheAPI(mux)
	}})
	p.admin = gateway.NewServer(h, p.opts.Server, p.log)
	go p.admin.Serve(p.admL)
	return nil
}

// App is the app this PoP serves from its directory (Options.App; nil:
// none), for `verge dev` to reload.
func (p *PoP) App() *app.App {
	if p.opts.App == nil {
		return nil
	}
	if h := p.apps.byName(p.opts.App.Name); h != nil {
		return h.app
	}
	return nil
}

// Serving returns what this PoP serves: app → version.
func (p *PoP) Serving() map[string]string { return p.apps.serving() }

// HTTPAddr and AdminAddr are the addresses actually listened on.
func (p *PoP) HTTPAddr() string  { return addrOf(p.httpL) }
func (p *PoP) AdminAddr() string { return addrOf(p.admL) }

func addrOf(l net.Listener) string {
	if l == nil {
		return ""
	}
	return l.Addr().String()
}

// Close stops serving, then replication, the mesh and the store.
func (p *PoP) Close() {
	p.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if p.http != nil {
			p.http.Shutdown(ctx)
		}
		if p.admin != nil {
			p.admin.Shutdown(ctx)
		}
		p.forwarding.CloseIdleConnections()
		if p.Rooms != nil {
			p.Rooms.Close()
		}
		p.purges.close()
		if p.Deploys != nil {
			p.Deploys.Close()
		}
		if p.agent != nil {
			p.agent.Close()
		}
		for name := range p.apps.serving() {
			p.apps.dropStandby(name)
			if h := p.apps.remove(name); h != nil && h.app != nil {
				h.app.Close()
			}
		}
		if p.eng != nil {
			p.eng.Close(ctx)
		}
		if p.Stock != nil {
			p.Stock.Close()
		}
		if p.stopSpot != nil {
			p.stopSpot()
		}
		if p.Repl != nil {
			p.Repl.Close()
		}
		if p.Mesh != nil {
			p.Mesh.Close()
		}
		if p.Cache != nil {
			p.Cache.Close()
		}
		if p.Store != nil {
			if err := p.Store.Close(); err != nil {
				p.log.Error("closing the store", "err", err)
			}
		}
	})
}

// ---- identity ----

const identityFile = "identity"

// identity reads this PoP's incarnation from its data directory, or, for an
// empty one, learns the highest incarnation the network has seen of this
// PoP and takes the next. A PoP that lost its disk thus never reuses an
// origin or a replica id whose events its peers already hold.
func (p *PoP) identity(ctx context.Context) (fresh bool, inc uint16, err error) {
	path := filepath.Join(p.opts.Data, identityFile)
	if b, err := os.ReadFile(path); err == nil {
		var id string
		var n int
		if _, err := fmt.Sscanf(string(b), "%s %d", &id, &n); err != nil || id != p.opts.Self || n < 1 || n > 65535 {
			return false, 0, fmt.Errorf("%s: damaged or belongs to another PoP (%q); move the data directory away to start this PoP afresh", path, strings.TrimSpace(string(b)))
		}
		return false, uint16(n), nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, 0, err
	}
	if entries, err := os.ReadDir(p.opts.Data); err == nil && len(entries) > 0 {
		for _, e := range entries {
			if e.Name() == "store" {
				return false, 0, fmt.Errorf("%s has a store but no identity file; restore the file or move the directory away", p.opts.Data)
			}
		}
	}
	p.fresh.Store(true)
	seen, err := p.highestIncarnation(ctx)
	if err != nil {
		return false, 0, err
	}
	if seen == 65535 {
		return false, 0, fmt.Errorf("PoP %s has used all 65535 incarnations", p.opts.Self)
	}
	inc = seen + 1
	if err := os.MkdirAll(p.opts.Data, 0o755); err != nil {
		return false, 0, err
	}
	if err := durable.WriteFile(path, []byte(fmt.Sprintf("%s %d\n", p.opts.Self, inc)), 0o644); err != nil {
		return false, 0, err
	}
	p.log.Info("new incarnation", "incarnation", inc)
	return true, inc, nil
}

// highestIncarnation asks the peers which incarnations of this PoP they
// have received data from. The central PoP must answer (it has every
// PoP's writes); the central PoP itself asks the others, best effort.
func (p *PoP) highestIncarnation(ctx context.Context) (uint16, error) {
	central, _ := p.opts.Network.Central()
	wait := p.opts.CentralWait
	if p.self.Central {
		wait = 3 * time.Second
	}
	deadline := time.Now().Add(wait)
	var highest uint16
	heard := map[string]bool{}
	for {
		for _, id := range p.Mesh.Peers() {
			if heard[id] || !p.Mesh.Up(id) {
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			out, err := p.Mesh.Request(rctx, id, "inc", []byte(p.opts.Self))
			cancel()
			if err != nil {
				continue
			}
			n, err := strconv.Atoi(string(out))
			if err != nil || n < 0 || n > 65535 {
				continue
			}
			heard[id] = true
			highest = max(highest, uint16(n))
		}
		if heard[central.ID] || (p.self.Central && len(heard) == len(p.Mesh.Peers())) {
			return highest, nil
		}
		if time.Now().After(deadline) {
			if p.self.Central {
				return highest, nil
			}
			return 0, fmt.Errorf("the data directory %s is empty and the central PoP %s did not answer within %v: a PoP starting afresh needs it to rebuild; start the central PoP first", p.opts.Data, central.ID, wait)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (p *PoP) handleIncarnation(_ string, req []byte) ([]byte, error) {
	st := p.store0.Load()
	if st == nil {
		if p.fresh.Load() {
			// Nothing seen yet: a whole network starting afresh must not
			// wait on itself.
			return []byte("0"), nil
		}
		return nil, errors.New("starting")
	}
	prefix := string(req) + "."
	highest := 0
	for origin := range st.Seqs() {
		if rest, ok := strings.CutPrefix(origin, prefix); ok {
			if n, err := strconv.Atoi(rest); err == nil && n > highest {
				highest = n
			}
		}
	}
	return []byte(strconv.Itoa(highest)), nil
}
