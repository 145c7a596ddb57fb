// Command rooms measures Verge's realtime rooms (docs/rooms.md), printing
// one JSON object per scenario on stdout and a summary line per scenario on
// stderr:
//
//		go run ./bench/rooms [-verge bin/verge] [-scenario all|throughput|latency|memory|sockets|wake]
//		                     [-d 5s] [-runs 3] [-conns 32] [-window 16]
//
//	  - throughput: 32 connections in one room, every message broadcast to
//	    all of them, messages delivered per second. examples/chat under
//	    `verge dev` (it stores every message durably before it broadcasts
//	    it; all clients at the owner PoP) side by side with a plain Go
//	    gorilla/websocket broadcast server doing the same work without
//	    storage, alternately, -runs rounds, medians.
//	  - latency: three PoPs in this process over the emulated WAN (scale 1:
//	    ord the centre, sfo, iad), clients at each; the delivery latency of
//	    a message from its sender to every client, and its excess over the
//	    one-way WAN latency sender PoP → owner → receiver PoP; rooms owned
//	    by the centre and by an edge PoP.
//	  - memory: Go heap per hibernated room (its record at the owner and its
//	    lease at the centre), one PoP in this process.
//	  - sockets: resident memory of `verge dev` per idle WebSocket (10,000).
//	  - wake: how much longer an event takes when it wakes a hibernated room
//	    (a Go guest) than when the room is live.
//
// Nothing here is asserted: figures go to docs/benchmarks.md with the load
// average of the run.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/verge-edge/verge/bench/internal/harness"
	"github.com/verge-edge/verge/bench/internal/proc"
)

var bench = harness.Command{Name: "bench/rooms", Scenarios: []string{"throughput", "latency", "memory", "sockets", "wake"}}

type config struct {
	verge    string
	duration time.Duration
	runs     int
	conns    int
	window   int
	tmp      string
}

func main() {
	if os.Getenv(childEnv) != "" {
		runReference()
		return
	}
	proc.Progress = bench.Progress
	var cfg config
	flag.StringVar(&cfg.verge, "verge", "bin/verge", "the verge binary (make build)")
	flag.DurationVar(&cfg.duration, "d", 5*time.Second, "how long each throughput run measures")
	flag.IntVar(&cfg.runs, "runs", 3, "rounds of the throughput comparison (medians are reported)")
	flag.IntVar(&cfg.conns, "conns", 32, "connections in the throughput room")
	flag.IntVar(&cfg.window, "window", 16, "messages each throughput client keeps in flight")
	scenario := bench.ScenarioFlag()
	bench.Parse()
	tmp, err := os.MkdirTemp("", "verge-bench-rooms-")
	if err != nil {
		bench.Fatalf("%v", err)
	}
	defer os.RemoveAll(tmp)
	cfg.tmp = tmp
	selected, ran := bench.Select(*scenario), 0
	bench.Run(selected, func(ctx context.Context, s string) (harness.Result, error) {
		// Run exits without returning when a scenario failed: the
		// directory goes after the last scenario, not in a defer.
		defer func() {
			if ran++; ran == len(selected) {
				os.RemoveAll(tmp)
			}
		}()
		switch s {
		case "throughput":
			return throughput(ctx, cfg)
		case "latency":
			return latency(ctx, cfg)
		case "memory":
			return memory(ctx, cfg)
		case "sockets":
			return sockets(ctx, cfg)
		case "wake":
			return wake(ctx, cfg)
		}
		return nil, fmt.Errorf("unknown scenario %s", s)
	})
}

// chatDir is examples/chat, from the repository root (the working directory).
func chatDir() string {
	d, _ := filepath.Abs(filepath.Join("examples", "chat"))
	return d
}

func env() map[string]any {
	return map[string]any{"go": runtime.Version(), "cpus": runtime.NumCPU(), "load_avg": harness.LoadAvg()}
}
