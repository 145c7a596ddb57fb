package deploy

import (
	"testing"
	"time"
)

func TestStatsQuery(t *testing.T) {
	t.Parallel()
	s := NewStats()
	now := time.Unix(1000, 500_000_000)
	s.now = func() time.Time { return now }
	for i := 0; i < 98; i++ {
		s.Record("a", "v1", 200, time.Millisecond)
	}
	s.Record("a", "v1", 503, time.Millisecond)
	s.Record("a", "v1", 200, 300*time.Millisecond)
	s.Record("a", "v2", 200, time.Millisecond)
	s.Record("b", "v1", 500, time.Millisecond)
	f := s.Query("a", "v1", now.Add(-100*time.Millisecond), now)
	if f.Requests != 100 || f.Errors != 1 {
		t.Fatalf("figures %+v, want 100 requests and 1 error", f)
	}
	// p99 of 100 requests is the 99th: 1 ms, in its bucket (≤ 19% above).
	if f.P99Ms < 1 || f.P99Ms > 1.2 {
		t.Fatalf("p99 %v ms, want about 1 ms", f.P99Ms)
	}
	s.Record("a", "v1", 200, 300*time.Millisecond) // the 101st: p99 is now the slow one
	if f := s.Query("a", "v1", now, now); f.P99Ms < 300 || f.P99Ms > 360 {
		t.Fatalf("p99 %v ms, want about 300 ms", f.P99Ms)
	}
	// Other seconds and other versions are apart.
	if f := s.Query("a", "v1", now.Add(time.Second), now.Add(2*time.Second)); f.Requests != 0 {
		t.Fatalf("a later window holds %+v", f)
	}
	later := now.Add(statsSeconds * time.Second) // the same slot, a new second
	s.now = func() time.Time { return later }
	s.Record("a", "v1", 200, time.Millisecond)
	if f := s.Query("a", "v1", later, later); f.Requests != 1 {
		t.Fatalf("a reused slot holds %+v, want only its own second", f)
	}
	s.Forget("a")
	if f := s.Query("a", "v2", now, later); f.Requests != 0 {
		t.Fatalf("after Forget: %+v", f)
	}
}

func TestJudge(t *testing.T) {
	t.Parallel()
	th := DefaultThresholds
	for _, c := range []struct {
		g    Gate
		fail bool
	}{
		{Gate{Judged: "requests", Requests: 100, Errors: 1, PrevRequests: 100, PrevErrors: 0, P99Ms: 5, PrevP99Ms: 4}, false},
		{Gate{Judged: "requests", Requests: 100, Errors: 2, PrevRequests: 100, PrevErrors: 0}, true},
		{Gate{Judged: "requests", Requests: 100, P99Ms: 20, PrevRequests: 100, PrevP99Ms: 5}, true},
		{Gate{Judged: "requests", Requests: 100, P99Ms: 17, PrevRequests: 100, PrevP99Ms: 5}, false},
		{Gate{Judged: "requests", Requests: 100, P99Ms: 500, PrevRequests: 5, PrevP99Ms: 5}, false}, // too few before to compare latency
		{Gate{Judged: "health", Probes: 5, ProbeFails: 1}, true},
		{Gate{Judged: "health", Probes: 5}, false},
		{Gate{Judged: "nothing"}, false},
	} {
		if why := judge(c.g, th); (why != "") != c.fail {
			t.Errorf("%+v: %q, want failing %v", c.g, why, c.fail)
		}
	}
}
