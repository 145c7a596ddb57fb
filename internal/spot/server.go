package spot

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
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
