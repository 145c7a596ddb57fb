package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"strings"
	"syscall"

	"github.com/verge-edge/verge/internal/freeport"
	"github.com/verge-edge/verge/internal/mesh"
	"github.com/verge-edge/verge/internal/pop"
	"github.com/verge-edge/verge/internal/spot"
)

// runSpotServer runs one of the two extra central servers that, with the
// central PoP's own, replicate the SPOT three ways (JetStream R3). It holds
// data and votes; it serves no requests.
func runSpotServer(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("spot-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("data", "", "data directory (JetStream store)")
	name := fs.String("name", "", "server name, unique in the cluster")
	listen := fs.String("listen", "127.0.0.1:0", "client address")
	cluster := fs.String("cluster", "", "this server's route address")
	routes := fs.String("routes", "", "the other central servers' route addresses, comma-separated")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: verge spot-server --data DIR --name NAME --cluster ADDR --routes ADDR,ADDR\n\nRuns a central server that replicates the SPOT (see docs/spot.md).\n\nflags:")
		fs.PrintDefaults()
	}
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if *dir == "" || *name == "" || *cluster == "" || *routes == "" {
		return &usageError{"--data, --name, --cluster and --routes are required"}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	c := &mesh.Cluster{Name: pop.SpotClusterName, Listen: *cluster, Routes: strings.Split(*routes, ",")}
	// As a PoP does (serve.go): the cluster's ports stay reserved while any
	// of its servers runs, for a restart after kill -9.
	freeport.Hold(append([]string{*listen, *cluster}, c.Routes...)...)
	s, err := spot.StartReplica(*dir, *name, *listen, c)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "verge: spot server %s ready (client %s, cluster %s)\n", *name, s.Addr(), *cluster)
	<-ctx.Done()
	s.Close()
	return nil
}
