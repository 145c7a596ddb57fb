package mesh

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/freeport"
)

// freeAddr reserves a loopback port (peers must know each other's address
// before they start).
func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

func startMesh(t *testing.T, ids ...string) map[string]*Mesh {
	t.Helper()
	addrs := map[string]string{}
	for _, id := range ids {
		addrs[id] = freeAddr(t)
	}
	out := map[string]*Mesh{}
	for _, id := range ids {
		var peers []Peer
		for _, p := range ids {
			if p != id {
				peers = append(peers, Peer{ID: p, Addr: addrs[p]})
			}
		}
		m, err := Start(Options{ID: id, Listen: addrs[id], Peers: peers, PingInterval: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		out[id] = m
	}
	return out
}

func waitUp(t *testing.T, m *Mesh, peer string, up bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for m.Up(peer) != up {
		if time.Now().After(deadline) {
			t.Fatalf("%s -> %s: up=%v after 10 s, want %v", m.ID(), peer, !up, up)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPushAndRequest(t *testing.T) {
	t.Parallel()
	ms := startMesh(t, "a", "b", "c")
	for id, m := range ms {
		id := id
		if err := m.HandlePushes("echo", func(from string, data []byte) ([]byte, error) {
			if string(data) == "fail" {
				return nil, errors.New("refused")
			}
			return []byte(fmt.Sprintf("%s got %s from %s", id, data, from)), nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := m.HandleRequests("whoami", func(_ string, data []byte) ([]byte, error) {
			return []byte(id + ":" + string(data)), nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range ms {
		for _, p := range m.Peers() {
			waitUp(t, m, p, true)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Subscriptions travel over connections that may have just come up.
	var got []byte
	var err error
	for i := 0; i < 100; i++ {
		if got, err = ms["a"].Push(ctx, "b", "echo", []byte("x")); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || string(got) != "b got x from a" {
		t.Fatalf("push a->b: %q, %v", got, err)
	}
	if _, err := ms["c"].Push(ctx, "a", "echo", []byte("fail")); err == nil || err.Error() != "peer: refused" {
		t.Fatalf("push of a failing handler: %v, want the handler's error", err)
	}
	if got, err := ms["c"].Request(ctx, "b", "whoami", []byte("q")); err != nil || string(got) != "b:q" {
		t.Fatalf("request c->b: %q, %v", got, err)
	}
	if _, err := ms["c"].Request(ctx, "zz", "whoami", nil); err == nil {
		t.Fatal("a request to an unknown peer succeeded")
	}

	// A PoP that stops: its peers see the link go down and fail fast.
	ms["b"].Close()
	waitUp(t, ms["a"], "b", false)
	start := time.Now()
	if _, err := ms["a"].Request(ctx, "b", "whoami", nil); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("request to a stopped PoP: %v, want ErrUnreachable", err)
	}
	if _, err := ms["a"].Push(ctx, "b", "echo", nil); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("push to a stopped PoP: %v, want ErrUnreachable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("failing fast took %v", d)
	}
}

func TestValidID(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"", "a.b", "a b", "a*", "é"} {
		if ValidID(bad) == nil {
			t.Errorf("ValidID(%q) = nil", bad)
		}
	}
	if err := ValidID("sfo-1_x"); err != nil {
		t.Error(err)
	}
}
