package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/verge-edge/verge/bench/internal/harness"
	"github.com/verge-edge/verge/bench/internal/proc"
)

type socketsResult struct {
	Scenario     string  `json:"scenario"`
	Sockets      int     `json:"sockets"`
	RSSKiB       int64   `json:"rss_kib"`
	PerSocketKiB float64 `json:"per_socket_kib"`
	LoadAvg      string  `json:"load_avg"`
	Note         string  `json:"note"`
}

func (r socketsResult) SummaryLine() string {
	return fmt.Sprintf("sockets: %d idle sockets in one room: %.1f KiB of verge dev's resident memory each (goal <= 8 KiB: %s); load %s",
		r.Sockets, r.PerSocketKiB, harness.MetWord(r.PerSocketKiB <= 8), r.LoadAvg)
}

func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
			return kb
		}
	}
	return 0
}

func sockets(ctx context.Context, cfg config) (harness.Result, error) {
	const n = 10000
	dev, err := proc.Start(ctx, "verge dev", cfg.verge, []string{"dev", "--listen", "127.0.0.1:0", "--cache-dir", filepath.Join(cfg.tmp, "cache"), chatDir()},
		[]string{"XDG_CACHE_HOME=" + cfg.tmp}, filepath.Join(cfg.tmp, "dev-sockets.log"), 3*time.Minute)
	if err != nil {
		return nil, err
	}
	defer dev.Stop()
	url := "ws://" + dev.Addr + "/chat/idle"
	// The room is live (an instance) before the first measurement.
	first, _, err := websocket.DefaultDialer.DialContext(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	defer first.Close()
	first.WriteMessage(websocket.TextMessage, []byte("x"))
	first.ReadMessage()
	time.Sleep(time.Second)
	before := rss(dev.Cmd.Process.Pid)
	conns := make([]*websocket.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < n; i++ {
		ws, _, err := websocket.DefaultDialer.DialContext(ctx, url, nil)
		if err != nil {
			return nil, fmt.Errorf("socket %d: %w", i, err)
		}
		conns = append(conns, ws)
		go func() {
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					return
				}
			}
		}()
	}
	time.Sleep(3 * time.Second)
	after := rss(dev.Cmd.Process.Pid)
	return socketsResult{Scenario: "sockets", Sockets: n, RSSKiB: after - before, PerSocketKiB: harness.Round(float64(after-before)/n, 2), LoadAvg: harness.LoadAvg(),
		Note: "VmRSS of the verge dev process before and after opening the sockets (each got the room's history on connect; the room hibernated meanwhile)"}, nil
}
