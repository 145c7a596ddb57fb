package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/admin/admintest"
	"github.com/verge-edge/verge/internal/freeport"
)

// Every admin and network-control endpoint of `verge dev` needs its token.
func TestDevAdminRequiresToken(t *testing.T) {
	e2e(t)
	t.Parallel()
	_, admin := startDevAdmin(t, newDataApp(t), "--admin-token", "tok3n", "--data", t.TempDir())
	admintest.RequireToken(t, admin, "wrong")
}

// serveConfig writes a one-PoP configuration for `verge serve` with the
// admin API on admin and the given token.
func serveConfig(t *testing.T, admin, token string) string {
	t.Helper()
	dir := t.TempDir()
	mesh, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("id = \"c\"\ndata = \"data\"\nadmin_token = %q\n[[pop]]\nid = \"c\"\ncentral = true\nnumber = 1\nmesh = %q\nhttp = \"127.0.0.1:0\"\nadmin = %q\n",
		token, mesh, admin)
	path := filepath.Join(dir, "pop.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Every admin and network-control endpoint of `verge serve` needs its token.
func TestServeAdminRequiresToken(t *testing.T) {
	e2e(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, vergeBin, "serve", "--config", serveConfig(t, "127.0.0.1:0", "tok3n"))
	stdout, _ := cmd.StdoutPipe()
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	adminc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "verge: admin API "); ok {
				adminc <- u
			}
		}
	}()
	select {
	case admin := <-adminc:
		admintest.RequireToken(t, admin, "wrong")
	case <-time.After(60 * time.Second):
		t.Fatalf("verge serve did not start\n%s", stderr)
	}
}

// `verge serve` refuses an admin API beyond loopback without a token, and
// a token nobody could send.
func TestServeRefusesUnprotectedAdmin(t *testing.T) {
	e2e(t)
	t.Parallel()
	for _, c := range []struct{ admin, token, want string }{
		{"0.0.0.0:0", "", "without a token"},
		{"127.0.0.1:0", "   ", "admin_token: the admin token holds a space"},
	} {
		out, err := exec.Command(vergeBin, "serve", "--config", serveConfig(t, c.admin, c.token)).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 || !strings.Contains(string(out), c.want) {
			t.Errorf("admin %s, token %q: %v\n%s\nwant a refusal mentioning %q", c.admin, c.token, err, out, c.want)
		}
	}
}

// `verge dev` refuses a blank token.
func TestDevRefusesBlankToken(t *testing.T) {
	e2e(t)
	t.Parallel()
	out, err := exec.Command(vergeBin, "dev", "--listen", "127.0.0.1:0", "--admin-token", "  ", newDataApp(t)).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "space") {
		t.Fatalf("%v\n%s", err, out)
	}
}
