// Package app is one app at a PoP: its functions built, compiled by the
// engine, routed by a gateway, and reloaded when a module file changes.
package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/gateway"
	"github.com/verge-edge/verge/internal/wasm"
)

// Build runs each function's build command in the manifest's directory,
// streaming its output. Functions sharing one command run it once.
func Build(ctx context.Context, m *verge.Manifest, stdout, stderr io.Writer) error {
	done := map[string]bool{}
	for _, fn := range m.Functions {
		if fn.Build == "" || done[fn.Build] {
			continue
		}
		done[fn.Build] = true
		fmt.Fprintf(stderr, "verge: building %s: %s\n", fn.Name, fn.Build)
		cmd := exec.CommandContext(ctx, "sh", "-c", fn.Build)
		cmd.Dir = m.Dir
		cmd.Stdout, cmd.Stderr = stdout, stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: build command of function %q failed (%v): %s", m.Path, fn.Name, err, fn.Build)
		}
	}
	return nil
}

// App is a loaded app: its gateway serves every function.
type App struct {
	Manifest *verge.Manifest
	Gateway  *gateway.Gateway
	// Reloaded, if set, is called after a function was reloaded.
	Reloaded func()
	engine   *wasm.Engine
	log      *slog.Logger

	mu     sync.Mutex
	stamps map[string]fileStamp // function name -> module file stamp at load
}

type fileStamp struct {
	size    int64
	modTime time.Time
}

func stamp(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi.Size(), fi.ModTime()}, nil
}

// Load loads every function of m; the first that fails to load fails the
// whole app, with an error naming its module file.
func Load(ctx context.Context, eng *wasm.Engine, m *verge.Manifest, log *slog.Logger) (*App, error) {
	if log == nil {
		log = slog.Default()
	}
	a := &App{Manifest: m, Gateway: gateway.New(log), engine: eng, log: log, stamps: map[string]fileStamp{}}
	for _, spec := range m.Functions {
		st, _ := stamp(spec.Module)
		fn, err := eng.Load(ctx, spec)
		if err != nil {
			a.Gateway.Close()
			return nil, err
		}
		a.stamps[spec.Name] = st
		a.Gateway.Set(fn)
		fn.WarmUp()
	}
	return a, nil
}

// Warm fills every function's pool of warm instances now (WarmUp does it in
// the background): a version about to replace a serving one.
func (a *App) Warm(ctx context.Context) error {
	for _, v := range a.Gateway.Functions() {
		if err := v.Warm(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Close stops every function after its requests in flight finish.
func (a *App) Close() { a.Gateway.Close() }

// Watch polls the module files every interval and reloads a function whose
// module changed. A module that fails to load is reported and the previous
// version keeps serving. Polling, rather than inotify, works the same on
// every file system and editor save pattern; see RATIONALE.md.
func (a *App) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.Poll(ctx)
		}
	}
}

// Poll checks every module file once and reloads those that changed. A
// changed file is looked at again 50 ms later and reloaded only if its stamp
// (size and modification time) held, so a build still writing it is not
// loaded half-written; if it moved, the next poll tries again.
func (a *App) Poll(ctx context.Context) {
	for _, spec := range a.Manifest.Functions {
		st, err := stamp(spec.Module)
		if err != nil {
			continue // being rewritten; the next poll sees it
		}
		a.mu.Lock()
		prev := a.stamps[spec.Name]
		a.mu.Unlock()
		if st == prev {
			continue
		}
		time.Sleep(50 * time.Millisecond)
		if again, err := stamp(spec.Module); err != nil || again != st {
			continue
		}
		a.mu.Lock()
		a.stamps[spec.Name] = st
		a.mu.Unlock()
		if err := a.Reload(ctx, spec); err != nil {
			a.log.Error("reload failed; the previous version keeps serving", "function", spec.Name, "err", err)
		}
	}
}

// Reload loads spec anew and swaps it in; requests in flight finish on the
// old version.
func (a *App) Reload(ctx context.Context, spec verge.Function) error {
	start := time.Now()
	fn, err := a.engine.Load(ctx, spec)
	if err != nil {
		return err
	}
	a.Gateway.Set(fn)
	fn.WarmUp()
	a.log.Info("reloaded", "function", spec.Name, "module", spec.Module, "took", time.Since(start).Round(time.Millisecond))
	if a.Reloaded != nil {
		a.Reloaded()
	}
	return nil
}
