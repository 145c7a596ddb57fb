// Command verge runs Verge: `verge dev` serves an app on this machine (a
// network of one PoP), `verge serve` runs one PoP of a network, `verge net`
// runs and breaks a whole network on this machine, `verge deploy` (with
// `apps`, `versions`, `rollback`, `undeploy`) rolls app versions out to a
// network, `verge spot-server` runs a replica of the central PoP's single
// point of truth, and `verge data` reads and writes documents through a
// PoP's admin API. Each subcommand
// lives in its own file.
package main

import (
	"errors"

	"flag"
	"fmt"
	"github.com/verge-edge/verge/internal/obs"
	"io"
	"log/slog"
	"os"
	goruntime "runtime"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type command struct {
	name  string
	short string
	run   func(args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"dev", "serve an app on this machine, reloading functions when their modules change", runDev},
		{"serve", "run one PoP of a network (--config FILE)", runServe},
		{"spot-server", "run a central server that replicates the SPOT (JetStream R3)", runSpotServer},
		{"net", "run a whole network of PoPs on this machine, and break it", runNet},
		{"deploy", "build an app and roll a new version out to a network", runDeploy},
		{"apps", "every app, its current version and what each PoP serves", runApps},
		{"versions", "an app's versions", runVersions},
		{"rollback", "make an app's previous (or given) version current everywhere", runRollback},
		{"undeploy", "stop serving an app everywhere", runUndeploy},
		{"purge", "purge an app's entries from the HTTP cache of every PoP", runPurge},
		{"logs", "every PoP's log of a network, merged in time order", runLogs},
		{"dashboard", "a live page of a network: PoPs, links, versions, rates, slow requests", runDashboard},
		{"data", "read and write an app's documents through the admin API", runData},
		{"rooms", "list an app's live rooms, or move one to another PoP", runRooms},
		{"version", "print the version", func(_ []string, stdout, _ io.Writer) error {
			fmt.Fprintln(stdout, "verge", version)
			return nil
		}},
	}
}

// usageError is a bad command line: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func main() {
	if os.Getenv("GOMAXPROCS") == "" {
		// Guests run on at most GOMAXPROCS-1 Ps (see internal/wasm);
		// one more P than cores lets guests use every core while a P stays
		// free for timers and the network.
		goruntime.GOMAXPROCS(goruntime.NumCPU() + 1)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			err := c.run(args[1:], stdout, stderr)
			var ue *usageError
			switch {
			case err == nil:
				return 0
			case errors.Is(err, flag.ErrHelp):
				return 0
			case errors.As(err, &ue):
				fmt.Fprintf(stderr, "verge %s: %v\n", c.name, err)
				return 2
			default:
				fmt.Fprintf(stderr, "verge %s: %v\n", c.name, err)
				return 1
			}
		}
	}
	fmt.Fprintf(stderr, "verge: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: verge <command> [flags] [args]\n\ncommands:")
	width := 0
	for _, c := range commands() {
		width = max(width, len(c.name))
	}
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-*s  %s\n", width, c.name, c.short)
	}
	fmt.Fprintln(w, "\nRun 'verge <command> -h' for a command's flags.")
}

// parseInterspersed parses flags that may come before or after positional
// arguments (`verge dev DIR --listen ADDR`), returning the positionals.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// newLogger logs at level in format ("text" for people, "json" for JSON
// lines that `verge logs` merges), with the trace of the request a line is
// about, in batches (logbuf.go): the caller calls flush before it returns.
func newLogger(w io.Writer, level, format string) (log *slog.Logger, flush func(), err error) {
	b := &batchedLog{w: w, every: logFlushEvery}
	if log, err = batchedLogger(b, level, format); err != nil {
		return nil, nil, err
	}
	return log, b.flush, nil
}

func batchedLogger(b *batchedLog, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, &usageError{fmt.Sprintf("--log-level %q: expected debug, info, warn or error", level)}
	}
	opts := &slog.HandlerOptions{Level: l}
	var h slog.Handler
	switch format {
	case "text":
		h = slog.NewTextHandler(b, opts)
	case "json":
		h = slog.NewJSONHandler(b, opts)
	default:
		return nil, &usageError{fmt.Sprintf("--log-format %q: expected text or json", format)}
	}
	return slog.New(obs.LogHandler(flushingHandler{h, b})), nil
}
