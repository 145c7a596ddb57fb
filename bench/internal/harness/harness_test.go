package harness

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	t.Parallel()
	v := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for q, want := range map[float64]time.Duration{0.5: 5, 0.99: 10, 1: 10, 0.1: 1, 0: 1} {
		if got := Percentile(v, q); got != want {
			t.Errorf("Percentile(%v) = %v, want %v", q, got, want)
		}
	}
	if Percentile(nil, 0.5) != 0 {
		t.Error("Percentile of nothing is not 0")
	}
}

func TestParseInts(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"1,x", "", "0", "1,,2", "-3"} {
		if v, err := ParseInts(bad, "1,64"); err == nil {
			t.Errorf("ParseInts(%q) = %v, accepted", bad, v)
		} else if err.Error() != "want positive integers separated by commas, e.g. 1,64" {
			t.Errorf("ParseInts(%q): %v", bad, err)
		}
	}
	if v, err := ParseInts(" 1, 64", "1,64"); err != nil || len(v) != 2 || v[0] != 1 || v[1] != 64 {
		t.Errorf(`ParseInts(" 1, 64") = %v, %v`, v, err)
	}
}

func TestChoices(t *testing.T) {
	t.Parallel()
	c := &Command{Name: "bench/x", Scenarios: []string{"delay", "rate", "partition"}}
	if got, want := c.choices(), "all, delay, rate or partition"; got != want {
		t.Errorf("choices = %q, want %q", got, want)
	}
	if got := c.Select("all"); len(got) != 3 || got[0] != "delay" || got[2] != "partition" {
		t.Errorf(`Select("all") = %v`, got)
	}
	if got := c.Select("rate"); len(got) != 1 || got[0] != "rate" {
		t.Errorf(`Select("rate") = %v`, got)
	}
}

func TestWorkers(t *testing.T) {
	t.Parallel()
	var ran atomic.Int64
	if err := Workers(context.Background(), 4, func(ctx context.Context, w int) error {
		ran.Add(1 << (8 * w))
		return nil
	}); err != nil || ran.Load() != 0x01010101 {
		t.Fatalf("Workers = %v, workers run %#x; want nil and each of 4 once", err, ran.Load())
	}

	// The first error stops the others and is what Workers returns.
	boom := errors.New("boom")
	err := Workers(context.Background(), 3, func(ctx context.Context, w int) error {
		if w == 1 {
			return boom
		}
		<-ctx.Done()
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Workers = %v, want the failing worker's error", err)
	}

	// The caller's context ending stops them all and is reported.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(10*time.Millisecond, cancel)
	err = Workers(ctx, 2, func(ctx context.Context, _ int) error {
		<-ctx.Done()
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Workers = %v, want context.Canceled", err)
	}
}

func TestMedian(t *testing.T) {
	v := []float64{3, 1, 2, 4}
	if m := Median(v); m != 3 {
		t.Fatalf("Median(%v) = %v, want 3 (the upper of an even count)", v, m)
	}
	if v[0] != 3 {
		t.Fatal("Median reordered its argument")
	}
	if Median(nil) != 0 {
		t.Fatal("Median(nil) != 0")
	}
}
