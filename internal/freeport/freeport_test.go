package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestAddr(t *testing.T) {
	t.Parallel()
	lo, hi := candidates()
	seen := map[string]bool{}
	for range 50 {
		addr, err := Addr()
		if err != nil {
			t.Fatal(err)
		}
		if seen[addr] {
			t.Fatalf("%s handed out twice", addr)
		}
		seen[addr] = true
		_, port, _ := net.SplitHostPort(addr)
		if p, _ := strconv.Atoi(port); p < lo || p > hi {
			t.Fatalf("%s outside %d–%d", addr, lo, hi)
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("the port handed out is not free: %v", err)
		}
		l.Close()
	}
	if elo, _, err := ephemeral(); err == nil && hi >= elo && lo < elo {
		t.Fatalf("range %d–%d overlaps the ephemeral range from %d", lo, hi, elo)
	}
}
