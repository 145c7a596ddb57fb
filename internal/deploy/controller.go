package deploy

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/bundle"
	"github.com/verge-edge/verge/internal/mesh"
	"github.com/verge-edge/verge/internal/netsim"
)

// ControllerOptions configure the central PoP's Controller.
type ControllerOptions struct {
	Self     string // the central PoP
	Network  *verge.Network
	Mesh     *mesh.Mesh
	Registry *Registry
	// Local is the centre's own agent: assignments reach it directly.
	Local *Agent
	// Validate loads an unpacked bundle as a PoP would (compile,
	// _initialize) and says why it cannot serve; nil accepts any bundle
	// whose manifest parses.
	Validate func(ctx context.Context, m *verge.Manifest) error
	// LoadTimeout bounds how long a stage waits for its PoPs to serve a
	// version (default 2 min: a Go module compiles in seconds, but a busy
	// machine is slow).
	LoadTimeout time.Duration
	Logger      *slog.Logger
}

// Controller runs deploys at the central PoP: it stores versions, decides
// every PoP's assignment, rolls versions out in gated stages and rolls back.
type Controller struct {
	opts ControllerOptions
	reg  *Registry
	log  *slog.Logger

	mu       sync.Mutex
	rollouts map[string]*rollout          // app → the rollout in progress
	status   map[string]map[string]Status // PoP → app → its last report
	changed  chan struct{}                // closed and replaced on every report
	retry    map[string]bool              // PoPs whose last push failed
	kick     chan struct{}
	stop     chan struct{}
	wg       sync.WaitGroup
}

// rollout is a version on its way: the PoPs already switched serve it.
type rollout struct {
	version  string
	switched map[string]bool
	stage    int
	stages   int
	subs     []chan Event
	done     bool
}

// NewController registers the centre's mesh handlers.
func NewController(opts ControllerOptions) (*Controller, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.LoadTimeout <= 0 {
		opts.LoadTimeout = 2 * time.Minute
	}
	c := &Controller{opts: opts, reg: opts.Registry, log: opts.Logger, rollouts: map[string]*rollout{},
		status: map[string]map[string]Status{}, changed: make(chan struct{}), retry: map[string]bool{},
		kick: make(chan struct{}, 1), stop: make(chan struct{})}
	handlers := map[string]mesh.Handler{
		kindSync: func(_ string, data []byte) ([]byte, error) {
			asg, err := c.Sync(context.Background(), string(data))
			if err != nil {
				return nil, err
			}
			return json.Marshal(asg)
		},
		kindBundle: c.handleBundle,
		kindStatus: func(_ string, data []byte) ([]byte, error) {
			var st Status
			if err := json.Unmarshal(data, &st); err != nil {
				return nil, fmt.Errorf("malformed status: %w", err)
			}
			return nil, c.Report(context.Background(), st)
		},
	}
	for kind, h := range handlers {
		if err := opts.Mesh.HandleRequests(kind, h); err != nil {
			return nil, err
		}
	}
	c.wg.Add(1)
	go c.retryLoop()
	return c, nil
}

// Close stops retrying pushes. Rollouts in progress stop where they are;
// PoPs keep what they serve, and a restarted centre assigns them afresh.
func (c *Controller) Close() {
	close(c.stop)
	c.wg.Wait()
}

// PeerUp is the centre's link to pop coming (back) up: whatever it missed
// is pushed again.
func (c *Controller) PeerUp(pop string) {
	c.mu.Lock()
	c.retry[pop] = true
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// retryLoop pushes again to the PoPs whose last push failed: a link can be
// up on the PoP's side (so it does not resync) while the centre's
// connection to it is still reconnecting.
func (c *Controller) retryLoop() {
	defer c.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		case <-c.kick:
		}
		c.mu.Lock()
		var pops []string
		for p := range c.retry {
			pops = append(pops, p)
		}
		c.mu.Unlock()
		for _, p := range pops {
			if c.opts.Mesh.Up(p) {
				c.push(p, c.reg.Gen())
			}
		}
	}
}

// ---- what PoPs ask ----

// assignment computes what pop serves; c.mu is held.
func (c *Controller) assignment(pop string, gen uint64) Assignment {
	asg := Assignment{Gen: gen, Apps: map[string]string{}}
	for _, rec := range c.reg.Apps() {
		v := rec.Current
		if r := c.rollouts[rec.Name]; r != nil && r.switched[pop] {
			v = r.version
		}
		if v != "" {
			asg.Apps[rec.Name] = v
		}
	}
	return asg
}

// Sync is a PoP asking for its assignment.
func (c *Controller) Sync(_ context.Context, pop string) (Assignment, error) {
	if _, ok := c.opts.Network.PoP(pop); !ok {
		return Assignment{}, fmt.Errorf("%q is not a PoP of this network", pop)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.assignment(pop, c.reg.Gen()), nil
}

// Bundle is the centre's own agent fetching a bundle.
func (c *Controller) Bundle(_ context.Context, id string) ([]byte, error) { return c.reg.Bundle(id) }

// Report records what a PoP serves.
func (c *Controller) Report(_ context.Context, st Status) error {
	if _, ok := c.opts.Network.PoP(st.PoP); !ok {
		return fmt.Errorf("%q is not a PoP of this network", st.PoP)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.status[st.PoP]
	if m == nil {
		m = map[string]Status{}
		c.status[st.PoP] = m
	}
	if st.State == StateRemoved {
		delete(m, st.App)
	} else {
		m[st.App] = st
	}
	if r := c.rollouts[st.App]; r != nil && st.Version == r.version {
		c.emit(r, Event{App: st.App, Version: st.Version, Stage: r.stage, PoP: st.PoP, State: st.State, Msg: st.Error})
	}
	close(c.changed)
	c.changed = make(chan struct{})
	return nil
}

// bundleChunk is what a PoP gets of a bundle per request: the mesh carries
// at most 8 MiB a message; a Go app's bundle (a few MB) comes in one round
// trip, which is what a deploy's time is made of across the WAN.
const bundleChunk = 4 << 20

// handleBundle answers "id offset" with the total size (u64) and up to
// bundleChunk bytes from offset.
func (c *Controller) handleBundle(_ string, data []byte) ([]byte, error) {
	var req struct {
		ID  string `json:"id"`
		Off int    `json:"off"`
	}
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, fmt.Errorf("malformed bundle request: %w", err)
	}
	b, err := c.reg.Bundle(req.ID)
	if err != nil {
		return nil, err
	}
	if req.Off < 0 || req.Off > len(b) {
		return nil, fmt.Errorf("offset %d outside the bundle's %d bytes", req.Off, len(b))
	}
	end := min(len(b), req.Off+bundleChunk)
	out := binary.LittleEndian.AppendUint64(make([]byte, 0, 8+end-req.Off), uint64(len(b)))
	return append(out, b[req.Off:end]...), nil
}

// ---- pushing assignments ----

// push sends pop its assignment; a PoP that cannot be reached catches up
// when its link comes back (Agent.Resync).
func (c *Controller) push(pop string, gen uint64) {
	c.mu.Lock()
	asg := c.assignment(pop, gen)
	c.mu.Unlock()
	if pop == c.opts.Self {
		c.opts.Local.Assign(asg)
		return
	}
	b, _ := json.Marshal(asg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.opts.Mesh.Request(ctx, pop, kindAssign, b)
	c.mu.Lock()
	if err != nil {
		if !c.retry[pop] {
			c.log.Info("deploy: a PoP did not take its assignment; sent again when its link is up", "pop", pop, "err", err)
		}
		c.retry[pop] = true
	} else {
		delete(c.retry, pop)
	}
	c.mu.Unlock()
}

// pushAll pushes every PoP its assignment, in parallel.
func (c *Controller) pushAll(pops []string, gen uint64) {
	var wg sync.WaitGroup
	for _, p := range pops {
		wg.Go(func() { c.push(p, gen) })
	}
	wg.Wait()
}

func (c *Controller) allPoPs() []string {
	var out []string
	for _, p := range c.opts.Network.PoPs {
		out = append(out, p.ID)
	}
	return out
}

// ---- the operator's calls ----

// Upload validates and stores a version of app. id must be the bundle's
// content hash: an upload cut short or altered is refused.
func (c *Controller) Upload(ctx context.Context, app, id string, b []byte) error {
	files, err := bundle.Read(b, id)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidBundle, err)
	}
	dir, err := os.MkdirTemp("", "verge-validate-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	m, err := files.Unpack(filepath.Join(dir, "app"))
	if err != nil {
		return fmt.Errorf("%w: %s", ErrInvalidBundle, relative(err, dir))
	}
	if m.Name != app {
		return fmt.Errorf("%w: the bundle is of app %q, not %q", ErrInvalidBundle, m.Name, app)
	}
	if c.opts.Validate != nil {
		if err := c.opts.Validate(ctx, m); err != nil {
			return fmt.Errorf("%w: %s", ErrInvalidBundle, relative(err, dir))
		}
	}
	return c.reg.Put(app, id, b)
}

// relative names files inside the bundle, not in the centre's temporary
// directory.
func relative(err error, dir string) string {
	return strings.ReplaceAll(err.Error(), filepath.Join(dir, "app")+string(filepath.Separator), "")
}

// Rollback makes version (default: the previous one) current everywhere at
// once, with no gate; a rollout in progress is abandoned.
func (c *Controller) Rollback(ctx context.Context, app, version string) (string, error) {
	rec, ok := c.reg.App(app)
	if !ok {
		return "", fmt.Errorf("%w: no app %q has been deployed", ErrNoVersion, app)
	}
	if version == "" {
		version = rec.Previous()
		if version == "" {
			return "", fmt.Errorf("%w: app %s has no previous version to roll back to", ErrNoVersion, app)
		}
	} else {
		var err error
		if version, err = c.reg.Resolve(app, version); err != nil {
			return "", err
		}
	}
	c.mu.Lock()
	if r := c.rollouts[app]; r != nil {
		c.finish(app, r, Event{State: "rolled_back", Msg: "rolled back by the operator"})
	}
	c.mu.Unlock()
	gen, err := c.reg.Update(app, func(rec *AppRecord) error { return setCurrent(rec, version) })
	if err != nil {
		return "", err
	}
	c.pushAll(c.allPoPs(), gen)
	return version, nil
}

func setCurrent(rec *AppRecord, version string) error {
	for i := range rec.Versions {
		if rec.Versions[i].ID == version {
			rec.Versions[i].Deployed = time.Now().UTC()
			rec.Current = version
			return nil
		}
	}
	return fmt.Errorf("%w: app %s has no version %s", ErrNoVersion, rec.Name, version)
}

// Undeploy stops the app at every PoP; its versions and data stay.
func (c *Controller) Undeploy(ctx context.Context, app string) error {
	c.mu.Lock()
	if r := c.rollouts[app]; r != nil {
		c.mu.Unlock()
		return fmt.Errorf("%w: %s is being rolled out to %s; roll back first", ErrBusy, app, r.version)
	}
	c.mu.Unlock()
	gen, err := c.reg.Update(app, func(rec *AppRecord) error {
		rec.Current = ""
		return nil
	})
	if err != nil {
		return err
	}
	c.pushAll(c.allPoPs(), gen)
	return nil
}

// AppView is an app as `verge apps` shows it.
type AppView struct {
	Name    string            `json:"name"`
	Current string            `json:"current"`
	Rollout string            `json:"rollout,omitempty"` // the version on its way
	PoPs    map[string]Status `json:"pops"`              // what each PoP reports
}

// Apps returns every app with what each PoP serves.
func (c *Controller) Apps() []AppView {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []AppView
	for _, rec := range c.reg.Apps() {
		v := AppView{Name: rec.Name, Current: rec.Current, PoPs: map[string]Status{}}
		if r := c.rollouts[rec.Name]; r != nil {
			v.Rollout = r.version
		}
		for pop, apps := range c.status {
			if st, ok := apps[rec.Name]; ok {
				v.PoPs[pop] = st
			}
		}
		out = append(out, v)
	}
	return out
}

// Versions returns an app's record.
func (c *Controller) Versions(app string) (AppRecord, error) {
	rec, ok := c.reg.App(app)
	if !ok {
		return AppRecord{}, fmt.Errorf("%w: no app %q has been deployed", ErrNoVersion, app)
	}
	return rec, nil
}

// ---- rollouts ----

// Subscribe returns the events of app's rollout in progress until it ends
// (the channel is closed), or false if none is in progress.
func (c *Controller) Subscribe(app string) (<-chan Event, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.rollouts[app]
	if r == nil {
		return nil, false
	}
	ch := make(chan Event, 256)
	r.subs = append(r.subs, ch)
	return ch, true
}

// emit sends an event to the rollout's subscribers; c.mu is held. A
// subscriber too slow to keep 256 events buffered loses events, never
// slows the rollout.
func (c *Controller) emit(r *rollout, e Event) {
	if e.At.IsZero() {
		e.At = time.Now().UTC()
	}
	for _, ch := range r.subs {
		select {
		case ch <- e:
		default:
		}
	}
}

// finish ends a rollout with a last event; c.mu is held.
func (c *Controller) finish(app string, r *rollout, last Event) {
	if r.done {
		return
	}
	last.App, last.Version = app, r.version
	c.emit(r, last)
	r.done = true
	for _, ch := range r.subs {
		close(ch)
	}
	r.subs = nil
	delete(c.rollouts, app)
}

// Deploy starts rolling version out under plan and returns once it has
// started; Subscribe follows it. Only one rollout per app runs at a time.
func (c *Controller) Deploy(app, version string, plan Plan) (<-chan Event, error) {
	version, err := c.reg.Resolve(app, version)
	if err != nil {
		return nil, err
	}
	rec, _ := c.reg.App(app)
	stages, err := c.stages(plan)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if r := c.rollouts[app]; r != nil {
		c.mu.Unlock()
		return nil, fmt.Errorf("%w: %s is being rolled out to %s (stage %d of %d); wait for it, or roll back with verge rollback %s",
			ErrBusy, app, r.version[:12], r.stage, r.stages, app)
	}
	r := &rollout{version: version, switched: map[string]bool{}, stages: len(stages)}
	ch := make(chan Event, 256)
	r.subs = append(r.subs, ch)
	c.rollouts[app] = r
	c.mu.Unlock()
	go c.run(app, rec.Current, r, stages, plan)
	return ch, nil
}

// stages orders the PoPs: the canary, then waves of the rest, nearest the
// centre first.
func (c *Controller) stages(plan Plan) ([][]string, error) {
	central, _ := c.opts.Network.Central()
	at := netsim.Point{Lat: central.Lat, Lon: central.Lon}
	pops := slices.Clone(c.opts.Network.PoPs)
	sort.SliceStable(pops, func(i, j int) bool {
		return netsim.Distance(at, netsim.Point{Lat: pops[i].Lat, Lon: pops[i].Lon}) < netsim.Distance(at, netsim.Point{Lat: pops[j].Lat, Lon: pops[j].Lon})
	})
	canary := plan.Canary
	if canary == "" {
		canary = central.ID
		for _, p := range pops {
			if !p.Central {
				canary = p.ID
				break
			}
		}
	} else if _, ok := c.opts.Network.PoP(canary); !ok {
		return nil, fmt.Errorf("--canary %s: no such PoP in this network", canary)
	}
	var rest []string
	for _, p := range pops {
		if p.ID != canary {
			rest = append(rest, p.ID)
		}
	}
	stages := [][]string{{canary}}
	waves := plan.Waves
	if len(waves) == 0 {
		waves = []int{0}
	}
	for _, n := range waves {
		if len(rest) == 0 {
			break
		}
		if n <= 0 || n > len(rest) {
			n = len(rest)
		}
		stages = append(stages, rest[:n])
		rest = rest[n:]
	}
	if len(rest) > 0 {
		stages = append(stages, rest)
	}
	return stages, nil
}

// run executes a rollout's stages.
func (c *Controller) run(app, prev string, r *rollout, stages [][]string, plan Plan) {
	ev := func(e Event) {
		e.App, e.Version = app, r.version
		c.mu.Lock()
		c.emit(r, e)
		c.mu.Unlock()
	}
	ev(Event{State: "started", Msg: fmt.Sprintf("%d stages; previous version %s; gate %v", len(stages), short(prev), plan.Gate)})
	for i, pops := range stages {
		stage := i + 1
		c.mu.Lock()
		if r.done { // abandoned (rollback)
			c.mu.Unlock()
			return
		}
		r.stage = stage
		c.mu.Unlock()
		var live []string
		for _, p := range pops {
			if p == c.opts.Self || c.opts.Mesh.Up(p) {
				live = append(live, p)
			} else {
				ev(Event{Stage: stage, PoP: p, State: "skipped", Msg: "unreachable; it catches up when it returns"})
			}
		}
		before := time.Now()
		gen, err := c.reg.NextGen()
		if err != nil {
			c.abort(app, prev, r, Event{Stage: stage, State: "failed", Msg: err.Error()})
			return
		}
		c.mu.Lock()
		for _, p := range live {
			r.switched[p] = true
		}
		c.mu.Unlock()
		ev(Event{Stage: stage, State: "stage", Msg: strings.Join(live, ",")})
		c.pushAll(live, gen)
		states := c.waitServing(live, app, r.version)
		for _, p := range live {
			st := states[p]
			switch {
			case st.State == StateFailed:
				c.abort(app, prev, r, Event{Stage: stage, PoP: p, State: "rolled_back", Msg: "the version does not load at " + p + ": " + st.Error})
				return
			case st.State != StateServing:
				ev(Event{Stage: stage, PoP: p, State: "skipped", Msg: "did not report serving the version in time; it catches up when it can"})
			}
		}
		if plan.Gate <= 0 {
			continue
		}
		ev(Event{Stage: stage, State: "gate", Msg: fmt.Sprintf("watching %s for %v", strings.Join(live, ","), plan.Gate)})
		time.Sleep(plan.Gate)
		// A version's first moments are its warm-up (a process that just
		// compiled collects its garbage), not its behaviour: they are not
		// judged.
		start := time.Now().Add(-plan.Gate + warmup(plan.Gate))
		c.mu.Lock()
		abandoned := r.done
		c.mu.Unlock()
		if abandoned {
			return
		}
		for _, p := range live {
			if states[p].State != StateServing {
				continue
			}
			g, err := c.gate(p, app, r.version, prev, before, start, time.Now(), plan)
			if err != nil {
				ev(Event{Stage: stage, PoP: p, State: "skipped", Msg: "no figures: " + err.Error()})
				continue
			}
			if why := judge(g, plan.Thresholds); why != "" {
				c.abort(app, prev, r, Event{Stage: stage, PoP: p, State: "rolled_back", Msg: fmt.Sprintf("stage %d gate failed at %s: %s", stage, p, why), Figure: &g})
				return
			}
			ev(Event{Stage: stage, PoP: p, State: "passed", Figure: &g})
		}
	}
	gen, err := c.reg.Update(app, func(rec *AppRecord) error {
		rec.Versions = slices.Clone(rec.Versions)
		for i := range rec.Versions {
			if rec.Versions[i].ID == r.version {
				rec.Versions[i].Failed = ""
			}
		}
		return setCurrent(rec, r.version)
	})
	if err != nil {
		c.abort(app, prev, r, Event{State: "failed", Msg: "recording the new current version: " + err.Error()})
		return
	}
	c.mu.Lock()
	c.finish(app, r, Event{State: "done", Msg: "every PoP serves it"})
	c.mu.Unlock()
	c.pushAll(c.allPoPs(), gen)
}

// abort rolls the rollout back at every PoP it reached and ends it.
func (c *Controller) abort(app, prev string, r *rollout, last Event) {
	c.mu.Lock()
	reached := make([]string, 0, len(r.switched))
	for p := range r.switched {
		reached = append(reached, p)
	}
	c.finish(app, r, last)
	c.mu.Unlock()
	gen, err := c.reg.Update(app, func(rec *AppRecord) error {
		for i := range rec.Versions {
			if rec.Versions[i].ID == r.version {
				rec.Versions[i].Failed = last.Msg
			}
		}
		return nil
	})
	if err != nil {
		c.log.Error("deploy: recording a failed rollout", "app", app, "err", err)
		gen, _ = c.reg.NextGen()
	}
	c.pushAll(reached, gen)
}

// waitServing waits until every PoP reports serving version (or failing
// it), at most LoadTimeout; it returns their last reports.
func (c *Controller) waitServing(pops []string, app, version string) map[string]Status {
	deadline := time.After(c.opts.LoadTimeout)
	for {
		c.mu.Lock()
		out := map[string]Status{}
		pending := 0
		for _, p := range pops {
			st := c.status[p][app]
			if st.Version != version || (st.State != StateServing && st.State != StateFailed) {
				pending++
				continue
			}
			out[p] = st
		}
		changed := c.changed
		c.mu.Unlock()
		if pending == 0 {
			return out
		}
		select {
		case <-changed:
		case <-deadline:
			return out
		}
	}
}

// gate asks PoP p for the figures of the new version over [start, end) and
// of the previous one over the same length before the switch.
func (c *Controller) gate(p, app, version, prev string, switched, start, end time.Time, plan Plan) (Gate, error) {
	req := statsRequest{App: app, Version: version, From: start, To: end, Prev: prev,
		PrevFrom: switched.Add(-end.Sub(start)), PrevTo: switched, MinRequests: plan.Thresholds.MinRequests}
	if p == c.opts.Self {
		return c.opts.Local.gateFigures(context.Background(), req), nil
	}
	b, _ := json.Marshal(req)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := c.opts.Mesh.Request(ctx, p, kindStats, b)
	if err != nil {
		return Gate{}, err
	}
	var g Gate
	if err := json.Unmarshal(out, &g); err != nil {
		return Gate{}, fmt.Errorf("malformed figures: %w", err)
	}
	return g, nil
}

// warmup is the start of a gate window that is not judged: a fifth of it,
// at most a second.
func warmup(gate time.Duration) time.Duration { return min(gate/5, time.Second) }

// judge says why g fails the thresholds, or "".
func judge(g Gate, t Thresholds) string {
	switch g.Judged {
	case "health":
		if g.ProbeFails > 0 {
			return fmt.Sprintf("%d of %d calls of the health route failed (too few requests, %d, to judge by)", g.ProbeFails, g.Probes, g.Requests)
		}
		return ""
	case "requests":
		share := float64(g.Errors) / float64(g.Requests)
		prevShare := 0.0
		if g.PrevRequests > 0 {
			prevShare = float64(g.PrevErrors) / float64(g.PrevRequests)
		}
		if share > prevShare+t.MaxErrorIncrease {
			return fmt.Sprintf("5xx share %.1f%% (%d of %d requests) against %.1f%% before; at most +%.1f points allowed",
				100*share, g.Errors, g.Requests, 100*prevShare, 100*t.MaxErrorIncrease)
		}
		if g.PrevRequests >= t.MinRequests && g.PrevP99Ms > 0 {
			limit := g.PrevP99Ms*t.MaxP99Ratio + float64(t.P99Slack.Microseconds())/1000
			if g.P99Ms > limit {
				return fmt.Sprintf("p99 %.1f ms against %.1f ms before; at most %.1f ms allowed (×%.1f + %v)",
					g.P99Ms, g.PrevP99Ms, limit, t.MaxP99Ratio, t.P99Slack)
			}
		}
	}
	return ""
}

func short(v string) string {
	if len(v) > 12 {
		return v[:12]
	}
	if v == "" {
		return "(none)"
	}
	return v
}

// ---- the edge's side of the mesh ----

// MeshCentre reaches the centre's Controller over the mesh.
type MeshCentre struct {
	Mesh    *mesh.Mesh
	Central string
}

func (m MeshCentre) Sync(ctx context.Context, pop string) (Assignment, error) {
	out, err := m.Mesh.Request(ctx, m.Central, kindSync, []byte(pop))
	if err != nil {
		return Assignment{}, err
	}
	var asg Assignment
	if err := json.Unmarshal(out, &asg); err != nil {
		return Assignment{}, fmt.Errorf("malformed assignment: %w", err)
	}
	return asg, nil
}

func (m MeshCentre) Bundle(ctx context.Context, id string) ([]byte, error) {
	var b []byte
	for {
		req, _ := json.Marshal(map[string]any{"id": id, "off": len(b)})
		out, err := m.Mesh.Request(ctx, m.Central, kindBundle, req)
		if err != nil {
			return nil, err
		}
		if len(out) < 8 {
			return nil, errors.New("malformed bundle piece")
		}
		total := binary.LittleEndian.Uint64(out)
		if total > bundle.MaxBytes || uint64(len(b)+len(out)-8) > total {
			return nil, fmt.Errorf("the centre sends a bundle of %d bytes, over the limit", total)
		}
		b = append(b, out[8:]...)
		if uint64(len(b)) == total {
			return b, nil
		}
		if len(out) == 8 {
			return nil, errors.New("the centre sent an empty piece of an unfinished bundle")
		}
	}
}

func (m MeshCentre) Report(ctx context.Context, st Status) error {
	b, _ := json.Marshal(st)
	_, err := m.Mesh.Request(ctx, m.Central, kindStatus, b)
	return err
}
