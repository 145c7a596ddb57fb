package pop

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/admin"
	"github.com/verge-edge/verge/internal/mesh"
	"github.com/verge-edge/verge/internal/netsim"
)

// Config is the file `verge serve --config FILE` reads: this PoP's id, the
// whole network (every PoP with its addresses), the app, and tuning. Every
// PoP of a network gets the same [[pop]] list; `verge net up` writes one
// file per PoP.
type Config struct {
	ID          string `toml:"id"`
	Data        string `toml:"data"`        // data directory (identity, store, SPOT)
	App         string `toml:"app"`         // an app served from its directory (its verge.toml; built beforehand), beside deployed ones
	DefaultApp  string `toml:"default_app"` // the app answering a Host that names no app
	CacheDir    string `toml:"cache_dir"`   // compilation cache; "" none
	AdminToken  string `toml:"admin_token"`
	BatchWindow string `toml:"batch_window"` // default "50ms"
	AntiEntropy string `toml:"anti_entropy"` // default "5s"
	// MaxLog: log entries kept for peers that have not acknowledged them;
	// default 1048576 (see replicate.Options.MaxLog).
	MaxLog      uint64 `toml:"max_log"`
	SpotTimeout string `toml:"spot_timeout"` // how long an edge waits for the centre; default "2s"
	// NoSync acknowledges writes before fsync: benchmarks only.
	NoSync bool `toml:"no_sync"`

	WAN    WANConfig           `toml:"wan"`
	Trace  TraceConfig         `toml:"trace"`
	Spot   *SpotConfig         `toml:"spot"`
	TLS    *TLSConfig          `toml:"tls"`
	PoPs   []verge.PoP         `toml:"pop"` // every PoP of the network, with its addresses
	Groups map[string][]string `toml:"groups"`
	// AppDefaults and Apps: what the operator grants each app here, its
	// weight in the fair shares of guest slots and its quotas (quota.go).
	AppDefaults AppPolicy            `toml:"app_defaults"`
	Apps        map[string]AppPolicy `toml:"apps"`

	// HTTPCache sizes the HTTP cache.
	HTTPCache HTTPCacheConfig `toml:"http_cache"`

	dir string // the config file's directory: relative paths start there
}

// WANConfig emulates wide-area links in this process (see internal/netsim).
type WANConfig struct {
	Scale  float64 `toml:"scale"`  // 0: no delay (default); 1: real-world delays
	Base   string  `toml:"base"`   // fixed one-way delay per link, e.g. "2ms"
	Jitter string  `toml:"jitter"` // up to this much extra per chunk
	Loss   float64 `toml:"loss"`   // probability that a chunk waits for a retransmission
}

// HTTPCacheConfig sizes the PoP's HTTP cache (docs/cache.md).
type HTTPCacheConfig struct {
	MemoryMB int64 `toml:"memory_mb"` // memory budget; default 256
	Disk     bool  `toml:"disk"`      // a disk tier in the data directory's httpcache
	DiskMB   int64 `toml:"disk_mb"`   // its budget; default 1024
	Off      bool  `toml:"off"`       // no cache
}

// TraceConfig sets what the OTEL_* environment would: the environment
// wins where both say.
type TraceConfig struct {
	// Endpoint is an OTLP/HTTP endpoint, e.g. http://127.0.0.1:4318.
	Endpoint string `toml:"endpoint"`
}

// SpotConfig, on the central PoP, replicates the SPOT over three central
// servers (JetStream R3): this PoP's server and two `verge spot-server`s.
type SpotConfig struct {
	Replicas int      `toml:"replicas"` // 1 (default) or 3
	Cluster  string   `toml:"cluster"`  // host:port of this PoP's route listener
	Routes   []string `toml:"routes"`   // the other central servers' route listeners
}

// TLSConfig secures the mesh: every PoP presents cert/key and trusts ca.
type TLSConfig struct {
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
	CA   string `toml:"ca"`
}

// LoadConfig reads and checks a PoP's configuration file.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Config
	md, err := toml.NewDecoder(bytes.NewReader(b)).Decode(&c)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return nil, fmt.Errorf("%s: unknown key %q", path, und[0].String())
	}
	c.dir = filepath.Dir(path)
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

func (c *Config) check() error {
	if err := mesh.ValidID(c.ID); err != nil {
		return fmt.Errorf("id: %w", err)
	}
	if c.Data == "" {
		return fmt.Errorf("data: missing; the PoP's data directory")
	}
	if err := admin.CheckToken(c.AdminToken); err != nil {
		return fmt.Errorf("admin_token: %w", err)
	}
	if a := c.Self().Admin; a != "" {
		if err := admin.CheckListen(a, c.AdminToken); err != nil {
			return fmt.Errorf("pop %s: admin: %w", c.ID, err)
		}
	}
	found := false
	for i, p := range c.PoPs {
		if err := mesh.ValidID(p.ID); err != nil {
			return fmt.Errorf("pop[%d].id: %w", i, err)
		}
		if p.Mesh == "" {
			return fmt.Errorf("pop[%d] (%s).mesh: missing; the address of its NATS server", i, p.ID)
		}
		found = found || p.ID == c.ID
	}
	if !found {
		return fmt.Errorf("id %q: not among the [[pop]] entries", c.ID)
	}
	n := c.Network()
	if err := n.Validate(); err != nil {
		return err
	}
	for _, d := range []struct{ name, v string }{{"batch_window", c.BatchWindow}, {"anti_entropy", c.AntiEntropy}, {"spot_timeout", c.SpotTimeout}, {"wan.base", c.WAN.Base}, {"wan.jitter", c.WAN.Jitter}} {
		if d.v != "" {
			if _, err := time.ParseDuration(d.v); err != nil {
				return fmt.Errorf("%s: %w", d.name, err)
			}
		}
	}
	if sp := c.Spot; sp != nil {
		if !c.Self().Central {
			return fmt.Errorf("spot: only the central PoP replicates the SPOT")
		}
		if sp.Replicas != 1 && sp.Replicas != 3 {
			return fmt.Errorf("spot.replicas: %d; want 1 or 3", sp.Replicas)
		}
		if sp.Replicas == 3 && (sp.Cluster == "" || len(sp.Routes) != 2) {
			return fmt.Errorf("spot: replicas = 3 needs cluster (this PoP's route address) and routes (the two other central servers)")
		}
	}
	if c.HTTPCache.MemoryMB < 0 || c.HTTPCache.DiskMB < 0 {
		return fmt.Errorf("http_cache: memory_mb and disk_mb must be ≥ 0")
	}
	if err := c.AppDefaults.check("app_defaults"); err != nil {
		return err
	}
	for name, q := range c.Apps {
		if err := q.check("apps." + name); err != nil {
			return err
		}
	}
	if c.WAN.Scale < 0 || c.WAN.Loss < 0 || c.WAN.Loss >= 1 {
		return fmt.Errorf("wan: scale must be ≥ 0 and loss in [0, 1)")
	}
	return nil
}

// Network returns the network the file describes.
func (c *Config) Network() verge.Network {
	return verge.Network{PoPs: c.PoPs, Groups: c.Groups}
}

// AppDir is the app's directory, relative paths resolved.
func (c *Config) AppDir() string { return c.path(c.App) }

// Self returns this PoP's entry.
func (c *Config) Self() verge.PoP {
	n := c.Network()
	p, _ := n.PoP(c.ID)
	return p
}

func (c *Config) path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.dir, p)
}

// SpotClusterName names the NATS cluster of the central servers.
const SpotClusterName = "verge-spot"

func dur(s string) time.Duration {
	d, _ := time.ParseDuration(s) // checked by check
	return d
}

// Model returns the WAN model of the file.
func (c *Config) Model() netsim.Model {
	return netsim.Model{Base: dur(c.WAN.Base), Scale: c.WAN.Scale, Jitter: dur(c.WAN.Jitter), Loss: c.WAN.Loss}
}

// Options turns the file into PoP options; the app manifest is loaded by
// the caller (it may need building first).
func (c *Config) Options() (Options, *netsim.Layer, error) {
	self := c.Self()
	o := Options{
		Self: c.ID, Network: c.Network(), AdminToken: c.AdminToken, DefaultApp: c.DefaultApp,
		Data: c.path(c.Data), CacheDir: c.path(c.CacheDir),
		Window: dur(c.BatchWindow), AntiEntropy: dur(c.AntiEntropy), MaxLog: c.MaxLog, SpotTimeout: dur(c.SpotTimeout), NoSync: c.NoSync,
		HTTPCache:   HTTPCacheOptions{MemoryBytes: c.HTTPCache.MemoryMB << 20, Disk: c.HTTPCache.Disk, DiskBytes: c.HTTPCache.DiskMB << 20, Off: c.HTTPCache.Off},
		AppDefaults: c.AppDefaults, Apps: c.Apps,
	}
	layer := netsim.NewLayer(netsim.Point{Lat: self.Lat, Lon: self.Lon}, c.Model())
	for _, p := range c.PoPs {
		if p.ID == c.ID {
			continue
		}
		at := netsim.Point{Lat: p.Lat, Lon: p.Lon}
		var more []string // its gateway too: forwarded requests cross the same WAN
		if p.HTTP != "" {
			more = append(more, p.HTTP)
		}
		if err := layer.AddPeer(p.ID, p.Mesh, at, more...); err != nil {
			return o, nil, err
		}
	}
	o.Layer = layer
	if sp := c.Spot; sp != nil && sp.Replicas == 3 {
		o.SpotReplicas = 3
		o.SpotCluster = &mesh.Cluster{Name: SpotClusterName, Listen: sp.Cluster, Routes: sp.Routes}
	}
	if c.TLS != nil {
		srv, cli, err := c.TLS.load(c)
		if err != nil {
			return o, nil, err
		}
		o.ServerTLS, o.ClientTLS = srv, cli
	}
	return o, layer, nil
}

func (t *TLSConfig) load(c *Config) (server, client *tls.Config, err error) {
	cert, err := tls.LoadX509KeyPair(c.path(t.Cert), c.path(t.Key))
	if err != nil {
		return nil, nil, fmt.Errorf("tls: %w", err)
	}
	pem, err := os.ReadFile(c.path(t.CA))
	if err != nil {
		return nil, nil, fmt.Errorf("tls.ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, nil, fmt.Errorf("tls.ca: %s holds no PEM certificate", t.CA)
	}
	server = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13}
	client = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS13}
	return server, client, nil
}
