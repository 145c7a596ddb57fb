package netsim

import (
	"errors"
	"net"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

func startNATS(t *testing.T) *natsserver.Server {
	t.Helper()
	s, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready after 10s")
	}
	return s
}

var _ nats.CustomDialer = (*Layer)(nil)

// TestNATSThroughLayer: PoP a's client reaches PoP b's embedded server
// through a's Layer, with the options the mesh uses.
func TestNATSThroughLayer(t *testing.T) {
	t.Parallel()
	const oneWay = 10 * ms
	srvA, srvB := startNATS(t), startNATS(t)

	// b's own responder connects locally, undelayed.
	resp, err := nats.Connect(srvB.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(resp.Close)
	if _, err := resp.Subscribe("echo", func(m *nats.Msg) { m.Respond(m.Data) }); err != nil {
		t.Fatal(err)
	}
	if err := resp.Flush(); err != nil {
		t.Fatal(err)
	}

	l := NewLayer(paris, Model{Base: oneWay, Scale: 1})
	addrB := srvB.Addr().(*net.TCPAddr).String()
	if err := l.AddPeer("b", addrB, paris); err != nil {
		t.Fatal(err)
	}
	disconnected := make(chan error, 16)
	reconnected := make(chan struct{}, 16)
	nc, err := nats.Connect(srvB.ClientURL(),
		nats.SetCustomDialer(l),
		nats.ReconnectWait(100*ms),
		nats.ReconnectJitter(0, 0),
		nats.MaxReconnects(-1),
		nats.PingInterval(time.Second),
		nats.MaxPingsOutstanding(2),
		nats.ReconnectBufSize(-1), // publish while disconnected fails instead of buffering
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { disconnected <- err }),
		nats.ReconnectHandler(func(*nats.Conn) { reconnected <- struct{}{} }),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)

	// The local server, for contrast: no Layer in the path.
	local, err := nats.Connect(srvA.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(local.Close)

	request := func() (time.Duration, error) {
		start := time.Now()
		m, err := nc.Request("echo", []byte("hi"), 5*time.Second)
		if err == nil && string(m.Data) != "hi" {
			t.Fatalf("reply %q, want hi", m.Data)
		}
		return time.Since(start), err
	}
	var rtt0 time.Duration
	for i := range 3 {
		rtt, err := request()
		rtt0 = rtt
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if rtt < 2*oneWay {
			t.Errorf("request %d took %v, want >= 2 x %v", i, rtt, oneWay)
		}
	}
	if s := l.Links()[0]; s.Conns != 1 || s.Out.Bytes == 0 || s.In.Bytes == 0 {
		t.Errorf("link b: %+v, want the client's one connection with traffic both ways", s)
	}

	t.Logf("request/reply through the layer: %v (one-way %v)", rtt0, oneWay)
	cut := time.Now()
	if err := l.Partition("b"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-disconnected:
		t.Logf("disconnect seen %v after Partition", time.Since(cut))
	case <-time.After(5 * time.Second):
		t.Fatal("client saw no disconnect 5s after Partition")
	}
	// While the link is down a request fails at once, not by timing out.
	failed := time.Now()
	if _, err := request(); err == nil || errors.Is(err, nats.ErrTimeout) {
		t.Errorf("request during partition: %v, want an immediate failure", err)
	} else {
		t.Logf("request during partition failed in %v: %v", time.Since(failed), err)
	}
	if s := nc.Status(); s == nats.CONNECTED {
		t.Errorf("client status during partition: %v", s)
	}
	// Let a few redials fail against the partition.
	time.Sleep(300 * ms)

	healed := time.Now()
	if err := l.Heal("b"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reconnected:
		t.Logf("reconnected %v after Heal", time.Since(healed))
	case <-time.After(10 * time.Second):
		t.Fatal("client did not reconnect within 10s of Heal")
	}
	rtt, err := request()
	if err != nil {
		t.Fatalf("request after heal: %v", err)
	}
	if rtt < 2*oneWay {
		t.Errorf("request after heal took %v, want >= 2 x %v", rtt, oneWay)
	}
	if _, err := local.Request("nobody", nil, time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("local server unaffected by the Layer: got %v, want ErrNoResponders", err)
	}
}
