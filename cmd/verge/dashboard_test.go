package main

import (
	"bufio"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browser is a headless Chromium (Debian's, /usr/bin/chromium) for the test.
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := exec.LookPath("chromium"); err != nil {
		t.Fatalf("chromium is not installed (scripts/setup.sh installs it): %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath("chromium"), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelB(); cancelA() })
	return ctx
}

// waitFor evaluates js in the page until it returns true (bounded).
func waitFor(t *testing.T, ctx context.Context, what, js string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ok, err := chromedp.Run(cctx, chromedp.Evaluate[bool](js))
		cancel()
		if err == nil && ok {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			html, _ := chromedp.Run(ctx, chromedp.OuterHTML("main"))
			t.Fatalf("the dashboard did not show %s within %v (err %v):\n%.2000s", what, limit, err, html)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDashboard loads the dashboard of a 3-PoP network in headless
// Chromium: it shows every PoP, marks a link verge net partitions, and
// shows a new version reaching every PoP.
func TestDashboard(t *testing.T) {
	e2e(t)
	t.Parallel()
	n := startNetApp(t, watApp(t, "site", "hello.wasm", ""), 3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dash := exec.CommandContext(ctx, vergeBin, "dashboard", "--net", n.dir, "--listen", "127.0.0.1:0")
	out, _ := dash.StdoutPipe()
	if err := dash.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); dash.Wait() })
	url := ""
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if u, ok := strings.CutPrefix(sc.Text(), "verge: dashboard "); ok {
			url = u
			break
		}
	}
	if url == "" {
		t.Fatal("the dashboard did not start")
	}
	b := browser(t)
	if _, err := chromedp.Run(b, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, b, "every PoP, up", `["ord","sfo","iad"].every(id => document.querySelector('g.pop.up[data-pop="'+id+'"]'))`, 30*time.Second)
	waitFor(t, b, "the links, none partitioned", `document.querySelectorAll('line.link').length === 3 && !document.querySelector('line.link.partitioned')`, 30*time.Second)

	netCmd(t, "partition", "--dir", n.dir, "sfo", "ord")
	took := waitFor(t, b, "the partitioned link", `!!document.querySelector('line.link.partitioned[data-link="ord-sfo"]')`, 20*time.Second)
	t.Logf("the partition showed after %v", took)
	netCmd(t, "heal", "--dir", n.dir)
	waitFor(t, b, "the healed link", `!document.querySelector('line.link.partitioned')`, 30*time.Second)

	v2dir := watApp(t, "site", "bye.wasm", "")
	v2 := versionOf(t, v2dir)
	if code, out := vergeCmd(t, "deploy", "--net", n.dir, "--gate", "0", v2dir); code != 0 {
		t.Fatalf("deploy: %d %s", code, out)
	}
	took = waitFor(t, b, "the new version at every PoP", `["ord","sfo","iad"].every(id => (document.querySelector('[data-app-pop="site@'+id+'"]')||{}).textContent === "`+v2[:12]+`")`, 20*time.Second)
	t.Logf("the new version showed after %v", took)
}
