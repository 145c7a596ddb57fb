package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/app"
	"github.com/verge-edge/verge/internal/freeport"
	"github.com/verge-edge/verge/internal/obs"
	"github.com/verge-edge/verge/internal/pop"
)

func runServe(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "", "the PoP's configuration file (see docs/network.md)")
	build := fs.Bool("build", false, "run the app's build commands first")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "json", "json (JSON lines, which verge logs merges) or text")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: verge serve --config FILE\n\nRuns one PoP of a network.\n\nflags:")
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if *config == "" || len(pos) > 0 {
		return &usageError{"expected --config FILE and no arguments"}
	}
	log, flushLog, err := newLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		return err
	}
	defer flushLog()
	cfg, err := pop.LoadConfig(*config)
	if err != nil {
		return err
	}
	opts, _, err := cfg.Options()
	if err != nil {
		return err
	}
	opts.Logger = log
	// Every port of the network stays reserved while any of its PoPs runs,
	// so that a PoP killed -9 can be restarted on its own ports.
	for _, q := range cfg.PoPs {
		freeport.Hold(q.Mesh, q.HTTP, q.Admin)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if cfg.App != "" {
		m, err := verge.LoadManifest(cfg.AppDir())
		if err != nil {
			return err
		}
		if *build {
			if err := app.Build(ctx, m, stderr, stderr); err != nil {
				return err
			}
		}
		opts.App = m
	}
	stopTracing, err := obs.SetupTracing(ctx, obs.TraceOptions{PoP: cfg.ID, Endpoint: cfg.Trace.Endpoint})
	if err != nil {
		return err
	}
	defer stopTracing(context.Background())
	p, err := pop.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer p.Close()
	if a := p.HTTPAddr(); a != "" {
		fmt.Fprintf(stdout, "verge: serving http://%s\n", a)
	}
	if a := p.AdminAddr(); a != "" {
		fmt.Fprintf(stdout, "verge: admin API http://%s\n", a)
	}
	fmt.Fprintf(stdout, "verge: PoP %s ready (incarnation %d, mesh %s)\n", cfg.ID, p.Incarnation, p.Mesh.Addr())
	<-ctx.Done()
	log.Info("shutting down")
	return nil
}
