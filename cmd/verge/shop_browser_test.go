package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/verge-edge/verge/examples/shop/catalogue"
)

// TestShopPageInChromium drives the shop's page in headless Chromium (the
// Debian package, scripts/setup.sh) against verge dev: register, log in,
// add two products, check out, see the order, and read what the page says
// each action cost and which PoP answered.
func TestShopPageInChromium(t *testing.T) {
	e2e(t)
	t.Parallel()
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("headless Chromium is needed for the page test: %v (scripts/setup.sh installs the Debian package chromium)", err)
	}
	app := shopApp(t)
	p, _ := launchDev(t, false, nil, "--no-build", "--watch", "0", "--admin", "127.0.0.1:0", "--data", t.TempDir(), app)
	products := catalogue.Products(50)[:6]
	loadProducts(t, p.url, products)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// As root Chromium needs --no-sandbox; a fresh profile, and nothing
	// reaching for the network beyond the page.
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(browser), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1280, 1024), chromedp.UserDataDir(t.TempDir()))
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()

	// until waits for a JavaScript condition on the page.
	until := func(what, cond string) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			_, err := chromedp.Poll[bool](cond, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second))(ctx, tg)
			if err != nil {
				// Say what the page shows: its last request and messages.
				shown, _ := chromedp.Evaluate[string](`["timing", "authmsg", "cartmsg", "log"].map((id) => id + ": " + document.getElementById(id).textContent).join("\n")`)(ctx, tg)
				t.Fatalf("the page: waiting for %s: %v\n%s", what, err, shown)
			}
			return chromedp.Void{}, nil
		}
	}
	text := func(sel string) string {
		s, err := chromedp.Run(bctx, chromedp.TextContent(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("reading %s: %v", sel, err)
		}
		return s
	}
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	step("open the page", chromedp.Navigate(p.url+"/"),
		until("the products", `document.querySelectorAll("#products .product").length === 6`),
		until("the categories", `document.querySelectorAll("#categories li").length === 2`))
	step("register",
		chromedp.SendKeys(chromedp.CSS("#username"), "grace"),
		chromedp.SendKeys(chromedp.CSS("#password"), "correct horse battery"),
		chromedp.Click(chromedp.CSS("#register")),
		until("registered", `document.getElementById("authmsg").textContent.includes("registered as grace")`))
	step("log in", chromedp.Click(chromedp.CSS("#login")),
		until("logged in", `!document.getElementById("who").hidden && document.getElementById("me").textContent === "grace"`),
		until("add buttons enabled", `!document.querySelector("#products .product button.add").disabled`))
	first, second := products[0], products[1]
	step("add two products",
		chromedp.Click(chromedp.CSS(`#products .product[data-id="`+first.ID+`"] button.add`)),
		until("one line in the cart", `document.querySelectorAll("#cart .cartline[data-id]").length === 1`),
		chromedp.Click(chromedp.CSS(`#products .product[data-id="`+second.ID+`"] button.add`)),
		until("two lines in the cart", `document.querySelectorAll("#cart .cartline[data-id]").length === 2`))
	// The timing line of the last action: both durations and the PoP.
	timing := text("#timing")
	if !strings.Contains(timing, "POST /api/cart/items → 200") || !strings.Contains(timing, "ms in the browser") ||
		!strings.Contains(timing, "ms at the PoP") || !strings.Contains(timing, "answered by dev") {
		t.Fatalf("the timing shown after adding to the cart: %q", timing)
	}
	step("check out", chromedp.Click(chromedp.CSS("#checkout")),
		until("the order", `document.querySelectorAll("#orders .order").length === 1`),
		until("an empty cart", `document.getElementById("cart").textContent.includes("empty")`))
	order := text("#orders .order")
	if !strings.Contains(order, first.Name) || !strings.Contains(order, second.Name) {
		t.Fatalf("the order shown: %q, want %s and %s", order, first.Name, second.Name)
	}
	if msg := text("#cartmsg"); !strings.Contains(msg, "ordered") {
		t.Fatalf("after checking out the page says %q", msg)
	}
	// The order is the shop's too, not only the page's.
	s := newShopper(t)
	s.must(200, "POST", p.url+"/api/login", map[string]string{"username": "grace", "password": "correct horse battery"})
	if ids := orderIDs(s.must(200, "GET", p.url+"/api/orders", nil)); len(ids) != 1 {
		t.Fatalf("grace's orders through the API: %v", ids)
	}
}
