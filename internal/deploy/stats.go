package deploy

import (
	"math"
	"sync"
	"time"
)

// Stats keeps, per app version, what its requests at this PoP looked like
// over the last minutes: counts, 5xx answers and a latency histogram per
// second. A rollout's gate reads them. Safe for concurrent use.
type Stats struct {
	mu       sync.Mutex
	versions map[[2]string]*window
	now      func() time.Time
}

// statsSeconds is how far back Stats remember: longer than any gate window
// plus the window before it.
const statsSeconds = 600

// Latency buckets: log-linear, 4 per doubling from 50 µs, up to ~54 s.
const (
	latBuckets = 4 * 20
	latBase    = 50 * time.Microsecond
)

type second struct {
	unix     int64
	requests int
	errors   int
	lat      [latBuckets]uint32
}

type window struct {
	secs [statsSeconds]second
}

// NewStats returns empty stats.
func NewStats() *Stats {
	return &Stats{versions: map[[2]string]*window{}, now: time.Now}
}

func bucketOf(d time.Duration) int {
	if d <= latBase {
		return 0
	}
	b := int(4 * math.Log2(float64(d)/float64(latBase)))
	return min(b, latBuckets-1)
}

// upper bound of bucket b.
func bucketTop(b int) time.Duration {
	return time.Duration(float64(latBase) * math.Exp2(float64(b+1)/4))
}

// Record counts one request of app's version: its status and latency.
func (s *Stats) Record(app, version string, status int, d time.Duration) {
	s.RecordAt(s.now(), app, version, status, d)
}

// RecordAt is Record for a request that ended at end, a clock reading the
// caller already has (a reading costs ~0.1 µs on a VM).
func (s *Stats) RecordAt(end time.Time, app, version string, status int, d time.Duration) {
	now := end.Unix()
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.versions[[2]string{app, version}]
	if w == nil {
		w = &window{}
		s.versions[[2]string{app, version}] = w
	}
	sec := &w.secs[now%statsSeconds]
	if sec.unix != now {
		*sec = second{unix: now}
	}
	sec.requests++
	if status >= 500 {
		sec.errors++
	}
	sec.lat[bucketOf(d)]++
}

// Figures are a version's requests over a span.
type Figures struct {
	Requests int     `json:"requests"`
	Errors   int     `json:"errors_5xx"`
	P99Ms    float64 `json:"p99_ms"`
}

// Query sums the version's seconds from the one holding from to the one
// holding to: figures are kept per second, so a window's edges are rounded
// out to whole seconds.
func (s *Stats) Query(app, version string, from, to time.Time) Figures {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.versions[[2]string{app, version}]
	var f Figures
	if w == nil {
		return f
	}
	var lat [latBuckets]uint64
	for i := range w.secs {
		sec := &w.secs[i]
		if sec.requests == 0 || sec.unix < from.Unix() || sec.unix > to.Unix() {
			continue
		}
		f.Requests += sec.requests
		f.Errors += sec.errors
		for b, n := range sec.lat {
			lat[b] += uint64(n)
		}
	}
	if f.Requests > 0 {
		rank := uint64(math.Ceil(0.99 * float64(f.Requests)))
		var seen uint64
		for b, n := range lat {
			seen += n
			if seen >= rank {
				f.P99Ms = float64(bucketTop(b).Microseconds()) / 1000
				break
			}
		}
	}
	return f
}

// Forget drops what is kept of an app (removed from this PoP).
func (s *Stats) Forget(app string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.versions {
		if k[0] == app {
			delete(s.versions, k)
		}
	}
}
