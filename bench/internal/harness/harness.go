// Package harness is the skeleton the scenario benchmarks share
// (bench/replication and bench/spot; bench/http uses its messages and its
// integer lists): messages on stderr prefixed with the command's name, the
// -scenario flag, the run loop that prints each scenario's JSON object on
// stdout as it finishes and one summary line per scenario on stderr at the
// end, and the numbers results are made of (milliseconds, rounding,
// percentiles).
package harness

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Command is one benchmark command.
type Command struct {
	Name      string   // e.g. "bench/spot": prefixes every message on stderr
	Scenarios []string // what -scenario all runs, in this order
}

// Progress reports what the command is doing, on stderr.
func (c *Command) Progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, c.Name+": "+format+"\n", args...)
}

// Fatalf reports an error on stderr and exits with status 1, after stopping
// the CPU profile if one is being written (so that it is complete).
func (c *Command) Fatalf(format string, args ...any) {
	pprof.StopCPUProfile()
	c.Progress(format, args...)
	os.Exit(1)
}

// ScenarioFlag defines -scenario: all, or one of c.Scenarios.
func (c *Command) ScenarioFlag() *string {
	return flag.String("scenario", "all", c.choices())
}

// choices is "all, a, b or c".
func (c *Command) choices() string {
	all := append([]string{"all"}, c.Scenarios...)
	return strings.Join(all[:len(all)-1], ", ") + " or " + all[len(all)-1]
}

// Parse parses the command line; there are no arguments beside the flags.
func (c *Command) Parse() {
	flag.Parse()
	if flag.NArg() > 0 {
		c.Fatalf("unexpected arguments %q", flag.Args())
	}
}

// Select returns the scenarios -scenario names, or exits if there is none.
func (c *Command) Select(scenario string) []string {
	if scenario == "all" {
		return c.Scenarios
	}
	if !slices.Contains(c.Scenarios, scenario) {
		c.Fatalf("-scenario %q: want %s", scenario, c.choices())
	}
	return []string{scenario}
}

// A Result is what a scenario found: it is printed as JSON, and its
// SummaryLine at the end.
type Result interface{ SummaryLine() string }

// Run runs the scenarios one after the other until SIGINT or SIGTERM:
// each result's JSON object goes to stdout as the scenario finishes, and
// the summary lines to stderr once all have run. A scenario that fails is
// reported and the next one runs; the exit status is then 1. A scenario
// must stop and clean up when its context ends: Run exits then, saying so.
func (c *Command) Run(scenarios []string, run func(ctx context.Context, scenario string) (Result, error)) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var summaries []string
	failed := false
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	for _, s := range scenarios {
		c.Progress("scenario %s", s)
		res, err := run(ctx, s)
		if ctx.Err() != nil {
			c.Fatalf("interrupted; the PoPs it started are closed and their directory removed")
		}
		if err != nil {
			c.Progress("%s: %v", s, err)
			failed = true
			continue
		}
		if err := enc.Encode(res); err != nil {
			c.Fatalf("writing JSON: %v", err)
		}
		summaries = append(summaries, res.SummaryLine())
	}
	for _, s := range summaries {
		fmt.Fprintln(os.Stderr, s)
	}
	if failed {
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

// Workers runs fn(ctx, w) for every w in [0, n), each in a goroutine of
// its own, and waits for all of them. The first error fn returns cancels
// the context the others run with; Workers returns that error, or ctx's
// if ctx ended before any.
func Workers(ctx context.Context, n int, fn func(ctx context.Context, w int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for w := range n {
		wg.Go(func() {
			if err := fn(ctx, w); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
				cancel()
			}
		})
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// ParseInts parses a comma-separated list of positive integers; example is
// one such list, for the error.
func ParseInts(s, example string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, errors.New("want positive integers separated by commas, e.g. " + example)
		}
		out = append(out, n)
	}
	return out, nil
}

// Ms is d in milliseconds, to the microsecond.
func Ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// Round rounds v to digits decimals.
func Round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

// Percentile is the nearest-rank q-quantile of sorted v.
func Percentile(v []time.Duration, q float64) time.Duration {
	if len(v) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(v)))) - 1
	return v[max(0, min(i, len(v)-1))]
}

// MetWord is how summaries say whether a goal was met.
func MetWord(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// LoadAvg is the machine's load average over 1, 5 and 15 minutes as
// /proc/loadavg gives it ("?" where it cannot be read): every result
// reports it, since figures on a shared machine mean little without it.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// Median is the median of v (the upper one of an even count; 0 for none),
// leaving v as it is.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
