package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/signal"
	"syscall"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/admin"
	"github.com/verge-edge/verge/internal/app"
	"github.com/verge-edge/verge/internal/gateway"
	"github.com/verge-edge/verge/internal/wasm"
)

func runDev(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "address to serve HTTP on (port 0 picks a free port)")
	cacheDir := fs.String("cache-dir", "", "compilation cache directory (default: the user cache dir; \"-\" disables it)")
	noBuild := fs.Bool("no-build", false, "do not run the functions' build commands")
	watch := fs.Duration("watch", 250*time.Millisecond, "how often to check module files for changes (0 disables reloading)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	debugAddr := fs.String("debug-listen", "", "serve Go's pprof profiles on this address (e.g. 127.0.0.1:6060)")
	adminAddr := fs.String("admin", defaultAdminAddr, "address of the admin API for documents (\"\" disables it); beyond loopback it requires a token")
	adminTok := fs.String("admin-token", "", "bearer token the admin API requires (default $VERGE_ADMIN_TOKEN)")
	dataDir := fs.String("data", "", "directory of the document store (default .verge/data in the app directory)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: verge dev [flags] [DIR]\n\nServes the app whose verge.toml is in DIR (default .).\n\nflags:")
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return &usageError{fmt.Sprintf("expected at most one app directory, got %d: %v", len(pos), pos)}
	}
	dir := "."
	if len(pos) == 1 {
		dir = pos[0]
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	token := adminToken(*adminTok)
	if err := admin.CheckListen(*adminAddr, token); *adminAddr != "" && err != nil {
		return &usageError{err.Error()}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	m, err := verge.LoadManifest(dir)
	if err != nil {
		return err
	}
	if !*noBuild {
		if err := app.Build(ctx, m, stderr, stderr); err != nil {
			return err
		}
	}
	adminSet := false
	fs.Visit(func(f *flag.Flag) { adminSet = adminSet || f.Name == "admin" })
	pop, err := openData(m, *dataDir, *adminAddr, token, adminSet, stdout, log)
	if err != nil {
		return err
	}
	defer pop.Close()
	eng, err := wasm.NewEngine(wasm.Options{CacheDir: *cacheDir, Logger: log, Documents: app.Documents(pop.Service)})
	if err != nil {
		return err
	}
	defer eng.Close(context.Background())
	a, err := app.Load(ctx, eng, m, log)
	if err != nil {
		return err
	}
	defer a.Close()

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w (is another verge dev running? pick another with --listen)", *listen, err)
	}
	srv := gateway.NewServer(a.Gateway, gateway.ServerOptions{}, log)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "verge: serving http://%s\n", ln.Addr())
	for _, fn := range m.Functions {
		log.Info("function", "name", fn.Name, "executor", fn.Executor, "routes", fn.Routes, "module", fn.Module)
	}
	if *debugAddr != "" {
		go serveDebug(*debugAddr, log)
	}
	if *watch > 0 {
		go a.Watch(ctx, *watch)
	}

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing requests in flight")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
