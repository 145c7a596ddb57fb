package freeport

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
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

// TestReservedAcrossProcesses: ports a running process has handed out are
// not handed out by another, and are free again once it exits.
//
// Not parallel: between fork and exec the child briefly holds copies of the
// parent's sockets, so a port TestAddr just probed could read as in use.
func TestReservedAcrossProcesses(t *testing.T) {
	ports, stdin, cmd := startChild(t, "1")
	for _, p := range ports {
		if canReserve(p) {
			t.Fatalf("port %d, handed out by the child, could be reserved here", p)
		}
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	for _, p := range ports {
		if !canReserve(p) {
			t.Fatalf("port %d is still reserved after its process exited", p)
		}
	}
}

// TestHeldAfterItsChooserExits: ports a process chose and shared stay
// reserved after it exits for as long as another process holds them, as
// the ports `verge net up` chose stay reserved while any PoP of the
// network runs.
func TestHeldAfterItsChooserExits(t *testing.T) {
	ports, stdin, cmd := startChild(t, "share")
	addrs := make([]string, len(ports))
	for i, p := range ports {
		addrs[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	}
	Hold(addrs...)
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	for _, p := range ports {
		if canReserve(p) {
			t.Fatalf("port %d could be reserved while this process holds it", p)
		}
	}
	mu.Lock()
	for _, p := range ports {
		if !given[p] {
			t.Errorf("port %d is held but could be handed out by this process", p)
		}
	}
	mu.Unlock()
}

// startChild starts this test binary as a child that hands out childPorts
// ports (and, with mode "share", shares them) and holds them until its
// stdin closes.
func startChild(t *testing.T, mode string) ([]int, io.WriteCloser, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "FREEPORT_CHILD="+mode)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	var ports []int
	sc := bufio.NewScanner(stdout)
	for len(ports) < childPorts && sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "port "); ok {
			if p, err := strconv.Atoi(rest); err == nil {
				ports = append(ports, p)
			}
		}
	}
	if len(ports) != childPorts {
		t.Fatalf("the child reported %d ports, want %d", len(ports), childPorts)
	}
	return ports, stdin, cmd
}

const childPorts = 20

// TestMain runs as TestReservedAcrossProcesses's child when asked to: it
// hands out ports, prints them, and holds them until its stdin closes.
func TestMain(m *testing.M) {
	mode := os.Getenv("FREEPORT_CHILD")
	if mode == "" {
		os.Exit(m.Run())
	}
	var ports []string
	for range childPorts {
		addr, err := Addr()
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		_, port, _ := net.SplitHostPort(addr)
		ports = append(ports, port)
	}
	if mode == "share" {
		Share() // before the parent reads the ports and holds them
	}
	for _, port := range ports {
		fmt.Println("port", port)
	}
	io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// canReserve tries to reserve p from a second open file description, as
// another process would, and releases it again.
func canReserve(p int) bool {
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "verge-freeport.lock"), os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK, Start: int64(p), Len: 1}
	return unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk) == nil
}
