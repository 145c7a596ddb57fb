package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/app"
	"github.com/verge-edge/verge/internal/bundle"
	"github.com/verge-edge/verge/internal/deploy"
	"github.com/verge-edge/verge/internal/host"
	"github.com/verge-edge/verge/internal/wasm"
)

func runDeploy(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("deploy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := addTargetFlags(fs)
	canary := fs.String("canary", "", "the first PoP to serve the new version (default: the edge PoP nearest the centre)")
	waves := fs.String("waves", "all", "the stages after the canary: PoP counts, e.g. 1,2,all")
	gate := fs.Duration("gate", 10*time.Second, "how long each stage is watched before the next (0: no gates)")
	placement := fs.String("placement", "", "run the app at every PoP (edge) or only at the central PoP (central); default: its verge.toml's")
	asJSON := fs.Bool("json", false, "print the rollout's events as JSON lines")
	maxErr := fs.Float64("max-5xx-increase", 0, "gate: how much the 5xx share may rise over the previous version's, e.g. 0.01 for one point (default 0.01)")
	p99Ratio := fs.Float64("max-p99-ratio", 0, "gate: p99 may be at most this times the previous version's, plus --p99-slack (default 1.5)")
	p99Slack := fs.Duration("p99-slack", 0, "gate: see --max-p99-ratio (default 10ms)")
	noBuild := fs.Bool("no-build", false, "do not run the functions' build commands")
	cacheDir := fs.String("cache-dir", "", "compilation cache for checking the app here (default: the user cache dir; \"-\" disables it)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, `usage: verge deploy [--net DIR | --to URL --token T] [--canary POP] [--waves 1,2,all] [--gate 10s] [--json] APPDIR

Builds the app, checks that it loads, uploads it to the central PoP as a new
version, and rolls it out: the canary PoP first, then the waves, each watched
for --gate; a stage whose new version answers worse than the previous one
(5xx share, p99) rolls the version back everywhere it reached.

flags:`)
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return &usageError{"expected one app directory"}
	}
	plan, err := parseWaves(*waves)
	if err != nil {
		return &usageError{err.Error()}
	}
	var meta bundle.Meta
	if *placement != "" {
		p, err := verge.ParsePlacement(*placement)
		if err != nil {
			return &usageError{"--placement: " + err.Error()}
		}
		meta.Placement = p
	}
	op, err := target.operator()
	if err != nil {
		return err
	}
	ctx := context.Background()
	m, err := verge.LoadManifest(pos[0])
	if err != nil {
		return err
	}
	if !*noBuild {
		if err := app.Build(ctx, m, stderr, stderr); err != nil {
			return err
		}
	}
	spec := rolloutSpec{Canary: *canary, Waves: plan, Gate: gate.String(),
		Thresholds: deploy.Thresholds{MaxErrorIncrease: *maxErr, MaxP99Ratio: *p99Ratio, P99Slack: *p99Slack}}
	return deployApp(ctx, op, m, meta, spec, *cacheDir, stdout, stderr, *asJSON)
}

// rolloutSpec is the body of a rollout request.
type rolloutSpec struct {
	Version string `json:"version"`
	Canary  string `json:"canary,omitempty"`
	Waves   []int  `json:"waves,omitempty"`
	Gate    string `json:"gate"`
	// Thresholds: zero fields keep the centre's defaults.
	Thresholds deploy.Thresholds `json:"thresholds"`
}

// deployApp checks that m (built) loads, uploads it and rolls it out,
// printing the rollout to stdout.
func deployApp(ctx context.Context, op *operator, m *verge.Manifest, meta bundle.Meta, spec rolloutSpec, cacheDir string, stdout, stderr io.Writer, asJSON bool) error {
	// Load it here first: a module that does not load fails with the very
	// message verge dev prints, before anything is sent.
	if err := checkLoads(ctx, m, cacheDir); err != nil {
		return err
	}
	b, id, err := bundle.Pack(m, meta)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "verge: %s version %s (%d bytes): uploading to %s\n", m.Name, shortID(id), len(b), op.base)
	resp, err := op.do("PUT", "/v1/apps/"+url.PathEscape(m.Name)+"/versions/"+id, "application/x-tar", bytes.NewReader(b), 5*time.Minute)
	if err != nil {
		return fmt.Errorf("uploading: %w", err)
	}
	resp.Body.Close()
	spec.Version = id
	body, _ := json.Marshal(spec)
	resp, err = op.do("POST", "/v1/apps/"+url.PathEscape(m.Name)+"/rollouts", "application/json", bytes.NewReader(body), 0)
	if err != nil {
		return fmt.Errorf("starting the rollout: %w", err)
	}
	defer resp.Body.Close()
	return followRollout(resp.Body, stdout, asJSON, isTerminal(stdout))
}

// parseWaves reads "1,2,all" into wave sizes (0: all the rest).
func parseWaves(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "all" {
			out = append(out, 0)
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--waves %q: want PoP counts or all, e.g. 1,2,all", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// checkLoads loads every function of m as a PoP would, and unloads it.
func checkLoads(ctx context.Context, m *verge.Manifest, cacheDir string) error {
	eng, err := wasm.NewEngine(wasm.Options{CacheDir: cacheDir, Logger: slog.New(slog.DiscardHandler),
		Capabilities: host.Capabilities(host.Services{})})
	if err != nil {
		return err
	}
	defer eng.Close(ctx)
	a, err := app.Load(ctx, eng, m, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	a.Close()
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// rolloutFailed is a rollout that ended without the new version serving
// everywhere: exit code 1, with the stage, PoP and figure that failed.
type rolloutFailed struct{ msg string }

func (e *rolloutFailed) Error() string { return e.msg }

// followRollout prints a rollout's events until it ends: JSON lines, plain
// lines, or on a terminal a table of PoPs redrawn in place.
func followRollout(r io.Reader, out io.Writer, asJSON, terminal bool) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	pops := map[string]string{}
	drawn := 0
	var last deploy.Event
	for sc.Scan() {
		line := sc.Bytes()
		var e deploy.Event
		if err := json.Unmarshal(line, &e); err != nil {
			return fmt.Errorf("a malformed event from the centre: %q", line)
		}
		last = e
		switch {
		case asJSON:
			fmt.Fprintf(out, "%s\n", line)
		case terminal && e.PoP != "":
			pops[e.PoP] = describe(e)
			if drawn > 0 {
				fmt.Fprintf(out, "\x1b[%dA", drawn)
			}
			ids := make([]string, 0, len(pops))
			for id := range pops {
				ids = append(ids, id)
			}
			sort.Strings(ids)
			for _, id := range ids {
				fmt.Fprintf(out, "\x1b[2K  %-6s %s\n", id, pops[id])
			}
			drawn = len(ids)
		default:
			if terminal {
				drawn = 0
			}
			fmt.Fprintf(out, "%s %s\n", e.At.Format("15:04:05.000"), plain(e))
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("following the rollout: %w (the centre may have restarted: see verge apps)", err)
	}
	switch last.State {
	case "done":
		return nil
	case "rolled_back", "failed":
		return &rolloutFailed{fmt.Sprintf("%s %s was rolled back: %s", last.App, shortID(last.Version), last.Msg)}
	}
	return fmt.Errorf("the rollout's events stopped before it ended (last: %s); the centre may have gone away: see verge apps", last.State)
}

func describe(e deploy.Event) string {
	s := fmt.Sprintf("stage %d  %-11s", e.Stage, e.State)
	if g := e.Figure; g != nil {
		s += fmt.Sprintf(" %d requests, %d 5xx, p99 %.1f ms (before: %d, %d, %.1f ms)", g.Requests, g.Errors, g.P99Ms, g.PrevRequests, g.PrevErrors, g.PrevP99Ms)
		if g.Judged == "health" {
			s += fmt.Sprintf("; health %d/%d ok", g.Probes-g.ProbeFails, g.Probes)
		}
	}
	if e.Msg != "" {
		s += "  " + e.Msg
	}
	return s
}

func plain(e deploy.Event) string {
	s := e.App + " " + shortID(e.Version)
	if e.Stage > 0 {
		s += fmt.Sprintf(" stage %d", e.Stage)
	}
	if e.PoP != "" {
		s += " " + e.PoP
	}
	s += ": " + e.State
	if g := e.Figure; g != nil {
		s += fmt.Sprintf(" (%d requests, %d 5xx, p99 %.1f ms; before %d, %d, %.1f ms; judged by %s)", g.Requests, g.Errors, g.P99Ms, g.PrevRequests, g.PrevErrors, g.PrevP99Ms, g.Judged)
	}
	if e.Msg != "" {
		s += " " + e.Msg
	}
	return s
}
