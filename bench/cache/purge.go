package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/verge-edge/verge/bench/internal/harness"
)

// The purge scenario: examples/proxy deployed to a `verge net` (separate
// processes, the emulated WAN at real-world latency by default) in front of
// an origin in this process. Each round warms every PoP's cache with one
// object (a HIT everywhere), purges its surrogate key at the central PoP's
// admin API, and takes the time from the call to the last PoP's purge (each
// PoP reports when it purged; all processes share this machine's clock), and
// to the call's answer. It then checks that every PoP misses. Goal: the
// one-way latency to the farthest PoP + ≤ 10 ms.

type purgeConfig struct {
	verge  string
	pops   int
	scale  float64
	rounds int
}

type purgeResult struct {
	Scenario      string    `json:"scenario"`
	PoPs          int       `json:"pops"`
	LatencyScale  float64   `json:"latency_scale"`
	LoadAvg       string    `json:"load_avg"`
	FarthestPoP   string    `json:"farthest_pop"`
	FarthestOneMs float64   `json:"farthest_one_way_ms"`
	AllPurgedMs   []float64 `json:"all_purged_ms"` // call start → last PoP's purge, per round
	AllPurgedMed  float64   `json:"all_purged_median_ms"`
	OverMedMs     float64   `json:"over_farthest_one_way_median_ms"`
	AnswerMs      []float64 `json:"answer_ms"` // call start → the centre's answer (a round trip)
	AnswerMedMs   float64   `json:"answer_median_ms"`
	GoalMet       bool      `json:"goal_met"`
}

func (r purgeResult) SummaryLine() string {
	return fmt.Sprintf("purge (%d PoPs, latency x%g, load %s): every PoP purged %.1f ms median after the call, %.1f ms over the one-way latency to the farthest PoP (%s, %.1f ms) (goal ≤ 10 ms: %s); the call answered in %.1f ms median",
		r.PoPs, r.LatencyScale, r.LoadAvg, r.AllPurgedMed, r.OverMedMs, r.FarthestPoP, r.FarthestOneMs, harness.MetWord(r.GoalMet), r.AnswerMedMs)
}

type benchNet struct {
	dir, token string
	pops       []struct {
		ID      string `json:"id"`
		HTTP    string `json:"http"`
		Admin   string `json:"admin"`
		Central bool   `json:"central"`
	}
}

func (n *benchNet) central() (id, admin string) {
	for _, p := range n.pops {
		if p.Central {
			return p.ID, p.Admin
		}
	}
	return "", ""
}

func (n *benchNet) admin(method, addr, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+addr+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+n.token)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s %s: %s %s", method, path, resp.Status, b)
	}
	return json.Unmarshal(b, out)
}

func purge(ctx context.Context, c purgeConfig) (harness.Result, error) {
	if _, err := os.Stat("examples/proxy/proxy.wasm"); err != nil {
		return nil, fmt.Errorf("examples/proxy is not built (%v): run make examples from the repository's root", err)
	}
	if _, err := os.Stat(c.verge); err != nil {
		return nil, fmt.Errorf("%s: %v (make build)", c.verge, err)
	}
	// The origin.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	osrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Header().Set("Surrogate-Key", "obj "+strings.TrimPrefix(r.URL.Path, "/"))
		io.WriteString(w, "object "+r.URL.Path+"\n")
	})}
	go osrv.Serve(l)
	defer osrv.Close()
	dir, err := os.MkdirTemp("", "verge-bench-purge-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	app := filepath.Join(dir, "proxy")
	if err := os.MkdirAll(app, 0o755); err != nil {
		return nil, err
	}
	mod, err := os.ReadFile("examples/proxy/proxy.wasm")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(app, "proxy.wasm"), mod, 0o644); err != nil {
		return nil, err
	}
	manifest := fmt.Sprintf("name = \"proxy\"\n[[backend]]\nname = \"origin\"\nurl = \"http://%s\"\nallow_private = true\n\n[[function]]\nname = \"proxy\"\nmodule = \"proxy.wasm\"\nexecutor = \"verge\"\nroutes = [\"/*\"]\n", l.Addr())
	if err := os.WriteFile(filepath.Join(app, "verge.toml"), []byte(manifest), 0o644); err != nil {
		return nil, err
	}
	ndir := filepath.Join(dir, "net")
	cmd.Progress("purge: verge net up, %d PoPs, latency x%g", c.pops, c.scale)
	out, err := exec.CommandContext(ctx, c.verge, "net", "up", "--dir", ndir, "--pops", strconv.Itoa(c.pops),
		"--latency-scale", fmt.Sprint(c.scale), "--app", app, "--no-build").CombinedOutput()
	defer exec.Command(c.verge, "net", "down", "--dir", ndir).Run()
	if err != nil {
		return nil, fmt.Errorf("verge net up: %v\n%s", err, out)
	}
	n := &benchNet{dir: ndir}
	b, err := os.ReadFile(filepath.Join(ndir, "net.json"))
	if err != nil {
		return nil, err
	}
	var nf struct {
		Token string `json:"token"`
		PoPs  []struct {
			ID      string `json:"id"`
			HTTP    string `json:"http"`
			Admin   string `json:"admin"`
			Central bool   `json:"central"`
		} `json:"pops"`
	}
	if err := json.Unmarshal(b, &nf); err != nil {
		return nil, err
	}
	n.token = nf.Token
	n.pops = nf.PoPs
	centreID, centreAdmin := n.central()
	var links struct {
		Links []struct {
			Peer     string  `json:"peer"`
			OneWayMs float64 `json:"one_way_ms"`
		} `json:"links"`
	}
	if err := n.admin("GET", centreAdmin, "/v1/net/links", nil, &links); err != nil {
		return nil, err
	}
	r := purgeResult{Scenario: "purge", PoPs: c.pops, LatencyScale: c.scale}
	for _, k := range links.Links {
		if k.OneWayMs > r.FarthestOneMs {
			r.FarthestOneMs, r.FarthestPoP = k.OneWayMs, k.Peer
		}
	}
	client := &http.Client{Timeout: 10 * time.Second}
	get := func(addr, path string) (string, error) {
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			return "", err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.Header.Get("X-Cache"), nil
	}
	for round := 0; round < c.rounds; round++ {
		path := fmt.Sprintf("/obj/%d", round)
		// Warm: a HIT at every PoP (an edge bypasses its cache until it has
		// synced with the centre, right after start).
		for _, p := range n.pops {
			deadline := time.Now().Add(60 * time.Second)
			for {
				if xc, _ := get(p.HTTP, path); xc == "HIT" {
					break
				}
				if time.Now().After(deadline) || ctx.Err() != nil {
					return nil, fmt.Errorf("%s never served %s from its cache", p.ID, path)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		var res struct {
			Purged      map[string]int   `json:"purged"`
			At          map[string]int64 `json:"at"`
			Unreachable []string         `json:"unreachable"`
		}
		start := time.Now()
		if err := n.admin("POST", centreAdmin, "/v1/apps/proxy/cache/purge", map[string]any{"keys": []string{strings.TrimPrefix(path, "/")}}, &res); err != nil {
			return nil, err
		}
		answer := time.Since(start)
		if len(res.Unreachable) > 0 || len(res.At) != c.pops {
			return nil, fmt.Errorf("round %d: purged at %v, unreachable %v", round, res.At, res.Unreachable)
		}
		// A PoP may report 0 entries: its periodic sync can fetch the purge
		// from the centre's log just before the fan-out reaches it. Its
		// "at" is then later than its purge; the check below is what counts.
		var last int64
		for _, at := range res.At {
			last = max(last, at)
		}
		all := time.Duration(last - start.UnixNano())
		for _, p := range n.pops {
			if xc, err := get(p.HTTP, path); err != nil || xc == "HIT" {
				return nil, fmt.Errorf("round %d: %s still answers %s after the purge (%v)", round, p.ID, xc, err)
			}
		}
		r.AllPurgedMs = append(r.AllPurgedMs, harness.Ms(all))
		r.AnswerMs = append(r.AnswerMs, harness.Ms(answer))
		cmd.Progress("purge: round %d: every PoP purged after %v (centre %s, farthest %s %.1f ms one way), answer after %v",
			round+1, all.Round(100*time.Microsecond), centreID, r.FarthestPoP, r.FarthestOneMs, answer.Round(100*time.Microsecond))
	}
	r.LoadAvg = harness.LoadAvg()
	r.AllPurgedMed = harness.Median(slices.Clone(r.AllPurgedMs))
	r.AnswerMedMs = harness.Median(slices.Clone(r.AnswerMs))
	r.OverMedMs = harness.Round(r.AllPurgedMed-r.FarthestOneMs, 1)
	r.GoalMet = r.OverMedMs <= 10
	return r, nil
}
