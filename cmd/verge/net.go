package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
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
	"syscall"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/app"
	"github.com/verge-edge/verge/internal/bundle"
	"github.com/verge-edge/verge/internal/freeport"
	"github.com/verge-edge/verge/internal/netsim"
	"github.com/verge-edge/verge/internal/pop"
)

// netFile is DIR/net.json: what `verge net up` started, for the other
// subcommands and for clients.
type netFile struct {
	// Token is the operator token every PoP's admin API requires: `verge
	// net` and `verge deploy --net` read it from here, scripts too
	// (curl -H "Authorization: Bearer $(jq -r .token net.json)").
	Token  string              `json:"token"`
	PoPs   []netPoP            `json:"pops"`
	Groups map[string][]string `json:"groups,omitempty"`
	// SpotServers are the two extra central servers of a SPOT replicated
	// three ways (--spot-replicas 3).
	SpotServers []spotProc `json:"spot_servers,omitempty"`
}

type spotProc struct {
	ID     string   `json:"id"`
	Listen string   `json:"listen"`
	PID    int      `json:"pid"`
	Dir    string   `json:"dir"`
	Args   []string `json:"args"`
}

// netPoP is a PoP of the network and the process running it.
type netPoP struct {
	verge.PoP
	PID    int    `json:"pid"`
	Config string `json:"config"` // its pop.toml
}

func runNet(args []string, stdout, stderr io.Writer) error {
	sub := map[string]func([]string, io.Writer, io.Writer) error{
		"up": netUp, "down": netDown, "partition": netPartition, "heal": netHeal,
		"kill": netKill, "restart": netRestart, "route": netRoute, "status": netStatus,
	}
	if len(args) == 0 || sub[args[0]] == nil {
		fmt.Fprintln(stderr, `usage: verge net up|down|status|partition|heal|kill|restart|route --dir DIR ...

  up --pops N [--app APP] [--topology FILE] [--latency-scale F]   start N PoPs (the first is central), deploy APP
  down                      stop them all
  status                    every PoP's links: connected, latency, what replication sent
  partition A B | A all     cut the link between two PoPs, or all of A's links
  heal                      restore every link
  kill A                    kill -9 PoP A
  restart A                 start PoP A again (same data directory)
  route --at LAT,LON [--path P]  the nearest healthy PoP for a client there (and GET P from it)`)
		return &usageError{"expected a subcommand"}
	}
	return sub[args[0]](args[1:], stdout, stderr)
}

func netFlags(name string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("net "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "the network's directory (net.json, one directory per PoP)")
	return fs, dir
}

func readNet(dir string) (*netFile, error) {
	if dir == "" {
		return nil, &usageError{"--dir is required"}
	}
	b, err := os.ReadFile(filepath.Join(dir, "net.json"))
	if err != nil {
		return nil, fmt.Errorf("%w (is there a network? start one with verge net up --dir %s)", err, dir)
	}
	var n netFile
	if err := json.Unmarshal(b, &n); err != nil {
		return nil, fmt.Errorf("%s/net.json: %w", dir, err)
	}
	return &n, nil
}

func writeNet(dir string, n *netFile) error {
	b, err := json.MarshalIndent(n, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "net.json.tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil { // it holds the token
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "net.json"))
}

func (n *netFile) pids() []int {
	var out []int
	for _, p := range n.PoPs {
		out = append(out, p.PID)
	}
	for _, sp := range n.SpotServers {
		out = append(out, sp.PID)
	}
	return out
}

func (n *netFile) spotServer(id string) *spotProc {
	for i := range n.SpotServers {
		if n.SpotServers[i].ID == id {
			return &n.SpotServers[i]
		}
	}
	return nil
}

func (n *netFile) pop(id string) (*netPoP, error) {
	for i := range n.PoPs {
		if n.PoPs[i].ID == id {
			return &n.PoPs[i], nil
		}
	}
	var ids []string
	for _, p := range n.PoPs {
		ids = append(ids, p.ID)
	}
	return nil, &usageError{fmt.Sprintf("no PoP %q in this network (PoPs: %s)", id, strings.Join(ids, ", "))}
}

type topologyFile struct {
	PoPs   []verge.PoP         `toml:"pop"`
	Groups map[string][]string `toml:"groups"`
}

func netUp(args []string, stdout, stderr io.Writer) error {
	fs, dir := netFlags("up", stderr)
	n := fs.Int("pops", 5, "number of PoPs (the first is central); ignored with --topology")
	appDir := fs.String("app", "", "an app to deploy to every PoP once the network is up (a directory with verge.toml); it also answers requests whose Host names no app")
	topo := fs.String("topology", "", "TOML file of [[pop]] entries (id, region, lat, lon, central) and [groups]")
	scale := fs.Float64("latency-scale", 1, "multiplies the emulated WAN latency (0 turns it off)")
	base := fs.Duration("base", 2*time.Millisecond, "fixed one-way latency per link, before scaling")
	jitter := fs.Duration("jitter", 0, "random extra one-way latency, up to this much")
	loss := fs.Float64("loss", 0, "probability that a chunk waits for a retransmission")
	window := fs.Duration("batch-window", 50*time.Millisecond, "replication batch window for global data")
	ae := fs.Duration("anti-entropy", 5*time.Second, "anti-entropy period")
	spotTimeout := fs.Duration("spot-timeout", 2*time.Second, "how long an edge PoP waits for the centre before a SPOT operation fails")
	noBuild := fs.Bool("no-build", false, "do not run the app's build commands")
	noSync := fs.Bool("no-sync", false, "acknowledge writes before fsync (benchmarks only: a crash loses writes)")
	spotReplicas := fs.Int("spot-replicas", 1, "replicate the SPOT over this many central servers: 1, or 3 (two verge spot-server processes join the central PoP)")
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return &usageError{"--dir is required"}
	}
	if _, err := os.Stat(filepath.Join(*dir, "net.json")); err == nil {
		return fmt.Errorf("%s already holds a network; stop it with verge net down --dir %s, or pick another directory", *dir, *dir)
	}
	var t topologyFile
	if *topo != "" {
		md, err := toml.DecodeFile(*topo, &t)
		if err != nil {
			return err
		}
		if und := md.Undecoded(); len(und) > 0 {
			return fmt.Errorf("%s: unknown key %q", *topo, und[0].String())
		}
	} else {
		if *n < 1 || *n > len(pop.Sites) {
			return &usageError{fmt.Sprintf("--pops must be 1..%d (or give --topology)", len(pop.Sites))}
		}
		t.PoPs = append(t.PoPs, pop.Sites[:*n]...)
		t.Groups = map[string][]string{}
		for _, p := range t.PoPs {
			t.Groups[p.Region] = append(t.Groups[p.Region], p.ID)
		}
	}
	var m *verge.Manifest
	if *appDir != "" {
		var err error
		if m, err = verge.LoadManifest(*appDir); err != nil {
			return err
		}
		if !*noBuild {
			if err := app.Build(context.Background(), m, stderr, stderr); err != nil {
				return err
			}
		}
	}
	absDir, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	for i := range t.PoPs {
		p := &t.PoPs[i]
		if p.Number == 0 {
			p.Number = uint16(i + 1)
		}
		for _, a := range []*string{&p.Mesh, &p.HTTP, &p.Admin} {
			if *a == "" {
				if *a, err = freeport.Addr(); err != nil {
					return err
				}
			}
		}
	}
	if *spotReplicas != 1 && *spotReplicas != 3 {
		return &usageError{"--spot-replicas must be 1 or 3"}
	}
	token, err := newToken()
	if err != nil {
		return err
	}
	defaultApp := ""
	if m != nil {
		defaultApp = m.Name
	}
	nf := &netFile{Token: token, Groups: t.Groups}
	var spotCfg *pop.SpotConfig
	if *spotReplicas == 3 {
		var central string
		for _, p := range t.PoPs {
			if p.Central {
				central = p.ID
			}
		}
		var clusters [3]string
		for i := range clusters {
			if clusters[i], err = freeport.Addr(); err != nil {
				return err
			}
		}
		spotCfg = &pop.SpotConfig{Replicas: 3, Cluster: clusters[0], Routes: []string{clusters[1], clusters[2]}}
		for i := 1; i <= 2; i++ {
			listen, err := freeport.Addr()
			if err != nil {
				return err
			}
			id := fmt.Sprintf("%s-spot%d", central, i)
			dir := filepath.Join(absDir, id)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			nf.SpotServers = append(nf.SpotServers, spotProc{ID: id, Listen: listen, Dir: dir, Args: []string{"spot-server",
				"--data", filepath.Join(dir, "data"), "--name", "verge-" + id, "--listen", listen,
				"--cluster", clusters[i], "--routes", clusters[0] + "," + clusters[3-i]}})
		}
	}
	for _, p := range t.PoPs {
		cfg := pop.Config{
			ID: p.ID, Data: "data", CacheDir: filepath.Join(absDir, "cache"), AdminToken: token,
			BatchWindow: window.String(), AntiEntropy: ae.String(), SpotTimeout: spotTimeout.String(), NoSync: *noSync,
			DefaultApp: defaultApp,
			WAN:        pop.WANConfig{Scale: *scale, Base: base.String(), Jitter: jitter.String(), Loss: *loss},
			PoPs:       t.PoPs, Groups: t.Groups,
		}
		if p.Central {
			cfg.Spot = spotCfg
		}
		pdir := filepath.Join(absDir, p.ID)
		if err := os.MkdirAll(pdir, 0o755); err != nil {
			return err
		}
		var buf bytes.Buffer
		if err := toml.NewEncoder(&buf).Encode(cfg); err != nil {
			return err
		}
		path := filepath.Join(pdir, "pop.toml")
		if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil { // it holds the token
			return err
		}
		nf.PoPs = append(nf.PoPs, netPoP{PoP: p, Config: path})
	}
	freeport.Share() // the PoPs hold the ports chosen here once this process exits
	for i := range nf.SpotServers {
		sp := &nf.SpotServers[i]
		if sp.PID, err = startProcess(sp.Dir, sp.Args); err != nil {
			return err
		}
	}
	// The central PoP first: the others learn their incarnation from it.
	for i := range nf.PoPs {
		if err := startPoP(&nf.PoPs[i]); err != nil {
			return err
		}
	}
	if err := writeNet(absDir, nf); err != nil {
		return err
	}
	for i := range nf.PoPs {
		if err := waitReady(&nf.PoPs[i], nf.Token, 60*time.Second); err != nil {
			return err
		}
		p := nf.PoPs[i]
		fmt.Fprintf(stdout, "verge: PoP %s (%s%s) http://%s admin http://%s\n", p.ID, p.Region, map[bool]string{true: ", central"}[p.Central], p.HTTP, p.Admin)
	}
	if m != nil {
		var central netPoP
		for _, p := range nf.PoPs {
			if p.Central {
				central = p
			}
		}
		op := &operator{base: "http://" + central.Admin, token: nf.Token, client: &http.Client{}}
		if err := deployApp(context.Background(), op, m, bundle.Meta{}, rolloutSpec{Gate: "0s"}, filepath.Join(absDir, "cache"), io.Discard, stderr, false); err != nil {
			return fmt.Errorf("deploying %s: %w", m.Name, err)
		}
		fmt.Fprintf(stdout, "verge: %s deployed to every PoP\n", m.Name)
	}
	fmt.Fprintf(stdout, "verge: network of %d PoPs up; %s/net.json describes it; stop it with verge net down --dir %s\n", len(nf.PoPs), *dir, *dir)
	return nil
}

// startPoP starts `verge serve` for p.
func startPoP(p *netPoP) (err error) {
	p.PID, err = startProcess(filepath.Dir(p.Config), []string{"serve", "--config", p.Config})
	if err != nil {
		return fmt.Errorf("starting PoP %s: %w", p.ID, err)
	}
	return nil
}

// startProcess starts this verge binary with args in its own session, so it
// outlives this command and a kill -9 of it reaches only it; its output
// goes to dir/log.
func startProcess(dir string, args []string) (int, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	logf, err := os.OpenFile(filepath.Join(dir, "log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "---- %s start\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(exe, args...)
	cmd.Dir = dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	go cmd.Wait() // reap it if this command lives on (tests)
	return cmd.Process.Pid, nil
}

// logTail returns the last n lines of a PoP's log, for errors that would
// otherwise send the user looking for a file a test has already removed.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "  (" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	lines = lines[max(0, len(lines)-n):]
	return "  " + strings.Join(lines, "\n  ")
}

// waitReady waits until p answers on its admin API.
func waitReady(p *netPoP, token string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if !alive(p.PID) {
			log := filepath.Join(filepath.Dir(p.Config), "log")
			return fmt.Errorf("PoP %s exited during start; the end of %s:\n%s", p.ID, log, logTail(log, 8))
		}
		if resp, err := adminCall(time.Second, "GET", "http://"+p.Admin+"/v1/net/links", token); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("PoP %s not ready after %v; see %s", p.ID, timeout, filepath.Join(filepath.Dir(p.Config), "log"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	// A zombie (exited, not yet reaped) still answers signal 0.
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	if i := bytes.LastIndexByte(b, ')'); i > 0 && i+2 < len(b) {
		return b[i+2] != 'Z'
	}
	return true
}

func netDown(args []string, stdout, stderr io.Writer) error {
	fs, dir := netFlags("down", stderr)
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	nf, err := readNet(*dir)
	if err != nil {
		return err
	}
	// Signal every process first so that they shut down together.
	pids := nf.pids()
	for _, pid := range pids {
		if alive(pid) {
			syscall.Kill(pid, syscall.SIGTERM)
		}
	}
	for _, pid := range pids {
		stopProcess(pid, syscall.SIGTERM, 15*time.Second)
	}
	if err := os.Remove(filepath.Join(*dir, "net.json")); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "verge: network in %s stopped (data kept in each PoP's directory)\n", *dir)
	return nil
}

// netTarget parses the one PoP or spot-server id a subcommand acts on.
func netTarget(name string, args []string, stderr io.Writer) (dir, id string, nf *netFile, err error) {
	fs, d := netFlags(name, stderr)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return "", "", nil, err
	}
	if len(pos) != 1 {
		return "", "", nil, &usageError{"expected one PoP id"}
	}
	nf, err = readNet(*d)
	return *d, pos[0], nf, err
}

// stopProcess sends sig and waits (bounded) for the process to exit; after
// a SIGTERM that does not end it within wait, it sends SIGKILL.
func stopProcess(pid int, sig syscall.Signal, wait time.Duration) {
	if !alive(pid) {
		return
	}
	syscall.Kill(pid, sig)
	for deadline := time.Now().Add(wait); alive(pid) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if alive(pid) && sig != syscall.SIGKILL {
		stopProcess(pid, syscall.SIGKILL, wait)
	}
}

func netKill(args []string, stdout, stderr io.Writer) error {
	_, id, nf, err := netTarget("kill", args, stderr)
	if err != nil {
		return err
	}
	pid := 0
	if sp := nf.spotServer(id); sp != nil {
		pid = sp.PID
	} else {
		p, err := nf.pop(id)
		if err != nil {
			return err
		}
		pid = p.PID
	}
	if !alive(pid) {
		return fmt.Errorf("%s is not running", id)
	}
	stopProcess(pid, syscall.SIGKILL, 5*time.Second)
	fmt.Fprintf(stdout, "verge: %s killed (SIGKILL)\n", id)
	return nil
}

func netRestart(args []string, stdout, stderr io.Writer) error {
	dir, id, nf, err := netTarget("restart", args, stderr)
	if err != nil {
		return err
	}
	if sp := nf.spotServer(id); sp != nil {
		if alive(sp.PID) {
			return fmt.Errorf("%s is running; kill it first", sp.ID)
		}
		if sp.PID, err = startProcess(sp.Dir, sp.Args); err != nil {
			return err
		}
		if err := writeNet(dir, nf); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "verge: %s restarted (pid %d)\n", sp.ID, sp.PID)
		return nil
	}
	p, err := nf.pop(id)
	if err != nil {
		return err
	}
	stopProcess(p.PID, syscall.SIGTERM, 15*time.Second)
	if err := startPoP(p); err != nil {
		return err
	}
	if err := writeNet(dir, nf); err != nil {
		return err
	}
	if err := waitReady(p, nf.Token, 60*time.Second); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "verge: PoP %s restarted (pid %d)\n", p.ID, p.PID)
	return nil
}

// adminCall sends a body-less request to an admin API with the token.
func adminCall(timeout time.Duration, method, url, token string) (*http.Response, error) {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return (&http.Client{Timeout: timeout}).Do(req)
}

func postAdmin(p netPoP, token, path string) error {
	resp, err := adminCall(5*time.Second, "POST", "http://"+p.Admin+path, token)
	if err != nil {
		return fmt.Errorf("PoP %s: %w", p.ID, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("PoP %s: %s: %s", p.ID, resp.Status, bytes.TrimSpace(b))
	}
	return nil
}

func netPartition(args []string, stdout, stderr io.Writer) error {
	fs, dir := netFlags("partition", stderr)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return &usageError{"expected two PoP ids (A B), or A all"}
	}
	nf, err := readNet(*dir)
	if err != nil {
		return err
	}
	a, err := nf.pop(pos[0])
	if err != nil {
		return err
	}
	var errs []error
	if pos[1] == "all" {
		// Cut both ends of every link of A, so neither side can dial.
		if alive(a.PID) {
			errs = append(errs, postAdmin(*a, nf.Token, "/v1/net/partition?peer=all"))
		}
		for _, q := range nf.PoPs {
			if q.ID != a.ID && alive(q.PID) {
				errs = append(errs, postAdmin(q, nf.Token, "/v1/net/partition?peer="+a.ID))
			}
		}
	} else {
		b, err := nf.pop(pos[1])
		if err != nil {
			return err
		}
		if a.ID == b.ID {
			return &usageError{"a PoP cannot be partitioned from itself"}
		}
		for _, pair := range [][2]*netPoP{{a, b}, {b, a}} {
			if alive(pair[0].PID) {
				errs = append(errs, postAdmin(*pair[0], nf.Token, "/v1/net/partition?peer="+pair[1].ID))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "verge: partitioned %s from %s\n", pos[0], pos[1])
	return nil
}

func netHeal(args []string, stdout, stderr io.Writer) error {
	fs, dir := netFlags("heal", stderr)
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	nf, err := readNet(*dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range nf.PoPs {
		if alive(p.PID) {
			errs = append(errs, postAdmin(p, nf.Token, "/v1/net/heal?peer=all"))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "verge: every link healed")
	return nil
}

func netStatus(args []string, stdout, stderr io.Writer) error {
	fs, dir := netFlags("status", stderr)
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	nf, err := readNet(*dir)
	if err != nil {
		return err
	}
	for _, p := range nf.PoPs {
		if !alive(p.PID) {
			fmt.Fprintf(stdout, "%s: down\n", p.ID)
			continue
		}
		resp, err := adminCall(5*time.Second, "GET", "http://"+p.Admin+"/v1/net/links", nf.Token)
		if err != nil {
			fmt.Fprintf(stdout, "%s: not answering: %v\n", p.ID, err)
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		fmt.Fprintf(stdout, "%s\n", bytes.TrimSpace(b))
	}
	return nil
}

func netRoute(args []string, stdout, stderr io.Writer) error {
	fs, dir := netFlags("route", stderr)
	at := fs.String("at", "", "the client's coordinates, LAT,LON")
	path := fs.String("path", "", "also GET this path from the chosen PoP and print the response")
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	nf, err := readNet(*dir)
	if err != nil {
		return err
	}
	lat, lon, err := parseLatLon(*at)
	if err != nil {
		return &usageError{err.Error()}
	}
	var pops []netsim.PoP
	for _, p := range nf.PoPs {
		pops = append(pops, netsim.PoP{ID: p.ID, At: netsim.Point{Lat: p.Lat, Lon: p.Lon}, HTTP: p.HTTP})
	}
	r := netsim.NewRouter(pops, netsim.RouterOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	chosen, err := r.Route(ctx, netsim.Point{Lat: lat, Lon: lon})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s http://%s (%.0f km)\n", chosen.ID, chosen.HTTP, netsim.Distance(netsim.Point{Lat: lat, Lon: lon}, chosen.At))
	if *path != "" {
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + chosen.HTTP + *path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		fmt.Fprintf(stdout, "%s\n", resp.Status)
		io.Copy(stdout, io.LimitReader(resp.Body, 1<<20))
	}
	return nil
}

func parseLatLon(s string) (float64, float64, error) {
	a, b, ok := strings.Cut(s, ",")
	lat, err1 := strconv.ParseFloat(strings.TrimSpace(a), 64)
	lon, err2 := strconv.ParseFloat(strings.TrimSpace(b), 64)
	if !ok || err1 != nil || err2 != nil || lat < -90 || lat > 90 || lon < -180 || lon > 180 {
		return 0, 0, fmt.Errorf("--at %q: want LAT,LON in degrees, e.g. 48.85,2.35", s)
	}
	return lat, lon, nil
}

// newToken is a random operator token for a new network.
func newToken() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}
