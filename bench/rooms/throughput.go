package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/verge-edge/verge/bench/internal/harness"
	"github.com/verge-edge/verge/bench/internal/proc"
)

type throughputResult struct {
	Scenario   string    `json:"scenario"`
	Conns      int       `json:"conns"`
	Window     int       `json:"window"`
	DurationS  float64   `json:"duration_s"`
	Runs       int       `json:"runs"`
	Verge      []float64 `json:"verge_msgs_per_s"`
	Reference  []float64 `json:"reference_msgs_per_s"`
	VergeMed   float64   `json:"verge_median"`
	RefMed     float64   `json:"reference_median"`
	Ratio      float64   `json:"ratio"`
	LoadBefore string    `json:"load_avg_before"`
	LoadAfter  string    `json:"load_avg_after"`
	Note       string    `json:"note"`
}

func (r throughputResult) SummaryLine() string {
	return fmt.Sprintf("throughput: %d conns in one room: examples/chat under verge dev %.0f msgs/s, gorilla/websocket reference %.0f msgs/s: %.2fx (goal >= 0.8x: %s); medians of %d runs; load %s -> %s",
		r.Conns, r.VergeMed, r.RefMed, r.Ratio, harness.MetWord(r.Ratio >= 0.8), r.Runs, r.LoadBefore, r.LoadAfter)
}

func throughput(ctx context.Context, cfg config) (harness.Result, error) {
	res := throughputResult{Scenario: "throughput", Conns: cfg.conns, Window: cfg.window, DurationS: cfg.duration.Seconds(), Runs: cfg.runs,
		LoadBefore: harness.LoadAvg(), Note: "messages delivered per second: every message to every connection of the room, sender included"}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	ref, err := proc.Start(ctx, "reference", self, nil, []string{childEnv + "=1"}, filepath.Join(cfg.tmp, "reference.log"), 30*time.Second)
	if err != nil {
		return nil, err
	}
	defer ref.Stop()
	dev, err := proc.Start(ctx, "verge dev", cfg.verge, []string{"dev", "--listen", "127.0.0.1:0", "--cache-dir", filepath.Join(cfg.tmp, "cache"), chatDir()},
		[]string{"XDG_CACHE_HOME=" + cfg.tmp}, filepath.Join(cfg.tmp, "dev.log"), 3*time.Minute)
	if err != nil {
		return nil, err
	}
	defer dev.Stop()
	for run := 0; run < cfg.runs; run++ {
		for _, side := range []struct {
			c   *proc.Child
			out *[]float64
		}{{ref, &res.Reference}, {dev, &res.Verge}} {
			rate, err := broadcastRun(ctx, "ws://"+side.c.Addr+"/chat/", fmt.Sprintf("bench-%d-%d", run, time.Now().UnixNano()), cfg)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", side.c.Name, err)
			}
			bench.Progress("run %d %s: %.0f msgs/s", run+1, side.c.Name, rate)
			*side.out = append(*side.out, harness.Round(rate, 0))
			side.c.Quiesce(10 * time.Second)
		}
	}
	res.VergeMed, res.RefMed = harness.Median(res.Verge), harness.Median(res.Reference)
	if res.RefMed > 0 {
		res.Ratio = harness.Round(res.VergeMed/res.RefMed, 3)
	}
	res.LoadAfter = harness.LoadAvg()
	return res, nil
}

// broadcastRun connects cfg.conns clients to one room and has each keep
// cfg.window of its own messages in flight for cfg.duration (after a
// second's warm-up); it returns the messages all clients received per
// second.
func broadcastRun(ctx context.Context, base, room string, cfg config) (float64, error) {
	conns := make([]*websocket.Conn, cfg.conns)
	for i := range conns {
		ws, _, err := websocket.DefaultDialer.DialContext(ctx, base+room, nil)
		if err != nil {
			return 0, err
		}
		defer ws.Close()
		conns[i] = ws
	}
	// Everyone is in the room once everyone received a first message.
	if err := conns[0].WriteMessage(websocket.TextMessage, []byte("ready")); err != nil {
		return 0, err
	}
	for _, ws := range conns {
		ws.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, _, err := ws.ReadMessage(); err != nil {
			return 0, fmt.Errorf("joining: %w", err)
		}
	}
	var counting atomic.Bool
	var received atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errc := make(chan error, 2*len(conns))
	for i, ws := range conns {
		credit := make(chan struct{}, cfg.window)
		for range cfg.window {
			credit <- struct{}{}
		}
		mine := "c" + strconv.Itoa(i) + ":"
		wg.Add(2)
		go func() { // reader
			defer wg.Done()
			for {
				ws.SetReadDeadline(time.Now().Add(30 * time.Second))
				_, b, err := ws.ReadMessage()
				if err != nil {
					select {
					case <-stop:
					default:
						errc <- err
					}
					return
				}
				if counting.Load() {
					received.Add(1)
				}
				if strings.HasPrefix(string(b), mine) {
					select {
					case credit <- struct{}{}:
					default:
					}
				}
			}
		}()
		go func() { // writer
			defer wg.Done()
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				case <-credit:
				}
				ws.SetWriteDeadline(time.Now().Add(30 * time.Second))
				if err := ws.WriteMessage(websocket.TextMessage, []byte(mine+strconv.Itoa(seq))); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
	}
	counting.Store(true)
	start := time.Now()
	select {
	case <-time.After(cfg.duration):
	case <-ctx.Done():
	case err := <-errc:
		close(stop)
		return 0, err
	}
	n := received.Load()
	elapsed := time.Since(start)
	counting.Store(false)
	close(stop)
	for _, ws := range conns {
		ws.Close()
	}
	wg.Wait()
	return float64(n) / elapsed.Seconds(), ctx.Err()
}
