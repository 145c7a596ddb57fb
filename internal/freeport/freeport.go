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
//
// Nor by two processes at once: `go test ./...` runs several test binaries
// side by side, each picking ports for servers that bind a moment later. A
// port handed out is reserved with a lock on its byte of one shared file
// (an open-file-description lock on $TMPDIR/verge-freeport.lock), held until
// the process exits; other processes skip it. The file stays, one byte per
// machine; where it cannot be opened, reservations are per process only.
// A reservation can be shared (Share, Hold): the PoPs of a network all hold
// all its ports, so they stay reserved while any of them runs.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

const (
	minPort  = 10000
	attempts = 200
)

var (
	mu    sync.Mutex
	given = map[int]bool{}
	locks *os.File // the shared reservation file; opened on first use
	tried bool
)

// Addr returns "127.0.0.1:PORT" for a port that is free now, outside the
// ephemeral range.
func Addr() (string, error) {
	lo, hi := candidates()
	mu.Lock()
	defer mu.Unlock()
	for range attempts {
		p := lo + rand.IntN(hi-lo+1)
		if given[p] || !reserve(p) {
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

// Share turns this process's reservations into shared ones, which other
// processes can join with Hold. `verge net up` calls it before starting
// the PoPs it chose ports for, so that they can hold those ports after it
// exits.
func Share() {
	mu.Lock()
	defer mu.Unlock()
	for p := range given {
		lock(p, unix.F_RDLCK)
	}
}

// Hold keeps the ports of addrs (host:port) reserved while this process
// lives, shared with any other process holding them, and never hands them
// out itself. Every PoP of a network holds every port of the network: a
// PoP killed with -9 drops its own hold, and without the others' its ports
// could be handed to another process before `verge net restart` binds them
// again. Addresses without a numeric port are ignored; the hold is
// advisory, like every reservation here, so failing to take it is not an
// error.
func Hold(addrs ...string) {
	mu.Lock()
	defer mu.Unlock()
	for _, a := range addrs {
		_, port, err := net.SplitHostPort(a)
		if err != nil {
			continue
		}
		p, err := strconv.Atoi(port)
		if err != nil || p <= 0 || p > 65535 {
			continue
		}
		lock(p, unix.F_RDLCK)
		given[p] = true
	}
}

// reserve locks port p's byte of the shared file, so no other process
// hands p out while this one lives. Called with mu held.
func reserve(p int) bool { return lock(p, unix.F_WRLCK) }

// lock takes (or converts this process's lock to) a lock of type typ on
// port p's byte of the shared file, reporting whether it holds it. Called
// with mu held.
func lock(p int, typ int16) bool {
	if !tried {
		tried = true
		f, err := os.OpenFile(filepath.Join(os.TempDir(), "verge-freeport.lock"), os.O_RDWR|os.O_CREATE, 0o666)
		if err == nil {
			locks = f // kept open: closing it would drop every reservation
		}
	}
	if locks == nil {
		return true
	}
	lk := unix.Flock_t{Type: typ, Whence: 0, Start: int64(p), Len: 1}
	return unix.FcntlFlock(locks.Fd(), unix.F_OFD_SETLK, &lk) == nil
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
