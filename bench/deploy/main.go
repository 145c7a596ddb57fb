// Command deploy measures deploys on a network started with `verge net up`
// (separate processes, the emulated WAN at real-world latency by default):
//
//   - rollout: the time from `verge deploy` (no gates) to every PoP serving
//     the new version of examples/hello-go, and of a rollout with a 10 s
//     canary gate; the time from `verge rollback` to every PoP serving the
//     previous version; and the errors a client sees while sending
//     -rate requests a second to every PoP during all of it.
//
//   - density: -apps distinct apps (hello-go under as many names) deployed to
//     one PoP: the time it takes, the time a restart takes until the PoP
//     serves again, the PoP's resident memory per idle app after it, the
//     first request of apps not hit since the restart, and one app's
//     throughput with every app loaded against with it alone.
//
//   - noisy: app "hog" burns its whole CPU limit at -hog-c connections while
//     app "light" serves examples/hello-go at -light-c, on one PoP: light's
//     throughput and p99 beside hog against alone (fair shares of guest
//     slots, issue 16), median of -noisy-rounds.
//
//     go run ./bench/deploy [-verge bin/verge] [-scenario all|rollout|density|noisy]
//     [-pops 5] [-latency-scale 1] [-rounds 5] [-rate 500]
//     [-apps 1000] [-d 5s] [-c 32] [-hog-c 64] [-light-c 8] [-noisy-rounds 3] [-quick]
//
// It prints one JSON object per scenario on stdout, then one summary line
// each on stderr. Build first: `make build examples`.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/bench/internal/harness"
	"github.com/verge-edge/verge/internal/bundle"
)

var cmd = &harness.Command{Name: "bench/deploy", Scenarios: []string{"rollout", "density", "noisy"}}

type config struct {
	verge    string
	pops     int
	scale    float64
	rounds   int
	rate     int
	gate     time.Duration
	apps     int
	duration time.Duration
	conns    int
	// noisy
	hogConns, lightConns, noisyRounds int
}

func main() {
	var c config
	flag.StringVar(&c.verge, "verge", "bin/verge", "the verge binary (make build)")
	scenario := cmd.ScenarioFlag()
	flag.IntVar(&c.pops, "pops", 5, "PoPs of the rollout network")
	flag.Float64Var(&c.scale, "latency-scale", 1, "emulated WAN latency scale (1: real-world)")
	flag.IntVar(&c.rounds, "rounds", 5, "deploys and rollbacks measured")
	flag.IntVar(&c.rate, "rate", 500, "requests a second sent to every PoP during the rollouts")
	flag.DurationVar(&c.gate, "gate", 10*time.Second, "the gated rollout's gate")
	flag.IntVar(&c.apps, "apps", 1000, "apps deployed to one PoP (density)")
	flag.DurationVar(&c.duration, "d", 5*time.Second, "length of each throughput run (density)")
	flag.IntVar(&c.conns, "c", 32, "connections of each throughput run (density)")
	flag.IntVar(&c.hogConns, "hog-c", 64, "connections to the CPU-burning app (noisy)")
	flag.IntVar(&c.lightConns, "light-c", 8, "connections to hello-go beside it (noisy)")
	flag.IntVar(&c.noisyRounds, "noisy-rounds", 3, "rounds of alone and beside (noisy)")
	quick := flag.Bool("quick", false, "a short run: 2 rounds, a 2 s gate, 20 apps, 2 s throughput runs")
	cmd.Parse()
	if *quick {
		c.rounds, c.gate, c.apps, c.duration = 2, 2*time.Second, 20, 2*time.Second
	}
	if _, err := os.Stat(c.verge); err != nil {
		cmd.Fatalf("%s: %v (run make build)", c.verge, err)
	}
	if _, err := os.Stat("examples/hello-go/hello.wasm"); err != nil {
		cmd.Fatalf("examples/hello-go is not built (%v): run make examples from the repository's root", err)
	}
	cmd.Run(cmd.Select(*scenario), func(ctx context.Context, s string) (harness.Result, error) {
		switch s {
		case "rollout":
			return rollout(ctx, c)
		case "noisy":
			return noisy(ctx, c)
		default:
			return density(ctx, c)
		}
	})
}

// ---- a network ----

type network struct {
	dir   string
	token string
	pops  []struct {
		ID, HTTP, Admin string
		Central         bool
		PID             int
	}
	verge string
}

func startNet(ctx context.Context, c config, pops int) (*network, error) {
	dir, err := os.MkdirTemp("", "verge-bench-deploy-")
	if err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, c.verge, "net", "up", "--dir", dir, "--pops", strconv.Itoa(pops),
		"--latency-scale", fmt.Sprint(c.scale)).CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("verge net up: %v\n%s", err, out)
	}
	n := &network{dir: dir, verge: c.verge}
	b, err := os.ReadFile(filepath.Join(dir, "net.json"))
	if err != nil {
		n.close()
		return nil, err
	}
	var nf struct {
		Token string `json:"token"`
		PoPs  []struct {
			ID      string `json:"id"`
			HTTP    string `json:"http"`
			Admin   string `json:"admin"`
			Central bool   `json:"central"`
			PID     int    `json:"pid"`
		} `json:"pops"`
	}
	if err := json.Unmarshal(b, &nf); err != nil {
		n.close()
		return nil, err
	}
	n.token = nf.Token
	for _, p := range nf.PoPs {
		n.pops = append(n.pops, struct {
			ID, HTTP, Admin string
			Central         bool
			PID             int
		}{p.ID, p.HTTP, p.Admin, p.Central, p.PID})
	}
	return n, nil
}

// reloadPIDs reads the PoPs' process ids again (after verge net restart).
func (n *network) reloadPIDs() error {
	b, err := os.ReadFile(filepath.Join(n.dir, "net.json"))
	if err != nil {
		return err
	}
	var nf struct {
		PoPs []struct {
			ID  string `json:"id"`
			PID int    `json:"pid"`
		} `json:"pops"`
	}
	if err := json.Unmarshal(b, &nf); err != nil {
		return err
	}
	for i := range n.pops {
		for _, p := range nf.PoPs {
			if p.ID == n.pops[i].ID {
				n.pops[i].PID = p.PID
			}
		}
	}
	return nil
}

func (n *network) close() {
	exec.Command(n.verge, "net", "down", "--dir", n.dir).Run()
	os.RemoveAll(n.dir)
}

func (n *network) central() string {
	for _, p := range n.pops {
		if p.Central {
			return "http://" + p.Admin
		}
	}
	return ""
}

// versionAt asks a PoP which version of app answers.
func versionAt(client *http.Client, httpAddr, app string) (string, int) {
	req, _ := http.NewRequest("GET", "http://"+httpAddr+"/hello", nil)
	req.Host = app + ".localhost"
	resp, err := client.Do(req)
	if err != nil {
		return "", 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.Header.Get("Verge-Version"), resp.StatusCode
}

// waitAll waits until every PoP answers app with version; it returns when
// the last one did (measured from start).
func (n *network) waitAll(ctx context.Context, app, version string, start time.Time) (time.Duration, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	var last time.Duration
	for _, p := range n.pops {
		for {
			if v, _ := versionAt(client, p.HTTP, app); v == version {
				last = max(last, time.Since(start))
				break
			}
			if time.Since(start) > 2*time.Minute || ctx.Err() != nil {
				return 0, fmt.Errorf("%s does not serve %s %s after %v", p.ID, app, version, time.Since(start))
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	return last, nil
}

// appVersion writes a copy of examples/hello-go named name whose manifest
// differs by an environment variable, so that each is a version of its own.
func appVersion(dir, name string, n int) (string, string, error) {
	app := filepath.Join(dir, fmt.Sprintf("%s-%d", name, n))
	if err := os.MkdirAll(app, 0o755); err != nil {
		return "", "", err
	}
	mod, err := os.ReadFile("examples/hello-go/hello.wasm")
	if err != nil {
		return "", "", err
	}
	if err := os.WriteFile(filepath.Join(app, "hello.wasm"), mod, 0o644); err != nil {
		return "", "", err
	}
	manifest := fmt.Sprintf("name = %q\n[[function]]\nname = \"hello\"\nmodule = \"hello.wasm\"\nexecutor = \"verge\"\nroutes = [\"/hello\", \"/hello/*\"]\nenv = { ROUND = \"%d\" }\n", name, n)
	if err := os.WriteFile(filepath.Join(app, "verge.toml"), []byte(manifest), 0o644); err != nil {
		return "", "", err
	}
	m, err := verge.LoadManifest(app)
	if err != nil {
		return "", "", err
	}
	_, id, err := bundle.Pack(m, bundle.Meta{})
	return app, id, err
}

// ---- rollout ----

type rolloutResult struct {
	Scenario      string    `json:"scenario"`
	PoPs          int       `json:"pops"`
	LatencyScale  float64   `json:"latency_scale"`
	LoadAvg       string    `json:"load_avg"`
	DeployS       []float64 `json:"deploy_to_all_serving_s"` // no gates
	DeployMedianS float64   `json:"deploy_median_s"`
	CLIMedianS    float64   `json:"deploy_cli_median_s"`
	GatedS        float64   `json:"gated_deploy_s"`
	Gate          string    `json:"gate"`
	RollbackS     []float64 `json:"rollback_to_all_serving_s"`
	RollbackMedS  float64   `json:"rollback_median_s"`
	Rate          int       `json:"rate_per_pop"`
	Requests      int64     `json:"requests"`
	Errors        int64     `json:"errors"`
	ErrorSamples  []string  `json:"error_samples,omitempty"`
}

func (r rolloutResult) SummaryLine() string {
	return fmt.Sprintf("rollout (%d PoPs, latency x%g, load %s): deploy to every PoP %.2f s median (goal <= 1.5 s: %s), gated (%s) %.1f s, rollback %.2f s (goal <= 0.5 s: %s), %d errors in %d requests at %d/s per PoP (goal 0: %s)",
		r.PoPs, r.LatencyScale, r.LoadAvg, r.DeployMedianS, harness.MetWord(r.DeployMedianS <= 1.5), r.Gate, r.GatedS,
		r.RollbackMedS, harness.MetWord(r.RollbackMedS <= 0.5), r.Errors, r.Requests, r.Rate, harness.MetWord(r.Errors == 0))
}

// load sends rate requests a second for app to every PoP until stopped.
type load struct {
	sent, errors atomic.Int64
	mu           sync.Mutex
	samples      []string
	stop         chan struct{}
	wg           sync.WaitGroup
}

func startLoad(n *network, app string, rate int) *load {
	l := &load{stop: make(chan struct{})}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	for _, p := range n.pops {
		l.wg.Go(func() {
			t := time.NewTicker(time.Second / time.Duration(rate))
			defer t.Stop()
			var inflight sync.WaitGroup
			defer inflight.Wait()
			for {
				select {
				case <-l.stop:
					return
				case <-t.C:
				}
				inflight.Go(func() {
					_, code := versionAt(client, p.HTTP, app)
					l.sent.Add(1)
					if code != 200 {
						l.errors.Add(1)
						l.mu.Lock()
						if len(l.samples) < 10 {
							l.samples = append(l.samples, fmt.Sprintf("%s: status %d", p.ID, code))
						}
						l.mu.Unlock()
					}
				})
			}
		})
	}
	return l
}

func (l *load) end() {
	close(l.stop)
	l.wg.Wait()
}

func (n *network) deploy(ctx context.Context, dir string, gate time.Duration) error {
	out, err := exec.CommandContext(ctx, n.verge, "deploy", "--net", n.dir, "--gate", gate.String(), "--no-build", "--cache-dir", filepath.Join(n.dir, "cache"), dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("verge deploy: %v\n%s", err, out)
	}
	return nil
}

func rollout(ctx context.Context, c config) (harness.Result, error) {
	n, err := startNet(ctx, c, c.pops)
	if err != nil {
		return nil, err
	}
	defer n.close()
	res := rolloutResult{Scenario: "rollout", PoPs: c.pops, LatencyScale: c.scale, Rate: c.rate, Gate: c.gate.String()}
	work, err := os.MkdirTemp("", "verge-bench-apps-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	dir0, v0, err := appVersion(work, "hello", 0)
	if err != nil {
		return nil, err
	}
	if err := n.deploy(ctx, dir0, 0); err != nil {
		return nil, err
	}
	if _, err := n.waitAll(ctx, "hello", v0, time.Now()); err != nil {
		return nil, err
	}
	l := startLoad(n, "hello", c.rate)
	defer func() {
		if l != nil {
			l.end()
		}
	}()
	var cli []float64
	prev := v0
	for i := 1; i <= c.rounds; i++ {
		dir, v, err := appVersion(work, "hello", i)
		if err != nil {
			return nil, err
		}
		// The CLI checks the module and packs it before it uploads: the
		// clock starts when the user presses enter.
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- n.deploy(ctx, dir, 0) }()
		all, err := n.waitAll(ctx, "hello", v, start)
		if err != nil {
			return nil, err
		}
		if err := <-done; err != nil {
			return nil, err
		}
		cli = append(cli, time.Since(start).Seconds())
		res.DeployS = append(res.DeployS, harness.Round(all.Seconds(), 3))
		cmd.Progress("deploy %d: every PoP serves %s after %.3f s", i, v[:12], all.Seconds())
		// Roll back to the previous version, and forward again.
		start = time.Now()
		if out, err := exec.CommandContext(ctx, n.verge, "rollback", "--net", n.dir, "hello", prev).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("verge rollback: %v\n%s", err, out)
		}
		back, err := n.waitAll(ctx, "hello", prev, start)
		if err != nil {
			return nil, err
		}
		res.RollbackS = append(res.RollbackS, harness.Round(back.Seconds(), 3))
		cmd.Progress("rollback %d: every PoP serves %s after %.3f s", i, prev[:12], back.Seconds())
		if out, err := exec.CommandContext(ctx, n.verge, "rollback", "--net", n.dir, "hello", v).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("verge rollback: %v\n%s", err, out)
		}
		if _, err := n.waitAll(ctx, "hello", v, time.Now()); err != nil {
			return nil, err
		}
		prev = v
	}
	dir, v, err := appVersion(work, "hello", c.rounds+1)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := n.deploy(ctx, dir, c.gate); err != nil {
		return nil, err
	}
	res.GatedS = harness.Round(time.Since(start).Seconds(), 2)
	if _, err := n.waitAll(ctx, "hello", v, start); err != nil {
		return nil, err
	}
	l.end()
	res.Requests, res.Errors, res.ErrorSamples = l.sent.Load(), l.errors.Load(), l.samples
	l = nil
	res.DeployMedianS = harness.Median(res.DeployS)
	res.CLIMedianS = harness.Round(harness.Median(cli), 3)
	res.RollbackMedS = harness.Median(res.RollbackS)
	res.LoadAvg = harness.LoadAvg()
	return res, nil
}

// ---- density ----

type densityResult struct {
	Scenario       string  `json:"scenario"`
	Apps           int     `json:"apps"`
	LoadAvg        string  `json:"load_avg"`
	DeployAllS     float64 `json:"deploy_all_s"`
	RSSOneMiB      float64 `json:"rss_one_app_mib"`
	RSSAllMiB      float64 `json:"rss_all_apps_mib"`
	PerAppMiB      float64 `json:"rss_per_idle_app_mib"`
	RPSOne         []int   `json:"rps_one_app"`
	RPSAll         []int   `json:"rps_all_apps"`
	Ratio          float64 `json:"all_vs_one"`
	ConnsPerRun    int     `json:"conns"`
	SecondsPerRun  float64 `json:"seconds_per_run"`
	FirstRequestMs float64 `json:"first_request_ms"`
	// StartS: a restart of the PoP with every app deployed, until it serves.
	StartS float64 `json:"restart_s"`
	// FirstIdleMs: the first request of apps not hit since the restart.
	FirstIdleMs       []float64 `json:"first_request_idle_app_ms"`
	FirstIdleMedianMs float64   `json:"first_request_idle_app_median_ms"`
	DeployAPIMedian   float64   `json:"deploy_one_app_median_ms"`
}

func (r densityResult) SummaryLine() string {
	return fmt.Sprintf("density (load %s): %d apps deployed to one PoP in %.1f s; restart until serving %.2f s; %.2f MiB resident per idle app (goal <= 2 MiB beyond compiled code: %s); first request of an app not hit since start %.2f ms median (goal <= 2 ms: %s); one app's throughput with %d loaded vs 1 (median of 3): %.2fx (goal >= 0.9x: %s)",
		r.LoadAvg, r.Apps, r.DeployAllS, r.StartS, r.PerAppMiB, harness.MetWord(r.PerAppMiB <= 2), r.FirstIdleMedianMs, harness.MetWord(r.FirstIdleMedianMs <= 2), r.Apps, r.Ratio, harness.MetWord(r.Ratio >= 0.9))
}

// rssMiB is a process's resident memory.
func rssMiB(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.Fields(rest)[0])
			return float64(kb) / 1024, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// deployAPI uploads and rolls out a version through the admin API, without
// the CLI's local check: the density scenario measures the PoP.
func (n *network) deployAPI(ctx context.Context, dir string) error {
	m, err := verge.LoadManifest(dir)
	if err != nil {
		return err
	}
	b, id, err := bundle.Pack(m, bundle.Meta{})
	if err != nil {
		return err
	}
	do := func(method, path, body string, raw []byte) error {
		var rd io.Reader = strings.NewReader(body)
		if raw != nil {
			rd = bytes.NewReader(raw)
		}
		req, _ := http.NewRequestWithContext(ctx, method, n.central()+path, rd)
		req.Header.Set("Authorization", "Bearer "+n.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("%s %s: %s %s", method, path, resp.Status, out)
		}
		if strings.Contains(string(out), `"state":"rolled_back"`) {
			return fmt.Errorf("%s %s: rolled back: %s", method, path, out)
		}
		return nil
	}
	if err := do("PUT", "/v1/apps/"+m.Name+"/versions/"+id, "", b); err != nil {
		return err
	}
	return do("POST", "/v1/apps/"+m.Name+"/rollouts", `{"version":"`+id+`","gate":"0s"}`, nil)
}

// throughput runs a closed loop of conns clients against app for d.
func throughput(ctx context.Context, httpAddr, app string, conns int, d time.Duration) (int, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var ok, bad atomic.Int64
	deadline := time.Now().Add(d)
	err := harness.Workers(ctx, conns, func(ctx context.Context, w int) error {
		for time.Now().Before(deadline) {
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+httpAddr+"/hello?name=bench", nil)
			req.Host = app + ".localhost"
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				ok.Add(1)
			} else {
				bad.Add(1)
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		return 0, err
	}
	if bad.Load() > 0 {
		return 0, fmt.Errorf("%d requests failed", bad.Load())
	}
	return int(float64(ok.Load()) / d.Seconds()), nil
}

func density(ctx context.Context, c config) (harness.Result, error) {
	n, err := startNet(ctx, c, 1)
	if err != nil {
		return nil, err
	}
	defer n.close()
	work, err := os.MkdirTemp("", "verge-bench-apps-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	res := densityResult{Scenario: "density", Apps: c.apps, ConnsPerRun: c.conns, SecondsPerRun: c.duration.Seconds()}
	p := n.pops[0]
	dirs := make([]string, c.apps)
	for i := range dirs {
		if dirs[i], _, err = appVersion(work, fmt.Sprintf("app%03d", i), 0); err != nil {
			return nil, err
		}
	}
	if err := n.deployAPI(ctx, dirs[0]); err != nil {
		return nil, err
	}
	// The first request of a freshly deployed app.
	start := time.Now()
	if _, code := versionAt(&http.Client{}, p.HTTP, "app000"); code != 200 {
		return nil, fmt.Errorf("app000 answers %d", code)
	}
	res.FirstRequestMs = harness.Ms(time.Since(start))
	time.Sleep(2 * time.Second) // let the pool settle
	one, err := rssMiB(p.PID)
	if err != nil {
		return nil, err
	}
	res.RSSOneMiB = harness.Round(one, 1)
	measure := func(into *[]int) error {
		rps, err := throughput(ctx, p.HTTP, "app000", c.conns, c.duration)
		*into = append(*into, rps)
		return err
	}
	for range 3 {
		if err := measure(&res.RPSOne); err != nil {
			return nil, err
		}
	}
	start = time.Now()
	var per []float64
	for _, d := range dirs[1:] {
		t := time.Now()
		if err := n.deployAPI(ctx, d); err != nil {
			return nil, err
		}
		per = append(per, float64(time.Since(t).Milliseconds()))
	}
	res.DeployAllS = harness.Round(time.Since(start).Seconds(), 1)
	res.DeployAPIMedian = harness.Median(per)
	// Start-up with every app deployed: restart the PoP and wait until it
	// serves app000 (it loads every app before it says it is ready).
	start = time.Now()
	// verge net restart gives up waiting after a minute; the PoP goes on
	// loading, and the loop below waits for it.
	if out, err := exec.CommandContext(ctx, n.verge, "net", "restart", "--dir", n.dir, p.ID).CombinedOutput(); err != nil && !strings.Contains(string(out), "not ready") {
		return nil, fmt.Errorf("verge net restart: %v\n%s", err, out)
	}
	for {
		if _, code := versionAt(&http.Client{Timeout: 5 * time.Second}, p.HTTP, "app000"); code == 200 {
			break
		}
		if time.Since(start) > 5*time.Minute || ctx.Err() != nil {
			return nil, fmt.Errorf("app000 not served 5 min after the restart")
		}
		time.Sleep(20 * time.Millisecond)
	}
	res.StartS = harness.Round(time.Since(start).Seconds(), 2)
	if err := n.reloadPIDs(); err != nil {
		return nil, err
	}
	p = n.pops[0]
	time.Sleep(2 * time.Second)
	all, err := rssMiB(p.PID)
	if err != nil {
		return nil, err
	}
	res.RSSAllMiB = harness.Round(all, 1)
	res.PerAppMiB = harness.Round((all-one)/float64(c.apps-1), 2)
	// The first request of apps not hit since the start, over a
	// connection already open.
	client := &http.Client{Timeout: 10 * time.Second}
	versionAt(client, p.HTTP, "app000")
	var firsts []float64
	for i := 1; i < 10 && i*c.apps/10 < c.apps; i++ {
		app := fmt.Sprintf("app%03d", i*c.apps/10)
		t := time.Now()
		if _, code := versionAt(client, p.HTTP, app); code != 200 {
			return nil, fmt.Errorf("%s answers %d", app, code)
		}
		firsts = append(firsts, harness.Ms(time.Since(t)))
	}
	res.FirstIdleMs = firsts
	res.FirstIdleMedianMs = harness.Median(firsts)
	// app000's throughput with every app loaded.
	for range 3 {
		if err := measure(&res.RPSAll); err != nil {
			return nil, err
		}
	}
	res.Ratio = harness.Round(float64(medianInt(res.RPSAll))/float64(medianInt(res.RPSOne)), 3)
	res.LoadAvg = harness.LoadAvg()
	return res, nil
}
