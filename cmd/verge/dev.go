package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/admin"
	"github.com/verge-edge/verge/internal/app"
	"github.com/verge-edge/verge/internal/obs"
	"github.com/verge-edge/verge/internal/pop"
)

const defaultAdminAddr = "127.0.0.1:8081"

// devPoP is the one PoP of `verge dev`'s network: its own centre.
const devPoP = "dev"

func runDev(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "address to serve HTTP on (port 0 picks a free port)")
	cacheDir := fs.String("cache-dir", "", "compilation cache directory (default: the user cache dir; \"-\" disables it)")
	noBuild := fs.Bool("no-build", false, "do not run the functions' build commands")
	watch := fs.Duration("watch", 250*time.Millisecond, "how often to check module files for changes (0 disables reloading)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "text, or json (JSON lines with the trace of each request)")
	debugAddr := fs.String("debug-listen", "", "serve Go's pprof profiles on this loopback address (e.g. 127.0.0.1:6060)")
	adminAddr := fs.String("admin", defaultAdminAddr, "address of the admin API (\"\" disables it); beyond loopback it requires a token")
	adminTok := fs.String("admin-token", "", "bearer token the admin API requires (default $VERGE_ADMIN_TOKEN)")
	dataDir := fs.String("data", "", "the PoP's data directory: documents, claims, stocks (default .verge/data in the app directory if the app declares collections or counters, else a directory in the user cache dir)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: verge dev [flags] [DIR]\n\nServes the app whose verge.toml is in DIR (default .) from a network of one PoP,\nwhich is its own central PoP: documents, claims, stocks and central functions all work.\n\nflags:")
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
	log, flushLog, err := newLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		return err
	}
	defer flushLog()
	token := adminToken(*adminTok)
	if err := admin.CheckToken(token); err != nil {
		return &usageError{err.Error()}
	}
	if err := admin.CheckListen(*adminAddr, token); *adminAddr != "" && err != nil {
		return &usageError{err.Error()}
	}
	if *debugAddr != "" && !admin.IsLoopback(*debugAddr) {
		return &usageError{fmt.Sprintf("--debug-listen %s: the profiler has no token; serve it on loopback only", *debugAddr)}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	m, err := verge.LoadManifest(dir)
	if err != nil {
		return err
	}
	stopTracing, err := obs.SetupTracing(ctx, obs.TraceOptions{PoP: devPoP})
	if err != nil {
		return err
	}
	defer stopTracing(context.Background())
	if !*noBuild {
		if err := app.Build(ctx, m, stderr, stderr); err != nil {
			return err
		}
	}
	data := *dataDir
	if data == "" {
		if data, err = devDataDir(m); err != nil {
			return err
		}
	}
	adminSet := false
	fs.Visit(func(f *flag.Flag) { adminSet = adminSet || f.Name == "admin" })
	p, err := pop.Start(ctx, pop.Options{
		Self: devPoP,
		Network: verge.Network{PoPs: []verge.PoP{{ID: devPoP, Region: "local", Central: true, Number: 1,
			Mesh: "127.0.0.1:0", HTTP: *listen, Admin: *adminAddr}}},
		AdminToken: token, AdminFallback: !adminSet,
		Data: data, App: m, CacheDir: *cacheDir, Logger: log,
	})
	if err != nil {
		return err
	}
	defer func() {
		log.Info("shutting down: finishing requests in flight")
		p.Close()
	}()
	fmt.Fprintf(stdout, "verge: serving http://%s\n", p.HTTPAddr())
	if a := p.AdminAddr(); a != "" {
		fmt.Fprintf(stdout, "verge: admin API http://%s\n", a)
	}
	log.Info("data", "dir", data)
	for _, fn := range m.Functions {
		log.Info("function", "name", fn.Name, "kind", fn.Kind, "executor", fn.Executor, "routes", fn.Routes, "module", fn.Module)
	}
	for _, c := range m.Collections {
		log.Info("collection", "name", c.Name, "scope", c.Scope, "regions", c.Regions)
	}
	if *debugAddr != "" {
		go serveDebug(*debugAddr, log)
	}
	if *watch > 0 && p.App() != nil {
		go p.App().Watch(ctx, *watch)
	}
	<-ctx.Done()
	return nil
}

// devDataDir is where `verge dev` keeps an app's data when --data is not
// given: .verge/data in the app's directory when the app declares state
// (collections or counters), so that it is easy to find and to throw away;
// otherwise a directory in the user's cache named after the app's path, so
// that serving an app without state (the examples, from the repository)
// leaves its directory as it was.
func devDataDir(m *verge.Manifest) (string, error) {
	if len(m.Collections) > 0 || len(m.Counters) > 0 {
		return filepath.Join(m.Dir, ".verge", "data"), nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no user cache directory for the app's data (%v); give one with --data", err)
	}
	sum := sha256.Sum256([]byte(m.Dir))
	return filepath.Join(base, "verge", "dev", m.Name+"-"+hex.EncodeToString(sum[:6])), nil
}

// adminToken returns the admin token: the flag, else $VERGE_ADMIN_TOKEN.
func adminToken(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	return os.Getenv("VERGE_ADMIN_TOKEN")
}
