package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/admin"
	"github.com/verge-edge/verge/internal/documents"
)

const defaultAdminAddr = "127.0.0.1:8081"

// popData is the document service of `verge dev` and its admin listener.
type popData struct {
	Service *documents.Service // nil when the app declares no collections
	srv     *http.Server
	errc    chan error
	log     *slog.Logger
}

// adminToken returns the admin token: the flag, else $VERGE_ADMIN_TOKEN.
func adminToken(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	return os.Getenv("VERGE_ADMIN_TOKEN")
}

// openData opens the app's document store in dir (default: .verge/data in
// the app's directory) and serves the admin API on addr ("" disables it).
// An app without collections has no documents: nothing is opened, so that
// serving it leaves nothing behind in its directory.
//
// If addr is the default and already taken (another verge dev), the admin
// API moves to a free loopback port, which it prints; an address given
// explicitly must be free.
func openData(m *verge.Manifest, dir, addr, token string, addrExplicit bool, stdout io.Writer, log *slog.Logger) (*popData, error) {
	p := &popData{log: log}
	if len(m.Collections) == 0 {
		log.Debug("the app declares no collections: no document store, no admin API")
		return p, nil
	}
	if dir == "" {
		dir = filepath.Join(m.Dir, ".verge", "data")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("document store: %w", err)
	}
	svc, err := documents.Open(dir, documents.Options{Origin: "dev", Replica: 1})
	if err != nil {
		return nil, err
	}
	svc.SetApp(m)
	p.Service = svc
	for _, c := range m.Collections {
		log.Info("collection", "name", c.Name, "scope", c.Scope, "regions", c.Regions)
	}
	if addr == "" {
		return p, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil && !addrExplicit && errors.Is(err, syscall.EADDRINUSE) {
		log.Warn("the default admin address is taken (another verge dev?); using a free port instead", "addr", addr)
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		svc.Close()
		return nil, fmt.Errorf("admin API: cannot listen on %s: %w (pick another with --admin, or --admin \"\" to disable it)", addr, err)
	}
	p.srv = &http.Server{
		Handler:           admin.NewHandler(svc, admin.Options{Token: token, Logger: log}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	p.errc = make(chan error, 1)
	go func() { p.errc <- p.srv.Serve(ln) }()
	fmt.Fprintf(stdout, "verge: admin API http://%s\n", ln.Addr())
	return p, nil
}

// Close stops the admin API, finishing requests in flight, then closes the
// store once its pending writes are durable.
func (p *popData) Close() {
	if p.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.srv.Shutdown(ctx); err != nil {
			p.log.Warn("admin API shutdown", "err", err)
		}
	}
	if p.Service != nil {
		if err := p.Service.Close(); err != nil {
			p.log.Error("closing the document store", "err", err)
		}
	}
}
