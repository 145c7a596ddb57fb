package spot

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// childEnv, when set to "dir port", makes the test binary a central PoP:
// a NATS server with JetStream in dir on 127.0.0.1:port, the engine and
// Serve on prefix "spot". It prints "READY <port>" and runs until killed.
const childEnv = "VERGE_SPOT_TEST_CENTRAL"

func TestMain(m *testing.M) {
	if v := os.Getenv(childEnv); v != "" {
		runCentral(v)
		return
	}
	os.Exit(m.Run())
}

func runCentral(arg string) {
	dir, portS, _ := strings.Cut(arg, " ")
	port, err := strconv.Atoi(portS)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad", childEnv, arg)
		os.Exit(2)
	}
	opts := ServerOptions(dir)
	if port != 0 {
		opts.Port = port
	}
	s, err := StartServer(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	nc, err := nats.Connect("", nats.InProcessServer(s))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	e, err := NewJetStream(ctx, nc, Config{})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if _, err := Serve(nc, "spot", e); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("READY %d\n", s.Addr().(*net.TCPAddr).Port)
	// Die with the parent: a test that fails or is killed must not leave
	// a server behind.
	go func() {
		buf := make([]byte, 1)
		os.Stdin.Read(buf)
		os.Exit(0)
	}()
	select {}
}

// central is a central PoP running in a child process.
type central struct {
	t     testing.TB
	dir   string
	port  int
	cmd   *exec.Cmd
	stdin io.Closer
}

func startCentral(t testing.TB, dir string, port int) *central {
	t.Helper()
	c := &central{t: t, dir: dir, port: port}
	if err := c.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.kill)
	return c
}

// start starts the central process, retrying while the port may still be
// held by the sockets of a killed one.
func (c *central) start() error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := c.try()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("central server did not start: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *central) try() error {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d", childEnv, c.dir, c.port))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	c.stdin = stdin // kept open: closing it (or our death) stops the child
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- line
	}()
	select {
	case line := <-ready:
		var port int
		if _, err := fmt.Sscanf(line, "READY %d", &port); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return fmt.Errorf("child said %q", line)
		}
		c.port, c.cmd = port, cmd
		return nil
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		return fmt.Errorf("child not ready after 30s")
	}
}

// kill9 kills the central process without warning.
func (c *central) kill() {
	if c.cmd == nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGKILL)
	c.cmd.Wait()
	c.stdin.Close()
	c.cmd = nil
}

func (c *central) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", c.port) }

// newServer starts an in-process central server for one test.
func newServer(t testing.TB) *server.Server {
	t.Helper()
	s, err := StartServer(ServerOptions(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

func connect(t testing.TB, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	opts = append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(20 * time.Millisecond)}, opts...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func inProcess(t testing.TB, s *server.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect("", nats.InProcessServer(s))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func newEngine(t testing.TB, s *server.Server, cfg Config) *JetStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e, err := NewJetStream(ctx, inProcess(t, s), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// serve runs Serve for the test on an in-process connection.
func serve(t testing.TB, s *server.Server, e Engine, prefix string) {
	t.Helper()
	stop, err := Serve(inProcess(t, s), prefix, e)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
