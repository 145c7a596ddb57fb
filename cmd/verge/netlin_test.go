package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/verge-edge/verge/crdt"
	"github.com/verge-edge/verge/internal/lincheck"
)

// adminTarget drives one PoP's SPOT through its admin API, for lincheck.
type adminTarget struct {
	base   string // http://ADMIN/v1/apps/APP/spot/
	token  string // the network's operator token
	client *http.Client
}

// call sends one request and decodes the answer into out. A 503 certainly
// changed nothing; a 504, or no answer at all, may hide an applied change
// (a read that gets none is simply not recorded).
func (x *adminTarget) call(ctx context.Context, method, path string, in, out any, change bool) (int, error) {
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, x.base+path, body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+x.token)
	resp, err := x.client.Do(req)
	if err != nil {
		if change {
			return 0, fmt.Errorf("%w: %v", lincheck.ErrUnknown, err)
		}
		return 0, fmt.Errorf("%w: %v", lincheck.ErrNotApplied, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	switch resp.StatusCode {
	case 503:
		return 503, fmt.Errorf("%w: %s", lincheck.ErrNotApplied, b)
	case 504:
		if !change {
			return 504, fmt.Errorf("%w: %s", lincheck.ErrNotApplied, b)
		}
		return 504, fmt.Errorf("%w: %s", lincheck.ErrUnknown, b)
	case 200, 409, 404:
		if resp.StatusCode != 404 && json.Unmarshal(b, out) != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: bad answer %s", method, path, b)
		}
		return resp.StatusCode, nil
	}
	return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
}

func (x *adminTarget) Claim(ctx context.Context, ns, key, owner string) (bool, string, error) {
	var r struct {
		Claimed bool
		Owner   string
	}
	_, err := x.call(ctx, "POST", "claims/"+ns+"/"+key, map[string]string{"owner": owner}, &r, true)
	return r.Claimed, r.Owner, err
}

func (x *adminTarget) Release(ctx context.Context, ns, key, owner string) (bool, error) {
	var r struct{ Released bool }
	_, err := x.call(ctx, "POST", "claims/"+ns+"/"+key+"/release", map[string]string{"owner": owner}, &r, true)
	return r.Released, err
}

func (x *adminTarget) Take(ctx context.Context, counter string, n int64) (bool, int64, error) {
	var r struct {
		OK        bool
		Remaining int64
	}
	_, err := x.call(ctx, "POST", "counters/"+counter+"/take", map[string]int64{"n": n}, &r, true)
	return r.OK, r.Remaining, err
}

func (x *adminTarget) Restock(ctx context.Context, counter string, n int64) (int64, error) {
	var r struct{ Remaining int64 }
	_, err := x.call(ctx, "POST", "counters/"+counter+"/restock", map[string]int64{"n": n}, &r, true)
	return r.Remaining, err
}

func (x *adminTarget) Counter(ctx context.Context, counter string) (int64, error) {
	var r struct{ Remaining int64 }
	_, err := x.call(ctx, "GET", "counters/"+counter, nil, &r, false)
	return r.Remaining, err
}

func (x *adminTarget) GetDoc(ctx context.Context, key string) ([]byte, uint64, error) {
	var r struct {
		Doc json.RawMessage
		Rev uint64
	}
	code, err := x.call(ctx, "GET", "docs/"+key, nil, &r, false)
	if err != nil || code == 404 {
		return nil, 0, err
	}
	return r.Doc, r.Rev, nil
}

func (x *adminTarget) UpdateDoc(ctx context.Context, key string, rev uint64, ops []crdt.Op) ([]byte, uint64, error) {
	var r struct {
		Doc json.RawMessage
		Rev uint64
	}
	code, err := x.call(ctx, "POST", "docs/"+key, map[string]any{"rev": rev, "ops": ops}, &r, true)
	if err == nil && code == 409 {
		return nil, 0, &lincheck.ConflictError{Current: r.Rev}
	}
	return r.Doc, r.Rev, err
}

// TestNetSpotLinearizable records claims, takes, restocks and conditional
// updates made by clients at four edge PoPs through their admin APIs, over
// emulated WAN links that lose packets, while one edge is cut off from the
// centre and healed, then the centre is killed (-9) and restarted. The
// history, final reads included, must be linearizable: no key with two
// owners, no stock oversold, no acknowledged change lost.
func TestNetSpotLinearizable(t *testing.T) {
	e2e(t)
	t.Parallel()
	app := filepath.Join("..", "..", "examples", "shop")
	if _, err := os.Stat(filepath.Join(app, "shop.wasm")); err != nil {
		t.Fatalf("examples/shop is not built (%v): run make examples", err)
	}
	n := startNetApp(t, app, 5, "--latency-scale", "0.2", "--loss", "0.01", "--spot-timeout", "1s")
	edges := []string{"sfo", "iad", "fra", "sin"}
	var targets []lincheck.Target
	for _, id := range edges {
		targets = append(targets, &adminTarget{
			base:   "http://" + n.pop(id).Admin + "/v1/apps/shop/spot/",
			token:  n.nf.Token,
			client: &http.Client{Timeout: 10 * time.Second},
		})
	}
	w := &lincheck.Workload{
		ClaimKeys: []string{"k1", "k2", "k3", "k4", "k5", "k6"},
		Counters:  []string{"lin-1", "lin-2"}, // not declared: every take is at the centre
		Docs:      []string{"d1", "d2"},
		Owners:    6,
		Stop:      make(chan struct{}),
	}
	h := lincheck.NewHistory()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, k := range w.Counters {
		call := h.Now()
		rem, err := targets[0].Restock(ctx, k, 30)
		if err != nil {
			t.Fatal(err)
		}
		h.Add(0, lincheck.In{Op: lincheck.Restock, Key: k, N: 30}, call, lincheck.Out{N: rem})
	}

	// The clients run while the test injects the faults (netCmd must run
	// on the test's goroutine).
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(t, ctx, h, targets, 12, 1<<20, time.Minute)
	}()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			close(w.Stop)
			<-done
		}
	}
	defer stop()
	time.Sleep(time.Second)
	netCmd(t, "partition", "--dir", n.dir, "sfo", "ord")
	time.Sleep(1500 * time.Millisecond)
	netCmd(t, "heal", "--dir", n.dir)
	time.Sleep(time.Second)
	netCmd(t, "kill", "--dir", n.dir, "ord")
	time.Sleep(300 * time.Millisecond)
	netCmd(t, "restart", "--dir", n.dir, "ord")
	restarted := h.Now()
	time.Sleep(2 * time.Second)
	stop()

	// Read the final state back (once the edges reach the centre again),
	// into the history: a lost acknowledged change shows there.
	for _, k := range w.Counters {
		eventually(t, "counter "+k, func() bool {
			call := h.Now()
			rem, err := targets[1].Counter(ctx, k)
			if err == nil {
				h.Add(1, lincheck.In{Op: lincheck.Counter, Key: k}, call, lincheck.Out{N: rem})
			}
			return err == nil
		})
	}
	for _, k := range w.ClaimKeys {
		eventually(t, "claim "+k, func() bool {
			call := h.Now()
			claimed, owner, err := targets[2].Claim(ctx, "ns", k, "probe")
			if errors.Is(err, lincheck.ErrUnknown) {
				h.Add(2, lincheck.In{Op: lincheck.Claim, Key: k, Owner: "probe"}, call, lincheck.Out{Unknown: true})
			} else if err == nil {
				h.Add(2, lincheck.In{Op: lincheck.Claim, Key: k, Owner: "probe"}, call, lincheck.Out{OK: claimed, Owner: owner})
			}
			return err == nil
		})
	}
	for _, k := range w.Docs {
		eventually(t, "document "+k, func() bool {
			call := h.Now()
			doc, rev, err := targets[3].GetDoc(ctx, k)
			if err == nil {
				docN, last := lincheck.ParseDoc(t, doc)
				h.Add(3, lincheck.In{Op: lincheck.GetDoc, Key: k}, call, lincheck.Out{Rev: rev, DocN: docN, DocLast: last})
			}
			return err == nil
		})
	}

	after := 0
	for _, op := range h.Ops {
		if op.Return != lincheck.PendingReturn && op.Call > restarted {
			after++
		}
	}
	t.Logf("%d operations, %d pending, %d refused, %d answered after the centre restarted", len(h.Ops), h.Pending(), h.Unavailable.Load(), after)
	if h.Unavailable.Load()+int64(h.Pending()) == 0 {
		t.Error("no operation failed during the partition or while the centre was down: the faults did not happen")
	}
	if after < 20 {
		t.Errorf("only %d operations answered after the centre restarted", after)
	}
	h.Check(t)
}
