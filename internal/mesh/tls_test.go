package mesh

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// testPKI returns a server and client TLS config sharing one CA, with a
// certificate valid for 127.0.0.1 (what the mesh dials).
func testPKI(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "verge test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "pop"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	server = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13}
	client = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS13}
	return server, client
}

func TestTLS(t *testing.T) {
	t.Parallel()
	srvTLS, cliTLS := testPKI(t)
	addrs := map[string]string{"a": freeAddr(t), "b": freeAddr(t)}
	ms := map[string]*Mesh{}
	for id, other := range map[string]string{"a": "b", "b": "a"} {
		m, err := Start(Options{ID: id, Listen: addrs[id], Peers: []Peer{{ID: other, Addr: addrs[other]}},
			ServerTLS: srvTLS, ClientTLS: cliTLS, PingInterval: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		ms[id] = m
	}
	if err := ms["b"].HandleRequests("hi", func(string, []byte) ([]byte, error) { return []byte("hello"), nil }); err != nil {
		t.Fatal(err)
	}
	waitUp(t, ms["a"], "b", true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := ms["a"].Request(ctx, "b", "hi", nil); err != nil || string(out) != "hello" {
		t.Fatalf("request over TLS: %q, %v", out, err)
	}
	// A peer without TLS, or without a certificate the CA signed, is refused.
	if nc, err := nats.Connect("nats://"+addrs["b"], nats.Timeout(2*time.Second)); err == nil {
		nc.Close()
		t.Fatal("a plain-TCP client connected to a PoP that requires TLS")
	}
	if nc, err := nats.Connect("tls://"+addrs["b"], nats.Timeout(2*time.Second), nats.Secure(&tls.Config{RootCAs: cliTLS.RootCAs, MinVersion: tls.VersionTLS13})); err == nil {
		nc.Close()
		t.Fatal("a client without a certificate connected to a PoP that requires one")
	}
}
