package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verge-edge/verge/client/room"
)

// End-to-end tests of rooms through the verge binary: examples/chat on a
// `verge net` of three PoPs (ord, the centre; sfo; iad), real clients (the
// Go client library, partysocket from Node, the chat page in Chromium) and
// faults (a move, a partition, kill -9 of the owner).

func chatNet(t *testing.T, extra ...string) *testNet {
	t.Helper()
	app := filepath.Join("..", "..", "examples", "chat")
	if _, err := os.Stat(filepath.Join(app, "chat.wasm")); err != nil {
		t.Fatalf("%s is not built (%v): run make examples", app, err)
	}
	return startNetApp(t, app, 3, append([]string{"--latency-scale", "0.2"}, extra...)...)
}

func (n *testNet) ws(id string) string { return "ws://" + n.pop(id).HTTP }

// urls is every PoP's WebSocket base, first's first.
func (n *testNet) urls(first string) []string {
	out := []string{n.ws(first)}
	for _, p := range n.nf.PoPs {
		if p.ID != first {
			out = append(out, n.ws(p.ID))
		}
	}
	return out
}

func (n *testNet) chatHistory(id, name string) []string {
	n.t.Helper()
	var h []string
	eventually(n.t, "the history at "+id, func() bool {
		resp, err := http.Get("http://" + n.pop(id).HTTP + "/chat/" + name + "/history")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == 200 && json.Unmarshal(b, &h) == nil
	})
	return h
}

// chatter is a Go client of examples/chat that records what it receives.
type chatter struct {
	t    *testing.T
	c    *room.Client
	mu   sync.Mutex
	got  []room.Message
	open map[int]time.Time // connection number → when its first message came
}

func newChatter(t *testing.T, urls []string, name string) *chatter {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := room.Dial(ctx, urls, "/chat/"+name, room.Options{MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ch := &chatter{t: t, c: c, open: map[int]time.Time{}}
	t.Cleanup(func() { c.Close() })
	go func() {
		for m := range c.Messages() {
			ch.mu.Lock()
			ch.got = append(ch.got, m)
			if _, ok := ch.open[m.Conn]; !ok {
				ch.open[m.Conn] = time.Now()
			}
			ch.mu.Unlock()
		}
	}()
	return ch
}

// texts are the messages received on connections from conn on.
func (ch *chatter) texts(conn int) []string {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	var out []string
	for _, m := range ch.got {
		if m.Conn >= conn {
			out = append(out, string(m.Data))
		}
	}
	return out
}

// live is the messages received on the last connection (its history, then
// what followed).
func (ch *chatter) live() []string { return ch.texts(ch.c.Conn()) }

func (ch *chatter) say(s string) {
	ch.t.Helper()
	eventually(ch.t, "sending "+s, func() bool { return ch.c.SendText(s) == nil })
}

// waitFor waits until the current connection has received want.
func (ch *chatter) waitFor(want ...string) {
	ch.t.Helper()
	eventually(ch.t, fmt.Sprintf("%v among %v", want, ch.live()), func() bool {
		got := ch.live()
		for _, w := range want {
			if !slices.Contains(got, w) {
				return false
			}
		}
		return true
	})
}

func vergeRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(vergeBin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("verge %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestRoomsNet: Go clients at three PoPs chat in one order through the
// owner; `verge rooms list` and `move`; a partition between a client's PoP
// and the owner.
func TestRoomsNet(t *testing.T) {
	e2e(t)
	n := chatNet(t)
	a := newChatter(t, n.urls("sfo"), "lobby")
	a.say("a0")
	a.waitFor("a0") // the room starts at sfo, its first client's PoP
	b, c := newChatter(t, n.urls("iad"), "lobby"), newChatter(t, n.urls("ord"), "lobby")
	b.waitFor("a0")
	c.waitFor("a0")
	var want []string
	for i := range 5 {
		for _, x := range []struct {
			ch   *chatter
			name string
		}{{a, "a"}, {b, "b"}, {c, "c"}} {
			msg := fmt.Sprint(x.name, i+1)
			x.ch.say(msg)
			want = append(want, msg)
		}
	}
	for _, ch := range []*chatter{a, b, c} {
		ch.waitFor(want...)
	}
	if fmt.Sprint(a.live()) != fmt.Sprint(b.live()) || fmt.Sprint(b.live()) != fmt.Sprint(c.live()) {
		t.Fatalf("clients saw different orders:\n%v\n%v\n%v", a.live(), b.live(), c.live())
	}
	if h := n.chatHistory("iad", "lobby"); fmt.Sprint(h) != fmt.Sprint(a.live()) {
		t.Fatalf("history %v, delivered %v", h, a.live())
	}
	if out := vergeRun(t, "rooms", "list", "chat", "--net", n.dir); !strings.Contains(out, "lobby") || !strings.Contains(out, "sfo") {
		t.Fatalf("verge rooms list: %s", out)
	}

	// Move the room to iad: every client sees 4001 once, reconnects, and
	// finds the whole history there.
	before := a.live()
	vergeRun(t, "rooms", "move", "chat", "lobby", "iad", "--net", n.dir)
	for _, ch := range []*chatter{a, b, c} {
		eventually(t, "a reconnection after the move", func() bool { return ch.c.Conn() == 2 && len(ch.live()) >= len(before) })
		if codes := ch.c.Codes(); len(codes) != 1 || codes[0] != 4001 {
			t.Fatalf("close codes after a move: %v", codes)
		}
		if got := ch.live(); fmt.Sprint(got[:len(before)]) != fmt.Sprint(before) {
			t.Fatalf("history after the move: %v, want %v", got, before)
		}
	}
	if out := vergeRun(t, "rooms", "list", "chat", "--net", n.dir); !strings.Contains(out, "iad") {
		t.Fatalf("verge rooms list after the move: %s", out)
	}

	// Cut sfo (a's PoP) from iad (the owner): a is told 4003, reconnects
	// through another PoP, and misses nothing the others said meanwhile.
	netCmd(t, "partition", "--dir", n.dir, "sfo", "iad")
	eventually(t, "a's reconnection around the partition", func() bool { return a.c.Conn() == 3 && len(a.live()) > 0 })
	if codes := a.c.Codes(); codes[len(codes)-1] != 4003 {
		t.Fatalf("close code when the owner is out of reach: %v", codes)
	}
	b.say("during")
	a.waitFor("during")
	a.say("from-a")
	b.waitFor("from-a")
	c.waitFor("during", "from-a")
	netCmd(t, "heal", "--dir", n.dir)
	if h := n.chatHistory("sfo", "lobby"); fmt.Sprint(h) != fmt.Sprint(b.live()[len(b.live())-len(h):]) {
		t.Fatalf("history %v, b saw %v", h, b.live())
	}
}

// TestRoomsKillOwner: 20 clients at three PoPs; the owner is killed -9;
// every client is back in the room within 5 s, at another PoP, and every
// message any client received is in the history.
func TestRoomsKillOwner(t *testing.T) {
	e2e(t)
	n := chatNet(t)
	homes := []string{"sfo", "iad", "ord"}
	first := newChatter(t, n.urls("sfo"), "big")
	first.say("hello")
	first.waitFor("hello")
	clients := []*chatter{first}
	for i := 1; i < 20; i++ {
		clients = append(clients, newChatter(t, n.urls(homes[i%3]), "big"))
	}
	for i, ch := range clients {
		ch.say(fmt.Sprint("m", i))
	}
	for _, ch := range clients {
		ch.waitFor("m0", "m19")
	}
	// Keep talking while the owner dies.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, ch := range clients[:5] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				ch.c.SendText(fmt.Sprintf("k%d-%d", i, j))
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	killed := time.Now()
	netCmd(t, "kill", "--dir", n.dir, "sfo")
	for i, ch := range clients {
		eventually(t, fmt.Sprintf("client %d back in the room", i), func() bool {
			ch.mu.Lock()
			defer ch.mu.Unlock()
			_, ok := ch.open[ch.c.Conn()]
			return ch.c.Conn() >= 2 && ok
		})
	}
	close(stop)
	wg.Wait()
	var worst time.Duration
	for i, ch := range clients {
		ch.mu.Lock()
		back := ch.open[ch.c.Conn()].Sub(killed)
		ch.mu.Unlock()
		worst = max(worst, back)
		if back > 5*time.Second {
			t.Errorf("client %d was back in the room after %v", i, back)
		}
	}
	t.Logf("every client back within %v of kill -9", worst.Round(time.Millisecond))
	first.say("after")
	for _, ch := range clients {
		ch.waitFor("after")
	}
	// No message any client received is missing from the history (the
	// chat keeps its last 100: compare with what is that recent).
	h := n.chatHistory("ord", "big")
	have := map[string]bool{}
	for _, m := range h {
		have[m] = true
	}
	for i, ch := range clients {
		got := ch.texts(1)
		idx := slices.Index(got, h[0])
		if idx < 0 {
			continue // everything it saw is older than the history's window
		}
		for _, m := range got[idx:] {
			if !have[m] {
				t.Errorf("client %d received %q, which the history after the failover lacks", i, m)
			}
		}
	}
	if out := vergeRun(t, "rooms", "list", "chat", "--net", n.dir); strings.Contains(out, "sfo") {
		t.Fatalf("the dead PoP still owns a room: %s", out)
	}
}

// nodeTests is the directory of the Node clients (tests/node), installed by
// scripts/setup.sh.
func nodeTests(t *testing.T) string {
	t.Helper()
	dir, _ := filepath.Abs(filepath.Join("..", "..", "tests", "node"))
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "partysocket")); err != nil {
		t.Fatalf("the Node test clients are not installed (%v): run scripts/setup.sh (npm ci in tests/node)", err)
	}
	return dir
}

func runNode(t *testing.T, dir, script string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{filepath.Join(dir, script)}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node %s: %v\n%s", script, err, out)
	}
	return string(out)
}

// TestRoomsPartySocket: partysocket (PartyKit's reconnecting client) from
// Node chats through two PoPs.
func TestRoomsPartySocket(t *testing.T) {
	e2e(t)
	dir := nodeTests(t)
	n := chatNet(t)
	out := runNode(t, dir, "partysocket_chat.mjs", n.pop("sfo").HTTP, n.pop("iad").HTTP, "party")
	if !strings.Contains(out, "ok ") {
		t.Fatalf("partysocket: %s", out)
	}
	t.Log(strings.TrimSpace(out))
}

// TestRoomsPartySocketMove: two partysocket clients, at sfo and iad, send
// without pause while the room moves to iad and back to sfo; nothing is
// lost or doubled, the order is one, and each saw one 4001 per move (the
// script checks; partysocket_move.mjs).
func TestRoomsPartySocketMove(t *testing.T) {
	e2e(t)
	dir := nodeTests(t)
	n := chatNet(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join(dir, "partysocket_move.mjs"), n.pop("sfo").HTTP, n.pop("iad").HTTP, "moving")
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cancel()
	lines := bufio.NewScanner(stdout)
	waitLine := func(want string) {
		t.Helper()
		for lines.Scan() {
			if strings.TrimSpace(lines.Text()) == want {
				return
			}
			t.Log(lines.Text())
		}
		cancel()
		cmd.Wait()
		t.Fatalf("node exited before printing %q: %s", want, stderr.String())
	}
	waitLine("sending")
	vergeRun(t, "rooms", "move", "chat", "moving", "iad", "--net", n.dir)
	waitLine("reopened")
	vergeRun(t, "rooms", "move", "chat", "moving", "sfo", "--net", n.dir)
	var last string
	for lines.Scan() {
		last = lines.Text()
	}
	if err := cmd.Wait(); err != nil || !strings.HasPrefix(last, "ok ") {
		t.Fatalf("partysocket across two moves: %v %s\n%s", err, last, stderr.String())
	}
	t.Log(last)
}

// TestRoomsChromium: the chat page in two headless Chromium pages, one
// through sfo and one through iad, exchanging messages.
func TestRoomsChromium(t *testing.T) {
	e2e(t)
	dir := nodeTests(t)
	if _, err := os.Stat("/usr/bin/chromium"); err != nil {
		t.Fatalf("Chromium is not installed (%v): run scripts/setup.sh", err)
	}
	n := chatNet(t)
	out := runNode(t, dir, "chromium_chat.mjs", n.pop("sfo").HTTP, n.pop("iad").HTTP, "tabs")
	if !strings.Contains(out, "ok ") {
		t.Fatalf("chromium: %s", out)
	}
	t.Log(strings.TrimSpace(out))
	if h := n.chatHistory("ord", "tabs"); !slices.Contains(h, "hello from tab 1") || !slices.Contains(h, "hello from tab 2") {
		t.Fatalf("history after the browsers chatted: %v", h)
	}
}

// rssKiB is a process's resident memory.
func rssKiB(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
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

// TestRoomsIdleSockets: `verge dev` holds 10,000 idle sockets in one room
// (each got its greeting on connect) and a broadcast still reaches them
// all; the PoP's memory per idle socket is logged.
func TestRoomsIdleSockets(t *testing.T) {
	e2e(t)
	const conns = 10000
	dir := t.TempDir()
	out := filepath.Join(dir, "g.wasm")
	build := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, "./internal/pop/testdata/roomguest")
	build.Dir = filepath.Join("..", "..")
	build.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the guest: %v\n%s", err, b)
	}
	os.WriteFile(filepath.Join(dir, "verge.toml"), []byte("name = \"idle\"\n[[function]]\nname = \"g\"\nmodule = \"g.wasm\"\nexecutor = \"verge\"\nkind = \"room\"\nroutes = [\"/r/*\"]\n"+
		"[function.room]\nmax_connections = 10000\nhibernate_after = \"1s\"\n"), 0o644)
	p := startDev(t, dir)
	base := "ws" + strings.TrimPrefix(p.url, "http")
	before := rssKiB(t, p.cmd.Process.Pid)
	type client struct {
		c   *room.Client
		got chan string
	}
	clients := make([]*room.Client, 0, conns)
	received := make(chan struct{}, conns)
	var mu sync.Mutex
	greeted := 0
	t.Cleanup(func() {
		for _, c := range clients {
			go c.Close()
		}
	})
	for i := 0; i < conns; i++ {
		c, err := room.Dial(context.Background(), []string{base}, "/r/idle", room.Options{NoReconnect: true})
		if err != nil {
			t.Fatalf("socket %d: %v", i, err)
		}
		clients = append(clients, c)
		go func() {
			for m := range c.Messages() {
				switch s := string(m.Data); {
				case strings.HasPrefix(s, "hi "):
					mu.Lock()
					greeted++
					mu.Unlock()
				case s == "to everyone":
					received <- struct{}{}
				}
			}
		}()
	}
	eventually(t, "every socket greeted", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return greeted == conns
	})
	time.Sleep(2 * time.Second) // the room hibernates; the sockets stay
	after := rssKiB(t, p.cmd.Process.Pid)
	t.Logf("%d idle sockets: %d KiB more resident memory, %.1f KiB per socket", conns, after-before, float64(after-before)/conns)
	if err := clients[0].SendText("to everyone"); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(60 * time.Second)
	for i := 0; i < conns; i++ {
		select {
		case <-received:
		case <-deadline:
			t.Fatalf("the broadcast reached %d of %d sockets", i, conns)
		}
	}
}
