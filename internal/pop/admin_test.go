package pop

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/admin/admintest"
	"github.com/verge-edge/verge/internal/gateway"
	"github.com/verge-edge/verge/internal/netsim"
)

// startOperated starts a central PoP and an edge PoP over an emulated WAN,
// the edge's admin API behind token, and returns the edge.
func startOperated(t *testing.T, token string, server gateway.ServerOptions) *PoP {
	t.Helper()
	n := verge.Network{PoPs: []verge.PoP{
		{ID: "c", Region: "us", Central: true, Number: 1, Mesh: freeAddr(t)},
		{ID: "a", Region: "eu", Number: 2, Mesh: freeAddr(t), Admin: "127.0.0.1:0"},
	}}
	dir := t.TempDir()
	var edge *PoP
	for _, q := range n.PoPs {
		l := netsim.NewLayer(netsim.Point{}, netsim.Model{})
		for _, r := range n.PoPs {
			if r.ID != q.ID {
				if err := l.AddPeer(r.ID, r.Mesh, netsim.Point{}); err != nil {
					t.Fatal(err)
				}
			}
		}
		shop := &verge.Manifest{Name: "shop", Collections: []verge.Collection{{Name: "carts", Scope: verge.Scope{Kind: verge.ScopeLocal}}}}
		p, err := Start(context.Background(), Options{Self: q.ID, Network: n, Data: dir + "/" + q.ID, AdminToken: token, App: shop,
			Layer: l, Server: server, NoSync: true, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		if q.ID == "a" {
			edge = p
		}
	}
	return edge
}

// Every admin and network-control endpoint needs the token; an
// unauthenticated partition cuts nothing.
func TestOperatorAPIRequiresToken(t *testing.T) {
	t.Parallel()
	p := startOperated(t, "s3cret", gateway.ServerOptions{})
	base := "http://" + p.AdminAddr()
	for deadline := time.Now().Add(10 * time.Second); !p.Mesh.Up("c"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the link to the centre did not come up")
		}
	}
	admintest.RequireToken(t, base, "wrong")
	for _, l := range p.opts.Layer.Links() {
		if !l.Up {
			t.Fatalf("an unauthenticated request cut the link to %s", l.Peer)
		}
	}
	// With the token: errors are JSON with a kind, a wrong method is 405,
	// and a partition must name its peer.
	for _, c := range []struct {
		method, path string
		code         int
		kind         string
	}{
		{"POST", "/v1/net/partition", 400, "invalid"},
		{"POST", "/v1/net/heal", 400, "invalid"},
		{"POST", "/v1/net/partition?peer=nope", 404, "not_found"},
		{"GET", "/v1/net/partition?peer=all", 405, "method_not_allowed"},
		{"POST", "/v1/net/links", 405, "method_not_allowed"},
		{"GET", "/v1/net/else", 404, "not_found"},
		{"GET", "/v1/apps/shop/spot/claims/users/ada", 405, "method_not_allowed"},
		{"GET", "/v1/apps/shop/spot/counters/brush/take", 405, "method_not_allowed"},
		{"POST", "/v1/apps/shop/collections", 405, "method_not_allowed"},
		{"POST", "/v1/apps/shop/rooms", 405, "method_not_allowed"},
		{"GET", "/v1/apps/shop/rooms/chat/lobby/move", 405, "method_not_allowed"},
		{"POST", "/v1/apps/shop/rooms/chat/lobby/move", 400, "invalid"},
	} {
		code, body := admintest.Do(t, c.method, base+c.path, "s3cret", "")
		var eb struct{ Error, Kind string }
		if code != c.code || json.Unmarshal([]byte(body), &eb) != nil || eb.Kind != c.kind || eb.Error == "" {
			t.Errorf("%s %s: %d %s; want %d with a JSON error of kind %s", c.method, c.path, code, body, c.code, c.kind)
		}
	}
	// A SPOT body that encoding/json would quietly repair is refused.
	if code, body := admintest.Do(t, "POST", base+"/v1/apps/shop/spot/claims/users/ada", "s3cret", `{"owner":"\ud800"}`); code != 400 || !strings.Contains(body, "lone UTF-16 surrogate") {
		t.Errorf("claim for a lone surrogate: %d %s, want 400", code, body)
	}
	if code, body := admintest.Do(t, "POST", base+"/v1/net/partition?peer=c", "s3cret", ""); code != 204 {
		t.Fatalf("partition with the token: %d %s", code, body)
	}
}

// A token nobody can send, and an admin API beyond loopback without a
// token, are refused at start.
func TestAdminTokenChecks(t *testing.T) {
	t.Parallel()
	n := verge.Network{PoPs: []verge.PoP{{ID: "c", Central: true, Number: 1, Mesh: "127.0.0.1:0", Admin: "0.0.0.0:0"}}}
	for token, want := range map[string]string{"": "without a token", "   ": "space", "a b": "space"} {
		_, err := Start(context.Background(), Options{Self: "c", Network: n, Data: t.TempDir(), AdminToken: token, Logger: slog.New(slog.DiscardHandler)})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("token %q with the admin API on 0.0.0.0: %v, want an error mentioning %q", token, err, want)
		}
	}
}

// A client that declares a body and trickles it is cut off at the read
// timeout instead of holding a connection forever.
func TestAdminReadTimeout(t *testing.T) {
	t.Parallel()
	p := startOperated(t, "s3cret", gateway.ServerOptions{ReadTimeout: 500 * time.Millisecond})
	conn, err := net.Dial("tcp", p.AdminAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "PUT /v1/apps/shop/collections/carts/docs/k HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\nContent-Length: 100\r\n\r\n")
	start := time.Now()
	closed := make(chan struct{})
	go func() {
		io.Copy(io.Discard, conn) // returns when the server closes the connection
		close(closed)
	}()
	for i := 0; i < 100; i++ { // a byte every 100 ms: 10 s unless cut
		select {
		case <-closed:
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("cut after %v", d)
			}
			return
		case <-time.After(100 * time.Millisecond):
			conn.Write([]byte("x"))
		}
	}
	t.Fatalf("a trickling client still holds its connection after %v", time.Since(start))
}
