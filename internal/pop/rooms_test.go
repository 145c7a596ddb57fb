package pop

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/rooms"
	"github.com/verge-edge/verge/internal/wasm/wasmtest"
)

// roomNet is PoPs in this process serving examples/chat (built once).
type roomNet struct {
	t    *testing.T
	net  verge.Network
	dirs map[string]string
	app  *verge.Manifest
	pops map[string]*PoP
	ttl  time.Duration
}

func chatApp(t *testing.T, hibernate time.Duration) *verge.Manifest {
	t.Helper()
	m, err := verge.LoadManifest(filepath.Join(wasmtest.Root(t), "examples", "chat"))
	if err != nil {
		t.Fatal(err)
	}
	m.Functions[0].Module = wasmtest.BuildGo(t, "examples/chat", true)
	if hibernate > 0 {
		m.Functions[0].Room.HibernateAfter = hibernate
	}
	return m
}

func newRoomNet(t *testing.T, app *verge.Manifest, ids ...string) *roomNet {
	t.Helper()
	n := &roomNet{t: t, app: app, dirs: map[string]string{}, pops: map[string]*PoP{}, ttl: 2 * time.Second}
	base := t.TempDir()
	for i, id := range ids {
		n.net.PoPs = append(n.net.PoPs, verge.PoP{ID: id, Region: "r", Lat: float64(i), Central: i == 0, Number: uint16(i + 1),
			Mesh: freeAddr(t), HTTP: freeAddr(t), Admin: freeAddr(t)})
		n.dirs[id] = filepath.Join(base, id)
	}
	for _, id := range ids {
		n.start(id)
	}
	n.waitLinks()
	return n
}

func (n *roomNet) start(id string) *PoP {
	n.t.Helper()
	p, err := Start(context.Background(), Options{Self: id, Network: n.net, Data: n.dirs[id], CacheDir: "-", App: n.app,
		AdminToken: "tok", RoomLeaseTTL: n.ttl, Logger: testLogger()})
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(p.Close)
	n.pops[id] = p
	return p
}

func (n *roomNet) waitLinks() {
	waitLinked(n.t, n.pops)
}

func (n *roomNet) dial(id, room string) *websocket.Conn {
	n.t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial("ws://"+n.pops[id].HTTPAddr()+"/chat/"+room, nil)
	if err != nil {
		n.t.Fatalf("dial %s: %v (%v)", id, err, resp)
	}
	n.t.Cleanup(func() { ws.Close() })
	return ws
}

// waitConns waits until the room's owner id counts want connections.
func (n *roomNet) waitConns(id, room string, want int) {
	n.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, r := range n.pops[id].Rooms.Local("chat") {
			if r.Room == room && r.Connections == want {
				return
			}
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("room %s at %s: never %d connections: %+v", room, id, want, n.pops[id].Rooms.Local("chat"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (n *roomNet) history(id, room string) []string {
	n.t.Helper()
	resp, err := http.Get("http://" + n.pops[id].HTTPAddr() + "/chat/" + room + "/history")
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var h []string
	if err := json.Unmarshal(b, &h); err != nil {
		n.t.Fatalf("history at %s: %d %s", id, resp.StatusCode, b)
	}
	return h
}

// read reads n text messages (bounded).
func read(t *testing.T, ws *websocket.Conn, n int) []string {
	t.Helper()
	var out []string
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for len(out) < n {
		_, b, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("after %d of %d messages: %v", len(out), n, err)
		}
		out = append(out, string(b))
	}
	return out
}

func TestChatOnePoP(t *testing.T) {
	n := newRoomNet(t, chatApp(t, 300*time.Millisecond), "c")
	a, b := n.dial("c", "lobby"), n.dial("c", "lobby")
	n.waitConns("c", "lobby", 2)
	for i := range 5 {
		w := a
		if i%2 == 1 {
			w = b
		}
		if err := w.WriteMessage(websocket.TextMessage, []byte(fmt.Sprint("m", i))); err != nil {
			t.Fatal(err)
		}
	}
	ra, rb := read(t, a, 5), read(t, b, 5)
	if fmt.Sprint(ra) != fmt.Sprint(rb) || len(ra) != 5 {
		t.Fatalf("orders differ: %v / %v", ra, rb)
	}
	if h := n.history("c", "lobby"); fmt.Sprint(h) != fmt.Sprint(ra) {
		t.Fatalf("history %v, delivered %v", h, ra)
	}
	// The room is in the PoP's metrics.
	_, fams := scrapeMetrics(t, n.pops["c"].AdminAddr(), "tok")
	for _, c := range []struct {
		name   string
		labels map[string]string
		min    float64
	}{
		{"verge_room_sockets", map[string]string{"app": "chat"}, 2},
		{"verge_rooms", map[string]string{"app": "chat", "state": "live"}, 1},
		{"verge_room_events_total", map[string]string{"app": "chat", "event": "message"}, 5},
		{"verge_room_events_total", map[string]string{"app": "chat", "event": "connect"}, 2},
	} {
		if v, ok := metricValue(fams, c.name, c.labels); !ok || v < c.min {
			t.Errorf("%s%v = %v (found %v), want at least %v", c.name, c.labels, v, ok, c.min)
		}
	}
	// A third client gets the history first.
	c := n.dial("c", "lobby")
	if got := read(t, c, 5); fmt.Sprint(got) != fmt.Sprint(ra) {
		t.Fatalf("history on connect: %v", got)
	}
	// Hibernation: no event for 300 ms gives the instance back; the next
	// message wakes the room from storage.
	deadline := time.Now().Add(5 * time.Second)
	for {
		list := n.pops["c"].Rooms.Local("chat")
		if len(list) == 1 && list[0].Hibernating && list[0].Connections == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the room did not hibernate: %+v", list)
		}
		time.Sleep(50 * time.Millisecond)
	}
	a.WriteMessage(websocket.TextMessage, []byte("after"))
	for _, ws := range []*websocket.Conn{a, b, c} {
		if got := read(t, ws, 1); got[0] != "after" {
			t.Fatalf("after waking: %v", got)
		}
	}
	if h := n.history("c", "lobby"); len(h) != 6 || h[5] != "after" {
		t.Fatalf("history after waking: %v", h)
	}
}

// closeCode reads until the socket closes and returns the close code.
func closeCode(t *testing.T, ws *websocket.Conn) int {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			if ce, ok := err.(*websocket.CloseError); ok {
				return ce.Code
			}
			return 1006
		}
	}
}

func (n *roomNet) say(ws *websocket.Conn, msg string) {
	n.t.Helper()
	if err := ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		n.t.Fatal(err)
	}
}

func (n *roomNet) owner(room string) string {
	n.t.Helper()
	list, err := n.pops["c"].Rooms.List(context.Background(), "chat")
	if err != nil {
		n.t.Fatal(err)
	}
	for _, r := range list {
		if r.Room == room {
			return r.Owner
		}
	}
	return ""
}

func TestChatThreePoPs(t *testing.T) {
	long(t)
	n := newRoomNet(t, chatApp(t, 0), "c", "a", "b")
	ca := n.dial("a", "r1")
	n.say(ca, "one")
	read(t, ca, 1) // the room lives at a, its first client's PoP
	cb := n.dial("b", "r1")
	if got := read(t, cb, 1); got[0] != "one" {
		t.Fatalf("history at b: %v", got)
	}
	n.say(cb, "two")
	n.say(ca, "three")
	ra, rb := read(t, ca, 2), read(t, cb, 2)
	if fmt.Sprint(ra) != fmt.Sprint(rb) {
		t.Fatalf("orders differ: %v / %v", ra, rb)
	}
	want := append([]string{"one"}, ra...)
	if h := n.history("c", "r1"); fmt.Sprint(h) != fmt.Sprint(want) {
		t.Fatalf("history through the centre: %v, want %v", h, want)
	}
	if o := n.owner("r1"); o != "a" {
		t.Fatalf("owner %q, want a", o)
	}

	// Move the room to b: both clients see 4001, reconnect, and find
	// everything at b.
	if err := n.pops["c"].Rooms.Move(context.Background(), roomsKey("r1"), "b"); err != nil {
		t.Fatal(err)
	}
	if c1, c2 := closeCode(t, ca), closeCode(t, cb); c1 != 4001 || c2 != 4001 {
		t.Fatalf("close codes after a move: %d %d", c1, c2)
	}
	ca, cb = n.dial("a", "r1"), n.dial("b", "r1")
	read(t, ca, 3)
	read(t, cb, 3)
	n.say(ca, "four")
	read(t, ca, 1)
	read(t, cb, 1)
	if o := n.owner("r1"); o != "b" {
		t.Fatalf("owner after the move %q, want b", o)
	}

	// The owner stops: its client and the relayed one are told to
	// reconnect, and the room restarts at a with its history.
	n.pops["b"].Close()
	delete(n.pops, "b")
	if c := closeCode(t, ca); c != 4002 && c != 4003 {
		t.Fatalf("close code at a when the owner stopped: %d", c)
	}
	ca = n.dial("a", "r1")
	want = append(want, "four")
	if got := read(t, ca, 4); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("history after the owner stopped: %v, want %v", got, want)
	}
	if o := n.owner("r1"); o != "a" {
		t.Fatalf("owner after failover %q, want a", o)
	}
}

func roomsKey(room string) rooms.Key { return rooms.Key{App: "chat", Fn: "chat", Room: room} }

func testLogger() *slog.Logger {
	if os.Getenv("VERGE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// long skips a test of several PoPs or many seconds under -short.
func long(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("several PoPs or seconds of waiting; run without -short")
	}
}
