// Package deploy puts app versions on a running network. The central PoP
// keeps every version (a bundle, package bundle) durably, decides which
// version each PoP serves, and rolls new versions out in health-gated
// stages; every PoP, the centre included, runs an Agent that fetches the
// bundles it is assigned over the mesh, has them loaded, and reports back.
//
//	verge deploy ──HTTP──► centre: Registry (bundles, apps.json) + Controller
//	                               │ deploy.assign (push)       ▲ deploy.status
//	                               ▼                            │ deploy.sync / deploy.bundle
//	                        every PoP: Agent ──► Host (the PoP: load, swap, route)
//
// What a PoP serves is a pure function of the centre's state: an app's
// current version, or the version of the rollout in progress if that PoP's
// stage has been reached. So a PoP that was down, partitioned or lost its
// disk catches up by asking the centre for its assignment (on start, before
// serving, and whenever its link to the centre comes back).
package deploy

import (
	"context"
	"errors"
	"time"

	"github.com/verge-edge/verge"
)

// Mesh subjects.
const (
	kindAssign = "deploy.assign" // centre → PoP: its assignment
	kindSync   = "deploy.sync"   // PoP → centre: what should I serve?
	kindBundle = "deploy.bundle" // PoP → centre: a piece of a bundle
	kindStatus = "deploy.status" // PoP → centre: what I serve now
	kindStats  = "deploy.stats"  // centre → PoP: a version's figures for a gate
)

// Assignment is what a PoP should serve: a version per app. Gen orders
// assignments: a PoP ignores one older than what it has.
type Assignment struct {
	Gen  uint64            `json:"gen"`
	Apps map[string]string `json:"apps"` // app → version id
}

// States of an app version at a PoP, as reported to the centre.
const (
	StateFetching  = "fetching"
	StateCompiling = "compiling"
	StateServing   = "serving"
	StateFailed    = "failed"
	StateRemoved   = "removed"
)

// Status is what a PoP reports of one app.
type Status struct {
	PoP     string    `json:"pop"`
	App     string    `json:"app"`
	Version string    `json:"version"`
	State   string    `json:"state"`
	Error   string    `json:"error,omitempty"`
	At      time.Time `json:"at"`
}

// Host is the PoP as the agent drives it.
type Host interface {
	// Declare registers an app's data (collections, counters) before any
	// version of it serves: replication and stocks need it first.
	Declare(m *verge.Manifest) error
	// Serve loads the version unpacked at m and swaps it in for the app's
	// current one; requests in flight finish on the old one.
	Serve(ctx context.Context, version string, m *verge.Manifest) error
	// Remove stops serving the app (its data stays).
	Remove(app string)
}

// Errors of the deploy API; the admin API maps them to HTTP statuses.
var (
	// ErrInvalidBundle: the bytes are not a bundle, or it does not load.
	ErrInvalidBundle = errors.New("invalid bundle")
	// ErrNoVersion: no such app or version.
	ErrNoVersion = errors.New("no such version")
	// ErrBusy: a rollout of the app is in progress.
	ErrBusy = errors.New("a rollout is in progress")
	// ErrNotCentral: deploys are made at the central PoP.
	ErrNotCentral = errors.New("not the central PoP")
)

// Event is one step of a rollout, streamed to `verge deploy`.
type Event struct {
	At      time.Time `json:"at"`
	App     string    `json:"app"`
	Version string    `json:"version"`
	// Stage is 1 for the canary, then 2, 3... for the waves; 0 for events
	// of the whole rollout.
	Stage  int    `json:"stage,omitempty"`
	PoP    string `json:"pop,omitempty"`
	State  string `json:"state"` // a PoP state, or started, gate, passed, skipped, done, rolled_back, failed
	Msg    string `json:"msg,omitempty"`
	Figure *Gate  `json:"gate,omitempty"`
}

// Gate is a stage's figures at one PoP: the new version over the gate
// window beside the previous version's before the switch.
type Gate struct {
	Requests     int     `json:"requests"`
	Errors       int     `json:"errors_5xx"`
	P99Ms        float64 `json:"p99_ms"`
	PrevRequests int     `json:"prev_requests"`
	PrevErrors   int     `json:"prev_errors_5xx"`
	PrevP99Ms    float64 `json:"prev_p99_ms"`
	Probes       int     `json:"health_probes,omitempty"`
	ProbeFails   int     `json:"health_failures,omitempty"`
	Judged       string  `json:"judged"` // "requests", "health", or "nothing" (no traffic, no health route)
}

// Thresholds are the gate's bounds, relative to the previous version at the
// same PoPs.
type Thresholds struct {
	// MinRequests below which requests do not judge a version (the
	// health route does).
	MinRequests int `json:"min_requests"`
	// MaxErrorIncrease: the 5xx share may rise by at most this much
	// (0.01: one percentage point).
	MaxErrorIncrease float64 `json:"max_error_increase"`
	// MaxP99Ratio and P99Slack: p99 may be at most MaxP99Ratio × the
	// previous p99 + P99Slack.
	MaxP99Ratio float64       `json:"max_p99_ratio"`
	P99Slack    time.Duration `json:"p99_slack"`
}

// DefaultThresholds are documented in docs/deploy.md.
var DefaultThresholds = Thresholds{MinRequests: 20, MaxErrorIncrease: 0.01, MaxP99Ratio: 1.5, P99Slack: 10 * time.Millisecond}

// Plan is how a version rolls out.
type Plan struct {
	// Canary is the first PoP ("": the edge PoP nearest the centre).
	Canary string `json:"canary,omitempty"`
	// Waves are the sizes of the stages after the canary; 0 is "all the
	// rest". Empty: one wave of all the rest.
	Waves []int `json:"waves,omitempty"`
	// Gate is how long each stage is watched before the next; 0: no gates.
	Gate       time.Duration `json:"gate"`
	Thresholds Thresholds    `json:"thresholds"`
}
