// Package freeport picks loopback TCP ports for servers whose addresses
// must be known before they listen: the PoPs of a network name each other
// in their configuration (static membership), so `verge net`, the tests
// and the benchmarks choose every port up front.
//
// A port taken by listening on port 0 and closing again comes from the
// kernel's ephemeral range, the range outgoing connections take their local
// ports from: on a busy machine another process's connection can take it
// before its owner binds it ("address in use"). Ports here come from below
// that range, at random, and are never handed out twice by one process.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

const (
	minPort  = 10000
	attempts = 200
)

var (
	mu    sync.Mutex
	given = map[int]bool{}
)

// Addr returns "127.0.0.1:PORT" for a port that is free now, outside the
// ephemeral range.
func Addr() (string, error) {
	lo, hi := candidates()
	mu.Lock()
	defer mu.Unlock()
	for range attempts {
		p := lo + rand.IntN(hi-lo+1)
		if given[p] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue // in use
		}
		l.Close()
		given[p] = true
		return l.Addr().String(), nil
	}
	return "", fmt.Errorf("freeport: no free loopback port in %d–%d after %d attempts", lo, hi, attempts)
}

// candidates is the range ports are drawn from: below the ephemeral range
// when there is room, else above it.
func candidates() (lo, hi int) {
	elo, ehi, err := ephemeral()
	switch {
	case err != nil:
		return minPort, 32767 // Linux's default range starts at 32768
	case elo-1-minPort >= 1000:
		return minPort, elo - 1
	case 65535-ehi >= 1000:
		return ehi + 1, 65535
	}
	return minPort, 65535 // no room outside: take the chance
}

func ephemeral() (lo, hi int, err error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, errors.New("unexpected ip_local_port_range")
	}
	if lo, err = strconv.Atoi(f[0]); err == nil {
		hi, err = strconv.Atoi(f[1])
	}
	return lo, hi, err
}
