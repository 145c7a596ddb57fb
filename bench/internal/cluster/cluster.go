// Package cluster starts several PoPs in one process for the benchmarks:
// each with its own store and its own side of the emulated WAN, over real
// NATS connections on loopback.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/freeport"
	"github.com/verge-edge/verge/internal/netsim"
	"github.com/verge-edge/verge/internal/pop"
	"github.com/verge-edge/verge/internal/store"
)

// Options configures a cluster.
type Options struct {
	PoPs     int // the first PoPs of pop.Sites; the first is central
	Model    netsim.Model
	Manifest *verge.Manifest
	// Window, AntiEntropy: replication tuning (0: defaults).
	Window, AntiEntropy time.Duration
	NoSync              bool
	// HTTP gives every PoP an HTTP listener (Cluster.Net names it).
	HTTP    bool
	Verbose bool // PoPs' warnings on stderr
	// Applied receives every PoP's replicate Applied calls: at applied a
	// batch from peer from.
	Applied func(at, from string, keys []store.Key)
}

// Cluster is a running set of PoPs.
type Cluster struct {
	Dir     string
	Net     verge.Network
	IDs     []string
	Central string
	PoPs    map[string]*pop.PoP
	Layers  map[string]*netsim.Layer
	Started time.Duration // how long starting took
}

// IDs are the ids of the first n PoPs of pop.Sites: the PoPs a cluster of
// n starts, the central one first.
func IDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = pop.Sites[i].ID
	}
	return ids
}

// CheckPoPs checks a harness's -pops: a centre and at least one edge, at
// most one PoP per site.
func CheckPoPs(n int) error {
	if n < 2 || n > len(pop.Sites) {
		return fmt.Errorf("-pops %d: want 2..%d", n, len(pop.Sites))
	}
	return nil
}

// DataManifest parses the manifest of app name with the collections and
// counters of decls (TOML) and no function: a harness drives the PoPs'
// services directly. A manifest needs a function to parse, so one is added
// and dropped.
func DataManifest(name, decls string) (*verge.Manifest, error) {
	const none = `
[[function]]
name = "none"
module = "none.wasm"
executor = "verge"
routes = ["/*"]
`
	m, err := verge.ParseManifest(verge.ManifestFile, []byte(fmt.Sprintf("name = %q\n", name)+none+decls))
	if err != nil {
		return nil, err
	}
	m.Functions = nil
	return m, nil
}

// Start starts the PoPs in a new temporary directory, which Close removes.
func Start(ctx context.Context, o Options) (_ *Cluster, err error) {
	if o.PoPs < 1 || o.PoPs > len(pop.Sites) {
		return nil, fmt.Errorf("cluster: %d PoPs; want 1..%d", o.PoPs, len(pop.Sites))
	}
	dir, err := os.MkdirTemp("", "verge-bench-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, Central: pop.Sites[0].ID, PoPs: map[string]*pop.PoP{}, Layers: map[string]*netsim.Layer{}}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	for i, p := range pop.Sites[:o.PoPs] {
		p.Number = uint16(i + 1)
		if p.Mesh, err = freeport.Addr(); err != nil {
			return nil, err
		}
		if o.HTTP {
			if p.HTTP, err = freeport.Addr(); err != nil {
				return nil, err
			}
		}
		c.Net.PoPs = append(c.Net.PoPs, p)
		c.IDs = append(c.IDs, p.ID)
	}
	for _, p := range c.Net.PoPs {
		l := netsim.NewLayer(netsim.Point{Lat: p.Lat, Lon: p.Lon}, o.Model)
		for _, q := range c.Net.PoPs {
			if q.ID != p.ID {
				if err := l.AddPeer(q.ID, q.Mesh, netsim.Point{Lat: q.Lat, Lon: q.Lon}); err != nil {
					return nil, err
				}
			}
		}
		c.Layers[p.ID] = l
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if o.Verbose {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	started := time.Now()
	type res struct {
		id  string
		p   *pop.PoP
		err error
	}
	ch := make(chan res, len(c.IDs))
	for _, id := range c.IDs {
		go func() {
			po := pop.Options{
				Self: id, Network: c.Net, Data: filepath.Join(dir, id), App: o.Manifest,
				Layer: c.Layers[id], Window: o.Window, AntiEntropy: o.AntiEntropy, NoSync: o.NoSync,
				Logger: logger.With("pop", id),
			}
			if o.Applied != nil {
				po.Applied = func(from string, keys []store.Key) { o.Applied(id, from, keys) }
			}
			p, err := pop.Start(ctx, po)
			ch <- res{id, p, err}
		}()
	}
	var errs []error
	for range c.IDs {
		r := <-ch
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		c.PoPs[r.id] = r.p
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("starting the PoPs: %w", err)
	}
	c.Started = time.Since(started)
	return c, nil
}

// Close stops every PoP (in parallel: each may wait for its peers) and
// removes their directory.
func (c *Cluster) Close() {
	var wg sync.WaitGroup
	for _, p := range c.PoPs {
		wg.Go(p.Close)
	}
	wg.Wait()
	os.RemoveAll(c.Dir)
}

// OneWay is the emulated one-way latency of the link from one PoP to another.
func (c *Cluster) OneWay(from, to string) time.Duration {
	for _, l := range c.Layers[from].Links() {
		if l.Peer == to {
			return l.OneWay
		}
	}
	return 0
}

// Wait polls ready every interval until it returns nil or the bound passes.
func Wait(ctx context.Context, bound, interval time.Duration, ready func() error) error {
	deadline := time.Now().Add(bound)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		if err := Sleep(ctx, interval); err != nil {
			return err
		}
	}
}

// Sleep sleeps d unless ctx ends first.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
