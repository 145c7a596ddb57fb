package spot

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/verge-edge/verge/internal/mesh"
)

// ServerOptions returns the options of an embedded central NATS server:
// 127.0.0.1, a random port (set Port to reuse one across restarts),
// JetStream storing in dir, and an fsync on every write (SyncAlways), since
// JetStream's default is to fsync every two minutes and a SPOT write that is
// acknowledged must survive a crash. Add cluster routes before starting
// when three central servers replicate the bucket.
func ServerOptions(dir string) *server.Options {
	return &server.Options{
		ServerName: "verge-central",
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   dir,
		SyncAlways: true,
		NoLog:      true,
		NoSigs:     true,
	}
}

// StartServer starts an embedded NATS server with opts (see ServerOptions)
// and waits until it accepts connections and JetStream is ready. The
// caller shuts it down (Shutdown, then WaitForShutdown).
func StartServer(opts *server.Options) (*server.Server, error) {
	if opts == nil || !opts.JetStream || opts.StoreDir == "" {
		return nil, errors.New("spot: the central server needs JetStream with a StoreDir; start from ServerOptions")
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("spot: nats server: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("spot: nats server on %s:%d not ready after 10s (port in use?)", opts.Host, opts.Port)
	}
	return s, nil
}

// Replica is one of the two extra central servers that, with the central
// PoP's own, replicate the SPOT three ways (JetStream R3). It holds data and
// votes; it serves no requests.
type Replica struct{ s *server.Server }

// StartReplica starts a replica storing in dir, named name (unique in the
// cluster), accepting clients on listen (host:port; port 0 picks one) and
// joining the cluster c of central servers.
func StartReplica(dir, name, listen string, c *mesh.Cluster) (*Replica, error) {
	o := ServerOptions(dir)
	o.ServerName = name
	host, p, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", listen, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("address %q: bad port", listen)
	}
	o.Host, o.Port = host, port
	if port == 0 {
		o.Port = server.RANDOM_PORT
	}
	if err := c.Apply(o); err != nil {
		return nil, err
	}
	s, err := StartServer(o)
	if err != nil {
		return nil, err
	}
	return &Replica{s}, nil
}

// Addr is the address clients reach the replica on.
func (r *Replica) Addr() string { return r.s.Addr().String() }

// Close shuts the replica down and waits until it has.
func (r *Replica) Close() {
	r.s.Shutdown()
	r.s.WaitForShutdown()
}
