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
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/bench/internal/harness"
	"github.com/verge-edge/verge/internal/cache"
	"github.com/verge-edge/verge/internal/gateway"
	"github.com/verge-edge/verge/internal/pop"
)

// The pophit scenario: the hit scenario through a whole PoP in this process
// (pop.Start, as `verge dev` runs one) serving the real examples/proxy (Wasm)
// in front of the plain server: the PoP's router, its cache's Handler, and
// on a hit no function run. wrk alternates between the plain server and
// the PoP as in hit.
//
// With same, a third server, plain as well, writes the fields the PoP's hit
// carries, with its values (a request id of its own each time, and the
// Age of the hit it copied): what they cost net/http, whoever writes them.
func popHit(ctx context.Context, size int, d time.Duration, conns, runs int, same bool) (harness.Result, error) {
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
	targets := []string{origin, proxy}
	var sameSrv string
	if same {
		resp, _, err := getHit(proxy)
		if err != nil {
			return nil, err
		}
		sctx, stop := context.WithCancel(ctx)
		defer stop()
		if sameSrv, err = sameFields(sctx, resp.Header, body); err != nil {
			return nil, err
		}
		targets = []string{origin, sameSrv, proxy}
	}
	r := hitResult{Scenario: "pophit", Size: size, Conns: conns}
	for i := 0; i < runs; i++ {
		for _, target := range targets {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			cmd.Progress("run %d/%d: wrk %s", i+1, runs, target)
			w, err := runWrk(ctx, target+hitPath, d, conns)
			if err != nil {
				return nil, err
			}
			if target == sameSrv {
				r.SamePlainRPS, r.SamePlainCPUus = append(r.SamePlainRPS, w.rps), append(r.SamePlainCPUus, w.cpuUs)
				r.SamePlainAllocs, r.SamePlainBytes = append(r.SamePlainAllocs, w.allocs), append(r.SamePlainBytes, w.bytes)
				continue
			}
			r.add(target == origin, w)
		}
	}
	if same {
		r.SameCPURatio = harness.Round(harness.Median(r.SamePlainCPUus)/harness.Median(r.ProxyCPUus), 3)
	}
	r.Ratio = harness.Round(harness.Median(r.ProxyRPS)/harness.Median(r.PlainRPS), 3)
	r.CPURatio = harness.Round(harness.Median(r.PlainCPUus)/harness.Median(r.ProxyCPUus), 3)
	r.LoadAvg = harness.LoadAvg()
	return r, nil
}

// sameFields starts a plain server writing body with the fields of hit (a
// response of the PoP), each request with an id of its own, as the PoP's
// are; it stops with ctx. It returns its base URL.
func sameFields(ctx context.Context, hit http.Header, body []byte) (string, error) {
	type field struct {
		k string
		v []string
	}
	var fields []field // made once, as the cache makes an entry's
	for k, v := range hit {
		if k != "Content-Length" && k != gateway.RequestIDHeader { // net/http's own, as for the PoP's small body; the id is made each time
			fields = append(fields, field{k, v[:1:1]})
		}
	}
	var seq atomic.Uint64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		for _, f := range fields {
			h[f.k] = f.v
		}
		h[gateway.RequestIDHeader] = []string{strconv.FormatUint(seq.Add(1), 36)}
		w.Write(body)
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	pprof.Do(ctx, pprof.Labels("server", "same-fields"), func(context.Context) { go srv.Serve(l) })
	context.AfterFunc(ctx, func() { srv.Close() })
	return "http://" + l.Addr().String(), nil
}
