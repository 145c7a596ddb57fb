package pop

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/verge-edge/verge/internal/jsonapi"
	"github.com/verge-edge/verge/internal/wasm"
)

// AppPolicy is what the operator of a PoP grants one app there: its weight
// in the fair shares of guest slots and its quotas. It is the PoP
// configuration's [app_defaults] and [apps.NAME] (docs/config.md); the
// tenant's manifest cannot raise it. Zero quotas are unlimited.
type AppPolicy struct {
	// Weight is the app's share of the guest slots under contention
	// relative to the other apps' (default 1).
	Weight float64 `toml:"weight"`
	// RequestsPerSecond is a token bucket's rate (0: unlimited); Burst its
	// size (default: one second's worth, at least 1). A request past it
	// gets 429 with Retry-After.
	RequestsPerSecond float64 `toml:"requests_per_second"`
	Burst             int     `toml:"burst"`
	// MaxConcurrent bounds the app's requests in flight at this PoP (0:
	// unlimited); one past it gets 429.
	MaxConcurrent int `toml:"max_concurrent"`
	// StoredBytes bounds the app's documents stored at this PoP (0:
	// unlimited); a write that would pass it gets 507.
	StoredBytes int64 `toml:"stored_bytes"`
}

func (q AppPolicy) check(name string) error {
	switch {
	case q.Weight < 0 || math.IsNaN(q.Weight) || math.IsInf(q.Weight, 0):
		return fmt.Errorf("%s.weight: %v; want > 0 (0: the default, 1)", name, q.Weight)
	case q.RequestsPerSecond < 0 || math.IsNaN(q.RequestsPerSecond):
		return fmt.Errorf("%s.requests_per_second: %v; want ≥ 0 (0: unlimited)", name, q.RequestsPerSecond)
	case q.Burst < 0 || q.MaxConcurrent < 0 || q.StoredBytes < 0:
		return fmt.Errorf("%s: burst, max_concurrent and stored_bytes must be ≥ 0 (0: the default)", name)
	}
	return nil
}

// policyOf is app's policy: its own entry's fields, the defaults' where
// they are zero.
func policyOf(defaults AppPolicy, apps map[string]AppPolicy, app string) AppPolicy {
	q, d := apps[app], defaults
	if q.Weight == 0 {
		q.Weight = d.Weight
	}
	if q.RequestsPerSecond == 0 {
		q.RequestsPerSecond = d.RequestsPerSecond
	}
	if q.Burst == 0 {
		q.Burst = d.Burst
	}
	if q.MaxConcurrent == 0 {
		q.MaxConcurrent = d.MaxConcurrent
	}
	if q.StoredBytes == 0 {
		q.StoredBytes = d.StoredBytes
	}
	return q
}

// applyWeights gives the guest slots the configured weights (process-wide:
// in-process PoPs of one test share them). Nothing configured, nothing set.
func applyWeights(defaults AppPolicy, apps map[string]AppPolicy) {
	if defaults.Weight == 0 && len(apps) == 0 {
		return
	}
	w := map[string]float64{}
	for name := range apps {
		if q := policyOf(defaults, apps, name); q.Weight > 0 {
			w[name] = q.Weight
		}
	}
	wasm.SetAppWeights(w, defaults.Weight)
}

// quotas enforces the request quotas of every app at this PoP.
type quotas struct {
	defaults AppPolicy
	apps     map[string]AppPolicy
	none     bool     // nothing configured: admit is one comparison
	state    sync.Map // app name → *appQuota
}

type appQuota struct {
	AppPolicy
	inflight atomic.Int64
	mu       sync.Mutex
	tokens   float64
	at       time.Time
}

func newQuotas(defaults AppPolicy, apps map[string]AppPolicy) *quotas {
	q := &quotas{defaults: defaults, apps: apps}
	q.none = defaults.RequestsPerSecond == 0 && defaults.MaxConcurrent == 0
	for _, a := range apps {
		if a.RequestsPerSecond != 0 || a.MaxConcurrent != 0 {
			q.none = false
		}
	}
	return q
}

func (q *quotas) of(app string) *appQuota {
	if s, ok := q.state.Load(app); ok {
		return s.(*appQuota)
	}
	s := &appQuota{AppPolicy: policyOf(q.defaults, q.apps, app), at: time.Now()}
	if s.Burst == 0 {
		s.Burst = max(1, int(math.Ceil(s.RequestsPerSecond)))
	}
	s.tokens = float64(s.Burst)
	got, _ := q.state.LoadOrStore(app, s)
	return got.(*appQuota)
}

// quotaError is the JSON body of a refusal for a quota.
type quotaError struct {
	jsonapi.ErrorBody
	App   string  `json:"app"`
	Quota float64 `json:"quota"`
}

// admit lets a request of app in, or answers it (429 naming the quota,
// with Retry-After) and returns nil; a non-nil done must be called when
// the request ends.
func (q *quotas) admit(app string, w http.ResponseWriter) (done func()) {
	if q == nil || q.none {
		return func() {}
	}
	s := q.of(app)
	if s.MaxConcurrent > 0 {
		if s.inflight.Add(1) > int64(s.MaxConcurrent) {
			s.inflight.Add(-1)
			refuse(w, http.StatusTooManyRequests, time.Second, quotaError{jsonapi.ErrorBody{
				Error: fmt.Sprintf("app %s has %d requests in flight at this PoP, its quota (max_concurrent); retry when one has finished", app, s.MaxConcurrent),
				Kind:  "quota", Limit: "max_concurrent"}, app, float64(s.MaxConcurrent)})
			return nil
		}
	}
	if s.RequestsPerSecond > 0 {
		if wait := s.take(); wait > 0 {
			if s.MaxConcurrent > 0 {
				s.inflight.Add(-1)
			}
			refuse(w, http.StatusTooManyRequests, wait, quotaError{jsonapi.ErrorBody{
				Error: fmt.Sprintf("app %s exceeded its quota of %g requests per second (burst %d) at this PoP; retry after %s", app, s.RequestsPerSecond, s.Burst, wait.Round(time.Millisecond)),
				Kind:  "quota", Limit: "requests_per_second"}, app, s.RequestsPerSecond})
			return nil
		}
	}
	if s.MaxConcurrent > 0 {
		return func() { s.inflight.Add(-1) }
	}
	return func() {}
}

// take takes a token, or says how long until one is there.
func (s *appQuota) take() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	s.tokens = min(float64(s.Burst), s.tokens+now.Sub(s.at).Seconds()*s.RequestsPerSecond)
	s.at = now
	if s.tokens >= 1 {
		s.tokens--
		return 0
	}
	return time.Duration((1 - s.tokens) / s.RequestsPerSecond * float64(time.Second))
}

func refuse(w http.ResponseWriter, status int, retry time.Duration, body any) {
	// Retry-After is whole seconds (RFC 9110), rounded up.
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(retry.Seconds())))))
	jsonapi.WriteValue(w, status, body)
}

// storedBytesFunc returns each app's stored-bytes quota (documents.Options.Quota); nil
// when no app has one.
func (q *quotas) storedBytesFunc() func(string) int64 {
	if q.defaults.StoredBytes == 0 {
		found := false
		for _, a := range q.apps {
			found = found || a.StoredBytes != 0
		}
		if !found {
			return nil
		}
	}
	return func(app string) int64 { return policyOf(q.defaults, q.apps, app).StoredBytes }
}
