package pop

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/wasm/wasmtest"
)

// guestApp is internal/pop/testdata/roomguest as app "chat" (so roomNet's
// helpers apply), routed at /chat/*, with room options opts.
func guestApp(t *testing.T, room string) *verge.Manifest {
	t.Helper()
	dir := t.TempDir()
	mod := wasmtest.BuildGo(t, "internal/pop/testdata/roomguest", true)
	b, err := os.ReadFile(mod)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "g.wasm"), b, 0o644)
	src := "name = \"chat\"\n[[function]]\nname = \"chat\"\nmodule = \"g.wasm\"\nexecutor = \"verge\"\nkind = \"room\"\nroutes = [\"/chat/*\"]\n" +
		"[function.limits]\ncpu_time = \"50ms\"\n[function.room]\n" + room
	os.WriteFile(filepath.Join(dir, "verge.toml"), []byte(src), 0o644)
	m, err := verge.LoadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestRoomGuestFaults: a message whose handler panics, exits or loops past
// its CPU limit fails alone: its writes and messages are dropped, and the
// room goes on with its storage intact.
func TestRoomGuestFaults(t *testing.T) {
	n := newRoomNet(t, guestApp(t, ""), "c")
	ws := n.dial("c", "f")
	if got := read(t, ws, 1); got[0] != "hi 1" {
		t.Fatalf("on connect: %v", got)
	}
	steps := []struct{ send, want string }{
		{"put a 1", "ok a"},
		{"panic", ""},
		{"put b 2", "ok b"},
		{"put-panic x 9", ""},
		{"get x", "value x -"},
		{"exit", ""},
		{"put c 3", "ok c"},
		{"loop", ""},
		{"get a", "value a 1"},
		{"get c", "value c 3"},
	}
	for _, s := range steps {
		n.say(ws, s.send)
		if s.want != "" {
			if got := read(t, ws, 1); got[0] != s.want {
				t.Fatalf("after %q: got %q, want %q", s.send, got[0], s.want)
			}
		}
	}
}

// TestRoomAbusiveClients: a client flooding the room is throttled to its
// rate while another is served promptly; a 100 MB frame closes its socket
// with 1009 as soon as its header arrives, without the PoP reading it.
func TestRoomAbusiveClients(t *testing.T) {
	long(t)
	n := newRoomNet(t, guestApp(t, "messages_per_second = 100\nmax_message = \"64KiB\"\n"), "c")
	flood, calm := n.dial("c", "a"), n.dial("c", "a")
	read(t, flood, 1)
	read(t, calm, 1)
	go func() {
		for i := 0; i < 3000; i++ {
			if flood.WriteMessage(websocket.TextMessage, []byte("flood")) != nil {
				return
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	n.say(calm, "put k v")
	calm.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, b, err := calm.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if string(b) == "ok k" {
			break
		}
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("the calm client waited %v behind the flood", d)
	}
	// At 100 messages a second, a second of flood is about 100 (+ the burst).
	time.Sleep(time.Second)
	list := n.pops["c"].Rooms.Local("chat")
	if len(list) != 1 {
		t.Fatalf("rooms: %+v", list)
	}

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	big, _, err := websocket.DefaultDialer.Dial("ws://"+n.pops["c"].HTTPAddr()+"/chat/a", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	read(t, big, 1)
	w, err := big.NextWriter(websocket.BinaryMessage)
	if err != nil {
		t.Fatal(err)
	}
	// A frame claiming 100 MB: its header goes first, then the bytes
	// trickle; the PoP closes at the header.
	chunk := make([]byte, 1<<20)
	go func() {
		for i := 0; i < 100; i++ {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
		w.Close()
	}()
	if code := closeCode(t, big); code != websocket.CloseMessageTooBig && code != 1006 {
		t.Fatalf("a 100 MB frame: close code %d, want 1009", code)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 32<<20 {
		t.Fatalf("the heap grew by %d MB reading a frame it should refuse", grew>>20)
	}
	n.say(calm, "put k2 v")
	calm.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, b, err := calm.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if string(b) == "ok k2" {
			break
		}
	}
}

// TestRoomAlarms: examples/counter's alarms fire with nobody connected,
// and survive a restart of the PoP (the centre wakes a room whose alarm is
// due and that nobody owns).
func TestRoomAlarms(t *testing.T) {
	long(t)
	m, err := verge.LoadManifest(filepath.Join(wasmtest.Root(t), "examples", "counter"))
	if err != nil {
		t.Fatal(err)
	}
	m.Functions[0].Module = wasmtest.BuildGo(t, "examples/counter", true)
	m.Functions[0].Env = map[string]string{"RESET_AFTER": "1500ms", "TICK_EVERY": "200ms"}
	m.Functions[0].Room.HibernateAfter = 200 * time.Millisecond
	n := newRoomNet(t, m, "c")
	get := func() string {
		resp, err := http.Get("http://" + n.pops["c"].HTTPAddr() + "/counter/r")
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+n.pops["c"].HTTPAddr()+"/counter/r", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, ws, 1); got[0] != "count 0" {
		t.Fatalf("on connect: %v", got)
	}
	for range 3 {
		ws.WriteMessage(websocket.TextMessage, []byte("+1"))
	}
	ticks := 0
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for ticks < 2 {
		_, b, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if string(b) == "tick 3" {
			ticks++
		}
	}
	ws.Close()
	if g := get(); !strings.Contains(g, `"count":3`) {
		t.Fatalf("count: %s", g)
	}
	// Nobody connected: the reset alarm fires anyway.
	eventually(t, "the reset alarm", func() bool { return strings.Contains(get(), `"count":0`) })

	// Set it going again, then stop the PoP and start it anew: the alarm
	// still fires.
	resp, err := http.Post("http://"+n.pops["c"].HTTPAddr()+"/counter/r", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if g := get(); !strings.Contains(g, `"count":1`) || !strings.Contains(g, `"reset"`) {
		t.Fatalf("after a POST: %s", g)
	}
	n.pops["c"].Close()
	n.start("c")
	start := time.Now()
	// Nobody asks for the room: the centre wakes it when its alarm is due.
	eventually(t, "the room woken for its alarm", func() bool { return len(n.pops["c"].Rooms.Local("counter")) == 1 })
	t.Logf("the room was woken %v after the PoP started again", time.Since(start).Round(time.Millisecond))
	eventually(t, "the reset alarm after a restart", func() bool { return strings.Contains(get(), `"count":0`) })
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestRoomOutputGate: a room owned by an edge PoP broadcasts a stored
// message only once the centre has its copy. With the centre gone, a
// message is stored at the owner but never leaves; the owner gives the
// room up (4002) when its session may have ended, and the room restarted
// later holds exactly what clients saw.
func TestRoomOutputGate(t *testing.T) {
	long(t)
	n := newRoomNet(t, chatApp(t, 0), "c", "a")
	ws := n.dial("a", "gate")
	n.say(ws, "seen")
	if got := read(t, ws, 1); got[0] != "seen" {
		t.Fatalf("before: %v", got)
	}
	n.pops["c"].Close()
	delete(n.pops, "c")
	n.say(ws, "never seen")
	ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		_, b, err := ws.ReadMessage()
		if err != nil {
			ce, ok := err.(*websocket.CloseError)
			if !ok || ce.Code != 4002 {
				t.Fatalf("the room ended with %v, want close 4002", err)
			}
			break
		}
		t.Fatalf("a message left before the centre had its write: %q", b)
	}
	n.start("c")
	n.waitLinks()
	ws = n.dial("a", "gate")
	got := read(t, ws, 1)
	if got[0] != "seen" {
		t.Fatalf("history after the centre came back: %v", got)
	}
	if h := n.history("a", "gate"); len(h) != 1 {
		t.Fatalf("history %v: the unacknowledged message survived", h)
	}
}
