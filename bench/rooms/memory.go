package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/bench/internal/harness"
	"github.com/verge-edge/verge/internal/freeport"
	"github.com/verge-edge/verge/internal/pop"
)

func osStat(p string) (os.FileInfo, error) { return os.Stat(p) }

// onePoP starts examples/chat on one PoP in this process, with rooms that
// hibernate after hibernate.
func onePoP(ctx context.Context, cfg config, hibernate time.Duration) (*pop.PoP, error) {
	m, err := verge.LoadManifest(chatDir())
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(m.Functions[0].Module); err != nil {
		return nil, fmt.Errorf("examples/chat is not built (make examples): %v", err)
	}
	m.Functions[0].Room.HibernateAfter = hibernate
	mesh, _ := freeport.Addr()
	httpAddr, _ := freeport.Addr()
	dir, err := os.MkdirTemp(cfg.tmp, "pop-")
	if err != nil {
		return nil, err
	}
	return pop.Start(ctx, pop.Options{Self: "ord", Network: verge.Network{PoPs: []verge.PoP{{ID: "ord", Region: "us", Central: true, Number: 1, Mesh: mesh, HTTP: httpAddr}}},
		Data: dir, App: m, CacheDir: filepath.Join(cfg.tmp, "cache"), Logger: slog.New(slog.DiscardHandler)})
}

func heap() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

type memoryResult struct {
	Scenario     string  `json:"scenario"`
	Rooms        int     `json:"rooms"`
	HeapBytes    int64   `json:"heap_bytes"`
	PerRoomBytes float64 `json:"per_room_bytes"`
	LoadAvg      string  `json:"load_avg"`
	Note         string  `json:"note"`
}

func (r memoryResult) SummaryLine() string {
	return fmt.Sprintf("memory: %d hibernated rooms: %.0f B of Go heap each (goal <= 4096 B: %s); load %s",
		r.Rooms, r.PerRoomBytes, harness.MetWord(r.PerRoomBytes <= 4096), r.LoadAvg)
}

func memory(ctx context.Context, cfg config) (harness.Result, error) {
	p, err := onePoP(ctx, cfg, 100*time.Millisecond)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	const n = 2000
	base := "http://" + p.HTTPAddr() + "/chat/"
	// One room first, so that the function's instances exist before the
	// measurement.
	get := func(room string) error {
		resp, err := http.Get(base + room + "/history")
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return nil
	}
	if err := get("warm"); err != nil {
		return nil, err
	}
	time.Sleep(time.Second)
	before := heap()
	if err := harness.Workers(ctx, 4, func(ctx context.Context, w int) error {
		for i := w; i < n; i += 4 {
			if err := get(fmt.Sprintf("room-%d", i)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil && ctx.Err() == nil && err != context.Canceled {
		return nil, err
	}
	// Every room hibernates; none is evicted yet (30 s with nobody).
	if err := waitHibernating(p, n+1, 20*time.Second); err != nil {
		return nil, err
	}
	grew := int64(heap()) - int64(before)
	return memoryResult{Scenario: "memory", Rooms: n, HeapBytes: grew, PerRoomBytes: harness.Round(float64(grew)/n, 0), LoadAvg: harness.LoadAvg(),
		Note: "Go heap after GC, with the PoP (owner and centre) in this process: a hibernated room's record at its owner and its lease at the centre; its sockets are counted in the sockets scenario"}, nil
}

func waitHibernating(p *pop.PoP, want int, bound time.Duration) error {
	deadline := time.Now().Add(bound)
	for {
		list := p.Rooms.Local("chat")
		h := 0
		for _, r := range list {
			if r.Hibernating {
				h++
			}
		}
		if h >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d rooms hibernating", h, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type wakeResult struct {
	Scenario     string  `json:"scenario"`
	Samples      int     `json:"samples"`
	LiveMs       float64 `json:"live_echo_median_ms"`
	WokenMs      float64 `json:"woken_echo_median_ms"`
	EventLiveMs  float64 `json:"event_live_median_ms"`
	EventWokenMs float64 `json:"event_woken_median_ms"`
	WakeMs       float64 `json:"wake_ms"`
	LoadAvg      string  `json:"load_avg"`
	Note         string  `json:"note"`
}

func (r wakeResult) SummaryLine() string {
	return fmt.Sprintf("wake: an event that wakes its room takes %.2f ms at the PoP, one on a live room %.2f ms: waking costs %.2f ms (goal <= 1 ms for a Go guest: %s); echoes of a stored message %.2f / %.2f ms; load %s",
		r.EventWokenMs, r.EventLiveMs, r.WakeMs, harness.MetWord(r.WakeMs <= 1), r.WokenMs, r.LiveMs, r.LoadAvg)
}

func wake(ctx context.Context, cfg config) (harness.Result, error) {
	p, err := onePoP(ctx, cfg, 150*time.Millisecond)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, "ws://"+p.HTTPAddr()+"/chat/wake", nil)
	if err != nil {
		return nil, err
	}
	defer ws.Close()
	echo := func(i int) (time.Duration, error) {
		msg := fmt.Sprint("w", i)
		start := time.Now()
		if err := ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			return 0, err
		}
		for {
			ws.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, b, err := ws.ReadMessage()
			if err != nil {
				return 0, err
			}
			if string(b) == msg {
				return time.Since(start), nil
			}
		}
	}
	const n = 30
	var live, woken []time.Duration
	for i := 0; i < 2*n; i++ {
		if _, err := echo(-1 - i); err != nil { // warm up, and make the room live
			return nil, err
		}
	}
	for i := 0; i < n; i++ {
		d, err := echo(i)
		if err != nil {
			return nil, err
		}
		live = append(live, d)
	}
	for i := 0; i < n; i++ {
		if err := waitHibernating(p, 1, 5*time.Second); err != nil {
			return nil, err
		}
		time.Sleep(300 * time.Millisecond) // the spare instance is ready again
		d, err := echo(n + i)
		if err != nil {
			return nil, err
		}
		woken = append(woken, d)
	}
	slices.Sort(live)
	slices.Sort(woken)
	l, w := harness.Percentile(live, 0.5), harness.Percentile(woken, 0.5)
	el, ew := p.Rooms.EventTimes()
	slices.Sort(el)
	slices.Sort(ew)
	pl, pw := harness.Percentile(el, 0.5), harness.Percentile(ew, 0.5)
	return wakeResult{Scenario: "wake", Samples: n, LiveMs: harness.Ms(l), WokenMs: harness.Ms(w),
		EventLiveMs: harness.Ms(pl), EventWokenMs: harness.Ms(pw), WakeMs: harness.Ms(pw - pl), LoadAvg: harness.LoadAvg(),
		Note: "examples/chat (a Go guest), one PoP in this process. wake_ms: median time of an event that woke its room (a fresh instance, the room's storage read, the guest's first call) minus that of an event on a live room, both measured at the PoP; the echo medians add the message's durable write (fsync) before it leaves, and the client's round trip"}, nil
}

var _ = strings.Join
