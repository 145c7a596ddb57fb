package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/bench/internal/harness"
	"github.com/verge-edge/verge/internal/cache"
	"github.com/verge-edge/verge/internal/pop"
)

// The pophit scenario: the hit scenario through a whole PoP in this process
// (pop.Start, as `verge dev` runs one) serving the real examples/proxy (Wasm)
// in front of the plain server: the PoP's router, its cache's Handler, and
// on a hit no function run. wrk alternates between the plain server and
// the PoP as in hit.
func popHit(ctx context.Context, size int, d time.Duration, conns, runs int) (harness.Result, error) {
	if _, err := os.Stat("examples/proxy/proxy.wasm"); err != nil {
		return nil, fmt.Errorf("examples/proxy is not built (%v): run make examples from the repository's root", err)
	}
	body := []byte(strings.Repeat("x", size))
	ol, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	osrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	})}
	// Each server's goroutines carry a profile label (server=plain or
	// server=pop), so that -cpuprofile splits the two: go tool pprof
	// -tagfocus server=pop.
	pprof.Do(ctx, pprof.Labels("server", "plain"), func(context.Context) { go osrv.Serve(ol) })
	defer osrv.Close()
	dir, err := os.MkdirTemp("", "verge-bench-pophit-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	app := filepath.Join(dir, "proxy")
	os.MkdirAll(app, 0o755)
	mod, err := os.ReadFile("examples/proxy/proxy.wasm")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(app, "proxy.wasm"), mod, 0o644); err != nil {
		return nil, err
	}
	manifest := fmt.Sprintf("name = \"proxy\"\n[[backend]]\nname = \"origin\"\nurl = \"http://%s\"\nallow_private = true\n\n[[function]]\nname = \"proxy\"\nmodule = \"proxy.wasm\"\nexecutor = \"verge\"\nroutes = [\"/*\"]\n", ol.Addr())
	if err := os.WriteFile(filepath.Join(app, "verge.toml"), []byte(manifest), 0o644); err != nil {
		return nil, err
	}
	m, err := verge.LoadManifest(app)
	if err != nil {
		return nil, err
	}
	var p *pop.PoP
	pprof.Do(ctx, pprof.Labels("server", "pop"), func(ctx context.Context) {
		p, err = pop.Start(ctx, pop.Options{Self: "bench",
			Network: verge.Network{PoPs: []verge.PoP{{ID: "bench", Region: "local", Central: true, Number: 1, Mesh: "127.0.0.1:0", HTTP: "127.0.0.1:0"}}},
			Data:    filepath.Join(dir, "data"), App: m, CacheDir: "-", NoSync: true, Logger: slog.New(slog.DiscardHandler)})
	})
	if err != nil {
		return nil, err
	}
	defer p.Close()
	origin, proxy := "http://"+ol.Addr().String(), "http://"+p.HTTPAddr()
	for i := 0; i < 2; i++ {
		resp, b, err := getHit(proxy)
		if err != nil {
			return nil, err
		}
		_, plain, err := getHit(origin)
		if err != nil {
			return nil, err
		}
		if i == 1 && (resp.Header.Get("X-Cache") != cache.Hit || !bytes.Equal(b, plain) || len(b) != size || resp.Header.Get("X-Proxied-By") != "verge") {
			return nil, fmt.Errorf("the PoP's second answer is %s %s with %d bytes, not a hit of the plain server's %d", resp.Status, resp.Header.Get("X-Cache"), len(b), len(plain))
		}
	}
	r := hitResult{Scenario: "pophit", Size: size, Conns: conns}
	for i := 0; i < runs; i++ {
		for _, target := range []string{origin, proxy} {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			cmd.Progress("run %d/%d: wrk %s", i+1, runs, target)
			w, err := runWrk(ctx, target+hitPath, d, conns)
			if err != nil {
				return nil, err
			}
			r.add(target == origin, w)
		}
	}
	r.Ratio = harness.Round(harness.Median(r.ProxyRPS)/harness.Median(r.PlainRPS), 3)
	r.CPURatio = harness.Round(harness.Median(r.PlainCPUus)/harness.Median(r.ProxyCPUus), 3)
	r.LoadAvg = harness.LoadAvg()
	return r, nil
}
