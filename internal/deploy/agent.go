package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/verge-edge/verge/internal/durable"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/verge-edge/verge/internal/bundle"
	"github.com/verge-edge/verge/internal/mesh"
)

// Centre is how an agent reaches the centre's Controller: over the mesh
// from an edge PoP (MeshCentre), directly at the centre itself.
type Centre interface {
	Sync(ctx context.Context, pop string) (Assignment, error)
	Bundle(ctx context.Context, id string) ([]byte, error)
	Report(ctx context.Context, st Status) error
}

// AgentOptions configure an Agent.
type AgentOptions struct {
	Self string
	// Dir keeps the last assignment and the bundles this PoP was given, so
	// that a restart without the centre still serves them.
	Dir   string
	Host  Host
	Stats *Stats
	// Probe calls an app's health route at this PoP, as a client would,
	// and returns the HTTP status.
	Probe  func(ctx context.Context, app, path string) (int, error)
	Logger *slog.Logger
}

// Agent makes a PoP serve what the centre assigns it.
type Agent struct {
	opts   AgentOptions
	centre Centre
	log    *slog.Logger

	mu     sync.Mutex
	want   Assignment
	have   map[string]Status // app → what this PoP serves or tried
	health map[string]string // app → the health route of the version it serves
	kick   chan struct{}
	// reports wait to be sent to the centre, in order: a report that
	// overtook an earlier one would leave the centre with a stale state.
	reports    []Status
	reportKick chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewAgent reads the last assignment from opts.Dir.
func NewAgent(opts AgentOptions) (*Agent, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	for _, d := range []string{opts.Dir, filepath.Join(opts.Dir, "bundles")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	// Unpacked bundles are a cache of the bundles: start afresh.
	if err := os.RemoveAll(filepath.Join(opts.Dir, "run")); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(opts.Dir, "run"), 0o755); err != nil {
		return nil, err
	}
	a := &Agent{opts: opts, log: opts.Logger, have: map[string]Status{}, health: map[string]string{}, kick: make(chan struct{}, 1),
		reportKick: make(chan struct{}, 1),
		want:       Assignment{Apps: map[string]string{}}}
	b, err := os.ReadFile(a.assignmentPath())
	if err == nil {
		if err := json.Unmarshal(b, &a.want); err != nil {
			return nil, fmt.Errorf("%s: %w; move it away, the centre sends it again", a.assignmentPath(), err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if a.want.Apps == nil {
		a.want.Apps = map[string]string{}
	}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	return a, nil
}

func (a *Agent) assignmentPath() string { return filepath.Join(a.opts.Dir, "assignment.json") }

// Start catches up with the centre (bounded by wait; without an answer it
// serves the last assignment it has) and serves every assigned app before
// returning, then follows further assignments in the background.
func (a *Agent) Start(ctx context.Context, c Centre, wait time.Duration) error {
	a.centre = c
	sctx, cancel := context.WithTimeout(ctx, wait)
	asg, err := c.Sync(sctx, a.opts.Self)
	cancel()
	if err != nil {
		a.log.Warn("deploy: the centre did not answer; serving the last assignment this PoP had", "apps", len(a.want.Apps), "err", err)
	} else {
		a.setWant(asg)
	}
	a.wg.Add(2)
	go a.reporter()
	a.apply(ctx)
	go a.loop()
	return nil
}

// Assign takes an assignment from the centre; older ones are ignored.
func (a *Agent) Assign(asg Assignment) {
	if a.setWant(asg) {
		select {
		case a.kick <- struct{}{}:
		default:
		}
	}
}

// Resync asks the centre again (its link came back) and reports what this
// PoP serves, in case reports were lost meanwhile.
func (a *Agent) Resync() {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		ctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
		defer cancel()
		asg, err := a.centre.Sync(ctx, a.opts.Self)
		if err != nil {
			a.log.Warn("deploy: resync with the centre failed", "err", err)
			return
		}
		a.Assign(asg)
		a.mu.Lock()
		for _, st := range a.have {
			a.reports = append(a.reports, st)
		}
		a.mu.Unlock()
		a.kickReporter()
	}()
}

func (a *Agent) kickReporter() {
	select {
	case a.reportKick <- struct{}{}:
	default:
	}
}

// reporter sends the reports to the centre one at a time, in order. A
// report that cannot be sent is dropped: Resync sends them all again when
// the link to the centre comes back.
func (a *Agent) reporter() {
	defer a.wg.Done()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-a.reportKick:
		}
		for {
			a.mu.Lock()
			if len(a.reports) == 0 {
				a.mu.Unlock()
				break
			}
			st := a.reports[0]
			a.reports = a.reports[1:]
			a.mu.Unlock()
			ctx, cancel := context.WithTimeout(a.ctx, 5*time.Second)
			if err := a.centre.Report(ctx, st); err != nil {
				a.log.Debug("deploy: report to the centre", "err", err)
			}
			cancel()
		}
	}
}

func (a *Agent) setWant(asg Assignment) bool {
	if asg.Apps == nil {
		asg.Apps = map[string]string{}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if asg.Gen < a.want.Gen {
		return false
	}
	a.want = asg
	if b, err := json.Marshal(asg); err == nil {
		if err := durable.WriteFile(a.assignmentPath(), b, 0o644); err != nil {
			a.log.Error("deploy: recording the assignment", "err", err)
		}
	}
	return true
}

// Serving returns what this PoP serves: app → version.
func (a *Agent) Serving() map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]string{}
	for app, st := range a.have {
		if st.State == StateServing {
			out[app] = st.Version
		}
	}
	return out
}

// Close stops following assignments.
func (a *Agent) Close() {
	a.cancel()
	a.wg.Wait()
}

func (a *Agent) loop() {
	defer a.wg.Done()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-a.kick:
			a.apply(a.ctx)
		}
	}
}

// apply brings what this PoP serves in line with the assignment, one app
// at a time.
func (a *Agent) apply(ctx context.Context) {
	a.mu.Lock()
	want := a.want
	have := map[string]Status{}
	for k, v := range a.have {
		have[k] = v
	}
	a.mu.Unlock()
	for app, version := range want.Apps {
		if st, ok := have[app]; ok && st.Version == version && st.State == StateServing {
			continue
		}
		if ctx.Err() != nil {
			return
		}
		a.install(ctx, app, version)
	}
	for app := range have {
		if _, ok := want.Apps[app]; !ok {
			a.opts.Host.Remove(app)
			if a.opts.Stats != nil {
				a.opts.Stats.Forget(app)
			}
			a.set(Status{App: app, State: StateRemoved})
		}
	}
}

func (a *Agent) set(st Status) {
	st.PoP, st.At = a.opts.Self, time.Now().UTC()
	a.mu.Lock()
	if st.State == StateRemoved {
		delete(a.have, st.App)
	} else if cur, ok := a.have[st.App]; !ok || st.State == StateServing || st.State == StateFailed || cur.State != StateServing {
		// A version being fetched does not hide the one still serving.
		a.have[st.App] = st
	}
	a.reports = append(a.reports, st)
	a.mu.Unlock()
	a.kickReporter()
}

// install fetches (or finds) version's bundle, unpacks it and has the PoP
// serve it.
func (a *Agent) install(ctx context.Context, app, version string) {
	log := a.log.With("app", app, "version", version)
	fail := func(err error) {
		log.Error("deploy: cannot serve the version", "err", err)
		a.set(Status{App: app, Version: version, State: StateFailed, Error: err.Error()})
	}
	path := filepath.Join(a.opts.Dir, "bundles", version)
	b, err := os.ReadFile(path)
	if err != nil || bundle.ID(b) != version {
		a.set(Status{App: app, Version: version, State: StateFetching})
		fctx, cancel := context.WithTimeout(ctx, time.Minute)
		b, err = a.centre.Bundle(fctx, version)
		cancel()
		if err != nil {
			fail(fmt.Errorf("fetching the bundle from the centre: %w", err))
			return
		}
		if err := durable.WriteFile(path, b, 0o644); err != nil {
			fail(err)
			return
		}
	}
	files, err := bundle.Read(b, version)
	if err != nil {
		os.Remove(path)
		fail(err)
		return
	}
	a.set(Status{App: app, Version: version, State: StateCompiling})
	dir := filepath.Join(a.opts.Dir, "run", version)
	if _, err := os.Stat(dir); err == nil {
		os.RemoveAll(dir) // an earlier attempt's
	}
	m, err := files.Unpack(dir)
	if err == nil && m.Name != app {
		err = fmt.Errorf("the bundle is of app %q, not %q", m.Name, app)
	}
	if err == nil {
		err = a.opts.Host.Declare(m)
	}
	if err == nil {
		err = a.opts.Host.Serve(ctx, version, m)
	}
	if err != nil {
		fail(err)
		return
	}
	os.RemoveAll(dir) // loaded: the modules are compiled, the files are the bundle's
	a.mu.Lock()
	a.health[app] = m.Health
	a.mu.Unlock()
	log.Info("deploy: serving")
	a.set(Status{App: app, Version: version, State: StateServing})
}

// Handle answers the centre's pushes and questions over the mesh.
func (a *Agent) Handle(m *mesh.Mesh) error {
	if err := m.HandleRequests(kindAssign, func(_ string, data []byte) ([]byte, error) {
		var asg Assignment
		if err := json.Unmarshal(data, &asg); err != nil {
			return nil, fmt.Errorf("malformed assignment: %w", err)
		}
		a.Assign(asg)
		return nil, nil
	}); err != nil {
		return err
	}
	return m.HandleRequests(kindStats, func(_ string, data []byte) ([]byte, error) {
		var req statsRequest
		if err := json.Unmarshal(data, &req); err != nil {
			return nil, fmt.Errorf("malformed figures request: %w", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return json.Marshal(a.gateFigures(ctx, req))
	})
}

// statsRequest asks a PoP for a gate's figures.
type statsRequest struct {
	App, Version, Prev string
	From, To           time.Time // the new version's window
	PrevFrom, PrevTo   time.Time // the previous version's, before the switch
	MinRequests        int
}

// healthProbes is how many times a PoP calls a version's health route when
// too few requests judge it.
const healthProbes = 5

// gateFigures are the figures of a gate at this PoP: the version's requests
// in its window, and when they are too few, calls of its health route.
func (a *Agent) gateFigures(ctx context.Context, req statsRequest) Gate {
	var g Gate
	if a.opts.Stats != nil {
		now := a.opts.Stats.Query(req.App, req.Version, req.From, req.To)
		g.Requests, g.Errors, g.P99Ms = now.Requests, now.Errors, now.P99Ms
		if req.Prev != "" {
			before := a.opts.Stats.Query(req.App, req.Prev, req.PrevFrom, req.PrevTo)
			g.PrevRequests, g.PrevErrors, g.PrevP99Ms = before.Requests, before.Errors, before.P99Ms
		}
	}
	if g.Requests >= max(req.MinRequests, 1) {
		g.Judged = "requests"
		return g
	}
	a.mu.Lock()
	path := a.health[req.App]
	serving := a.have[req.App].Version == req.Version
	a.mu.Unlock()
	if path == "" || !serving || a.opts.Probe == nil {
		g.Judged = "nothing"
		return g
	}
	g.Judged = "health"
	for i := 0; i < healthProbes; i++ {
		code, err := a.opts.Probe(ctx, req.App, path)
		g.Probes++
		if err != nil || code >= 400 {
			g.ProbeFails++
		}
		time.Sleep(50 * time.Millisecond)
	}
	return g
}
