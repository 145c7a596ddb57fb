// Package pop assembles one point of presence: the document store, the
// mesh endpoint, replication, the Wasm runtime serving the app, and the
// admin API. `verge serve` runs one; tests run several in one process.
package pop

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/crdt"
	"github.com/verge-edge/verge/internal/admin"
	"github.com/verge-edge/verge/internal/app"
	"github.com/verge-edge/verge/internal/documents"
	"github.com/verge-edge/verge/internal/gateway"
	"github.com/verge-edge/verge/internal/mesh"
	"github.com/verge-edge/verge/internal/netsim"
	"github.com/verge-edge/verge/internal/replicate"
	"github.com/verge-edge/verge/internal/spot"
	"github.com/verge-edge/verge/internal/stock"
	"github.com/verge-edge/verge/internal/store"
	"github.com/verge-edge/verge/internal/wasm"
)

// Options configures a PoP.
type Options struct {
	Self    string
	Network verge.Network
	// MeshAddrs maps every PoP id (this one included) to its mesh address.
	MeshAddrs map[string]string
	// HTTPAddrs maps PoP ids to their HTTP gateways, for forwarding
	// requests this PoP may not serve (regions).
	HTTPAddrs map[string]string
	// HTTP and Admin are the listen addresses ("" disables; port 0 picks one).
	HTTP, Admin string
	AdminToken  string
	// Data is the PoP's data directory (identity, store).
	Data string
	// App is the manifest of the app this PoP serves (already built).
	App *verge.Manifest
	// CacheDir is the compilation cache ("" none).
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
	Logger      *slog.Logger
}

// PoP is a running point of presence.
type PoP struct {
	opts Options
	log  *slog.Logger
	Mesh *mesh.Mesh
	Data *documents.Service
	Repl *replicate.Replicator
	// Spot is the centre's SPOT engine (a client of it at an edge PoP);
	// Stock adds the hybrid threshold for declared stocks.
	Spot     spot.Engine
	Stock    *stock.Stock
	stopSpot func()
	eng      *wasm.Engine
	app      *app.App
	http     *http.Server
	admin    *http.Server
	httpL    net.Listener
	admL     net.Listener
	// forwarding carries requests forwarded to other PoPs' gateways,
	// through the emulated WAN when there is one.
	forwarding *http.Transport

	// Incarnation is this PoP's incarnation: 1 for a fresh network, +1
	// every time it starts with an empty data directory.
	Incarnation uint16
	// Rebuilt is the number of documents pulled at start by a PoP whose
	// data directory was empty.
	Rebuilt int

	data0 atomic.Pointer[documents.Service] // for the incarnation handler, before Data is set
	fresh atomic.Bool                       // starting with an empty data directory: has seen nothing
	repl0 atomic.Pointer[replicate.Replicator]

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
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.SpotTimeout <= 0 {
		opts.SpotTimeout = 2 * time.Second
	}
	if opts.CentralWait <= 0 {
		opts.CentralWait = 30 * time.Second
	}
	p := &PoP{opts: opts, log: opts.Logger.With("pop", opts.Self)}
	p.forwarding = http.DefaultTransport.(*http.Transport).Clone()
	if opts.Layer != nil {
		p.forwarding.DialContext = opts.Layer.DialContext
	}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()

	var peers []mesh.Peer
	for _, q := range opts.Network.PoPs {
		if q.ID != opts.Self {
			addr, ok := opts.MeshAddrs[q.ID]
			if !ok {
				return nil, fmt.Errorf("no mesh address for PoP %q", q.ID)
			}
			peers = append(peers, mesh.Peer{ID: q.ID, Addr: addr})
		}
	}
	var jsDir string
	if self.Central {
		jsDir = filepath.Join(opts.Data, "spot")
	}
	p.Mesh, err = mesh.Start(mesh.Options{
		ID: opts.Self, Listen: opts.MeshAddrs[opts.Self], Peers: peers,
		ServerTLS: opts.ServerTLS, ClientTLS: opts.ClientTLS, Dialer: dialer(opts.Layer),
		JetStreamDir: jsDir, Cluster: opts.SpotCluster,
		OnPeer: func(id string, up bool) {
			p.log.Info("link", "peer", id, "up", up)
			if r := p.repl0.Load(); r != nil {
				r.PeerEvent(id, up)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	if err := p.Mesh.HandleRequests("inc", p.handleIncarnation); err != nil {
		return nil, err
	}

	fresh, inc, err := p.identity(ctx, self)
	if err != nil {
		return nil, err
	}
	p.Incarnation = inc
	origin := opts.Self + "." + strconv.Itoa(int(inc))
	p.Data, err = documents.Open(filepath.Join(opts.Data, "store"), documents.Options{
		Origin:  origin,
		Replica: crdt.ReplicaID(uint32(self.Number)<<16 | uint32(inc)),
		NoSync:  opts.NoSync,
	})
	if err != nil {
		return nil, err
	}
	p.data0.Store(p.Data)
	apps := []*verge.Manifest{}
	if opts.App != nil {
		p.Data.SetApp(opts.App)
		apps = append(apps, opts.App)
	}
	p.Repl, err = replicate.New(replicate.Options{
		Self: opts.Self, Network: &p.opts.Network, Mesh: p.Mesh, Data: p.Data, Apps: apps,
		Window: opts.Window, AntiEntropy: opts.AntiEntropy, MaxLog: opts.MaxLog, Applied: opts.Applied,
		Logf: func(format string, args ...any) { p.log.Warn(fmt.Sprintf(format, args...)) },
	})
	if err != nil {
		return nil, err
	}
	if err := p.Repl.Start(); err != nil {
		return nil, err
	}
	p.repl0.Store(p.Repl)
	for _, id := range p.Mesh.Peers() {
		if p.Mesh.Up(id) {
			p.Repl.PeerEvent(id, true)
		}
	}
	if fresh && inc > 1 {
		// This PoP lost its data: pull what it should hold before serving.
		rctx, cancel := context.WithTimeout(ctx, opts.CentralWait)
		n, err := p.Repl.Rebuild(rctx)
		cancel()
		p.Rebuilt = n
		if err != nil {
			p.log.Warn("rebuild incomplete; anti-entropy will finish it", "docs", n, "err", err)
		} else {
			p.log.Info("rebuilt from the centre and peers", "docs", n)
		}
	}

	if err := p.startSpot(ctx); err != nil {
		return nil, err
	}
	if opts.App != nil && len(opts.App.Functions) > 0 {
		if err := p.serveApp(ctx); err != nil {
			return nil, err
		}
	}
	if self.Central {
		if err := p.Mesh.HandleRequests("invoke", p.handleInvoke); err != nil {
			return nil, err
		}
	}
	if opts.Admin != "" {
		p.admL, err = net.Listen("tcp", opts.Admin)
		if err != nil {
			return nil, fmt.Errorf("admin API: cannot listen on %s: %w", opts.Admin, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/", admin.NewHandler(p.Data, admin.Options{Token: opts.AdminToken, Logger: p.log, Spot: facade{p}}))
		p.netControl(mux)
		p.admin = &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
		}
		go p.admin.Serve(p.admL)
	}
	return p, nil
}

func (p *PoP) serveApp(ctx context.Context) error {
	var err error
	p.eng, err = wasm.NewEngine(wasm.Options{CacheDir: p.opts.CacheDir, Logger: p.log, Documents: followDocs{app.Documents(p.Data), p},
		Spot: runtimeSpot{facade{p}}, Invoker: invoker{p}})
	if err != nil {
		return err
	}
	m := p.opts.App
	if self, _ := p.opts.Network.PoP(p.opts.Self); !self.Central {
		m = edgeManifest(m)
	}
	p.app, err = app.Load(ctx, p.eng, m, p.log)
	if err != nil {
		return err
	}
	if p.opts.HTTP == "" {
		return nil
	}
	p.httpL, err = net.Listen("tcp", p.opts.HTTP)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", p.opts.HTTP, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"pop":%q,"ok":true}`+"\n", p.opts.Self)
	})
	mux.Handle("/", p.appHandler(p.app.Gateway))
	p.http = gateway.NewServer(mux, gateway.ServerOptions{}, p.log)
	go p.http.Serve(p.httpL)
	return nil
}

func dialer(l *netsim.Layer) nats.CustomDialer {
	if l == nil {
		return nil
	}
	return l
}

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
		if p.app != nil {
			p.app.Close()
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
		if p.Data != nil {
			p.Data.Close()
		}
	})
}

// ---- identity ----

const identityFile = "identity"

// identity reads this PoP's incarnation from its data directory, or, for an
// empty one, learns the highest incarnation the network has seen of this
// PoP and takes the next. A PoP that lost its disk thus never reuses an
// origin or a replica id whose events its peers already hold.
func (p *PoP) identity(ctx context.Context, self verge.PoP) (fresh bool, inc uint16, err error) {
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
	seen, err := p.highestIncarnation(ctx, self)
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
	if err := writeFileSync(path, []byte(fmt.Sprintf("%s %d\n", p.opts.Self, inc))); err != nil {
		return false, 0, err
	}
	p.log.Info("new incarnation", "incarnation", inc)
	return true, inc, nil
}

// highestIncarnation asks the peers which incarnations of this PoP they
// have received data from. The central PoP must answer (it has every
// PoP's writes); the central PoP itself asks the others, best effort.
func (p *PoP) highestIncarnation(ctx context.Context, self verge.PoP) (uint16, error) {
	central, _ := p.opts.Network.Central()
	wait := p.opts.CentralWait
	if self.Central {
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
		if heard[central.ID] || (self.Central && len(heard) == len(p.Mesh.Peers())) {
			return highest, nil
		}
		if time.Now().After(deadline) {
			if self.Central {
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
	d := p.data0.Load()
	if d == nil {
		if p.fresh.Load() {
			// Nothing seen yet: a whole network starting afresh must not
			// wait on itself.
			return []byte("0"), nil
		}
		return nil, errors.New("starting")
	}
	prefix := string(req) + "."
	highest := 0
	for origin := range d.Store().Seqs() {
		if rest, ok := strings.CutPrefix(origin, prefix); ok {
			if n, err := strconv.Atoi(rest); err == nil && n > highest {
				highest = n
			}
		}
	}
	return []byte(strconv.Itoa(highest)), nil
}

func writeFileSync(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
