package pop

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	roomclient "github.com/verge-edge/verge/client/room"
)

// TestChatMoveLosesNothing moves a room there and back while clients at
// three PoPs send to it without pause: every message a client sent (and
// was not refused) is in the history exactly once, in its sender's order;
// every client saw the same order; each saw one 4001 per move.
func TestChatMoveLosesNothing(t *testing.T) {
	long(t)
	n := newRoomNet(t, chatApp(t, 0), "c", "a", "b")
	const room, per = "mv", 30 // 3 × 30 messages: the history keeps 100

	type client struct {
		pop     string
		c       *roomclient.Client
		mu      sync.Mutex
		seen    []string
		sent    []string
		refused int
	}
	var clients []*client
	for _, pop := range []string{"a", "b", "c"} {
		cl := &client{pop: pop}
		c, err := roomclient.Dial(context.Background(), []string{"ws://" + n.pops[pop].HTTPAddr()}, "/chat/"+room,
			roomclient.Options{MaxBackoff: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		cl.c = c
		go func() {
			for m := range c.Messages() {
				cl.mu.Lock()
				cl.seen = append(cl.seen, string(m.Data))
				cl.mu.Unlock()
			}
		}()
		clients = append(clients, cl)
		if pop == "a" {
			n.waitConns("a", room, 1) // the room lives at a
		}
	}
	n.waitConns("a", room, 3)

	// Senders pause (at most 20 s) before messages 10 and 20 until the
	// move they wait for has begun, so that both moves happen while all
	// of them send, fast.
	moved := []chan struct{}{make(chan struct{}), make(chan struct{})}
	var senders sync.WaitGroup
	for _, cl := range clients {
		senders.Add(1)
		go func() {
			defer senders.Done()
			for i := 0; i < per; i++ {
				if i == 10 || i == 20 {
					select {
					case <-moved[i/10-1]:
					case <-time.After(20 * time.Second):
					}
				}
				m := fmt.Sprintf("%s-%02d", cl.pop, i)
				if err := cl.c.SendText(m); err != nil {
					cl.mu.Lock()
					cl.refused++
					cl.mu.Unlock()
				} else {
					cl.mu.Lock()
					cl.sent = append(cl.sent, m)
					cl.mu.Unlock()
				}
				if i < 10 {
					time.Sleep(10 * time.Millisecond)
				} else {
					// Back to back while the room moves, a little
					// apart after: frames arrive before, during and after
					// each hand-over.
					time.Sleep(time.Duration(i%10) * 200 * time.Microsecond)
				}
			}
		}()
	}
	sentAtLeast := func(k int) {
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			ok := true
			for _, cl := range clients {
				cl.mu.Lock()
				ok = ok && len(cl.sent)+cl.refused >= k
				cl.mu.Unlock()
			}
			if ok {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	for i, to := range []string{"b", "a"} {
		sentAtLeast(10*i + 8)
		close(moved[i])
		if err := n.pops["c"].Rooms.Move(context.Background(), roomsKey(room), to); err != nil {
			t.Fatalf("move to %s: %v", to, err)
		}
		if o := n.owner(room); o != to {
			t.Fatalf("owner after the move %q, want %s", o, to)
		}
	}
	senders.Wait()

	var all []string
	for _, cl := range clients {
		all = append(all, cl.sent...)
	}
	// Every client sees every message (live, or in the history it gets on
	// reconnecting).
	deadline := time.Now().Add(15 * time.Second)
	for {
		done := true
		for _, cl := range clients {
			cl.mu.Lock()
			done = done && len(dedupe(cl.seen)) >= len(all)
			cl.mu.Unlock()
		}
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	h := n.history("c", room)
	count := map[string]int{}
	for _, m := range h {
		count[m]++
	}
	for _, m := range all {
		if count[m] != 1 {
			t.Errorf("message %s is in the history %d times", m, count[m])
		}
	}
	if len(h) != len(all) {
		t.Errorf("history has %d messages, clients sent %d: %v", len(h), len(all), h)
	}
	// Each sender's messages keep their order.
	last := map[string]string{}
	for _, m := range h {
		p := m[:strings.IndexByte(m, '-')]
		if last[p] > m {
			t.Errorf("%s after %s in the history", m, last[p])
		}
		last[p] = m
	}
	for _, cl := range clients {
		cl.mu.Lock()
		seen, refused := dedupe(cl.seen), cl.refused
		cl.mu.Unlock()
		if !slices.Equal(seen, h) {
			t.Errorf("client at %s saw %v\nthe history is %v", cl.pop, seen, h)
		}
		if codes := cl.c.Codes(); !slices.Equal(codes, []int{4001, 4001}) {
			t.Errorf("client at %s: close codes %v, want one 4001 per move", cl.pop, codes)
		}
		t.Logf("client at %s: sent %d, refused %d", cl.pop, len(cl.sent), refused)
		cl.c.Close()
	}
	t.Logf("messages held during the moves and run by the new owner: a %d, b %d", n.pops["a"].Rooms.HeldFrames(), n.pops["b"].Rooms.HeldFrames())
}

// dedupe keeps the first of each message (a reconnecting client gets the
// history again).
func dedupe(ms []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range ms {
		if !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	return out
}
