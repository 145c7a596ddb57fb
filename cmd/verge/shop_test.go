package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verge-edge/verge/examples/shop/catalogue"
)

// The shopping demo (examples/shop) through the verge binary: helpers.

// shopApp is the demo's directory; it must be built (make examples).
func shopApp(t *testing.T) string {
	t.Helper()
	app := filepath.Join("..", "..", "examples", "shop")
	if _, err := os.Stat(filepath.Join(app, "shop.wasm")); err != nil {
		t.Fatalf("examples/shop is not built (%v): run make examples", err)
	}
	return app
}

// shopper is one browser: a cookie jar (the session, and verge_home, the
// PoP that last served it) shared by every PoP it talks to, as a browser
// reaching one shop domain through different PoPs would.
type shopper struct {
	t      *testing.T
	client *http.Client
}

func newShopper(t *testing.T) *shopper {
	jar, _ := cookiejar.New(nil)
	return &shopper{t: t, client: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
}

// call sends method url with body (JSON-encoded unless nil) and returns the
// status and the decoded answer (status 0 and the error when no answer
// came).
func (s *shopper) call(method, url string, body any) (int, map[string]any) {
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		s.t.Fatal(err)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, map[string]any{"error": err.Error()}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		m = map[string]any{"body": string(b)}
	}
	if resp.Header.Get("Server-Timing") == "" && resp.StatusCode < 500 {
		s.t.Errorf("%s %s: %d without Server-Timing", method, url, resp.StatusCode)
	}
	return resp.StatusCode, m
}

// must calls and fails the test unless the status is want.
func (s *shopper) must(want int, method, url string, body any) map[string]any {
	s.t.Helper()
	code, m := s.call(method, url, body)
	if code != want {
		s.t.Fatalf("%s %s: %d %v, want %d", method, url, code, m, want)
	}
	return m
}

func creds(user string) map[string]string {
	return map[string]string{"username": user, "password": "password-of-" + user}
}

// loadProducts puts products into the shop at url through its admin
// endpoint (a central function: from an edge PoP, forwarded to the centre).
func loadProducts(t *testing.T, url string, products []catalogue.Product) {
	t.Helper()
	client := &http.Client{Timeout: 30 * time.Second}
	for _, p := range products {
		if _, err := catalogue.Put(client, url, "shop-admin", p); err != nil {
			t.Fatal(err)
		}
	}
}

// orderIDs lists the ids of the shopper's placed orders.
func orderIDs(m map[string]any) []string {
	var ids []string
	list, _ := m["orders"].([]any)
	for _, o := range list {
		ids = append(ids, fmt.Sprint(o.(map[string]any)["id"]))
	}
	return ids
}

func cartItems(m map[string]any) map[string]float64 {
	out := map[string]float64{}
	items, _ := m["items"].([]any)
	for _, it := range items {
		l := it.(map[string]any)
		out[fmt.Sprint(l["product"])] = l["qty"].(float64)
	}
	return out
}

// TestDevShop: make dev APP=examples/shop serves the whole shop on one PoP
// that is its own centre: the page, the catalogue, accounts, cart,
// checkout (locally while plentiful, at the centre near the end) and
// orders.
func TestDevShop(t *testing.T) {
	e2e(t)
	t.Parallel()
	app := shopApp(t)
	p, admin := launchDev(t, true, nil, "--no-build", "--watch", "0", "--admin", "127.0.0.1:0", "--data", t.TempDir(), app)
	u := p.url
	code, page := get(t, u+"/")
	if code != 200 || !strings.Contains(page, "<title>Verge shop</title>") || strings.Contains(page, "http://") || strings.Contains(page, "https://") {
		t.Fatalf("GET /: %d, want the self-contained page (no external resource)\n%.300s", code, page)
	}
	// The admin endpoint wants the token.
	req, _ := http.NewRequest("POST", u+"/api/admin/products", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer wrong")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("admin with a wrong token: %v %v", resp, err)
	}
	products := catalogue.Products(100)[:12]
	products[0].Stock = 3 // scarce: checkout goes to the centre
	loadProducts(t, u, products)

	s := newShopper(t)
	if m := s.must(200, "GET", u+"/api/categories", nil); len(m["categories"].([]any)) != 1 {
		t.Fatalf("categories: %v", m)
	}
	if m := s.must(200, "GET", u+"/api/products?category=Kitchen&brand="+products[1].Brand, nil); len(m["products"].([]any)) == 0 {
		t.Fatalf("products of a brand: %v", m)
	}
	if m := s.must(200, "GET", u+"/api/products/"+products[0].ID, nil); m["stock"].(float64) != 3 || m["name"] != products[0].Name {
		t.Fatalf("product %s: %v", products[0].ID, m)
	}
	s.must(404, "GET", u+"/api/products/nope", nil)
	s.must(401, "GET", u+"/api/cart", nil)
	s.must(201, "POST", u+"/api/register", creds("ada"))
	s.must(409, "POST", u+"/api/register", map[string]string{"username": "ada", "password": "another password"})
	s.must(201, "POST", u+"/api/register", creds("ada")) // the same registration again: hers
	s.must(400, "POST", u+"/api/register", map[string]string{"username": "x", "password": "short"})
	s.must(401, "POST", u+"/api/login", map[string]string{"username": "ada", "password": "not her password"})
	s.must(401, "POST", u+"/api/login", creds("nobody"))
	// Credentials a registration would refuse are only a wrong pair at login.
	s.must(401, "POST", u+"/api/login", map[string]string{"username": "ada", "password": "short"})
	s.must(401, "POST", u+"/api/login", map[string]string{"username": "x", "password": "not her password"})
	s.must(200, "POST", u+"/api/login", creds("ada"))
	if m := s.must(200, "GET", u+"/api/me", nil); m["username"] != "ada" {
		t.Fatalf("me: %v", m)
	}
	s.must(404, "POST", u+"/api/cart/items", map[string]any{"product": "nope"})
	s.must(200, "POST", u+"/api/cart/items", map[string]any{"product": products[1].ID, "qty": 2})
	s.must(200, "POST", u+"/api/cart/items", map[string]any{"product": products[2].ID})
	s.must(200, "POST", u+"/api/cart/items", map[string]any{"product": products[3].ID})
	m := s.must(200, "DELETE", u+"/api/cart/items/"+products[3].ID, nil)
	if got := cartItems(m); len(got) != 2 || got[products[1].ID] != 2 || got[products[2].ID] != 1 {
		t.Fatalf("cart: %v", m)
	}
	o := s.must(200, "POST", u+"/api/checkout", map[string]string{"id": "first"})["order"].(map[string]any)
	if o["id"] != "first" || o["stock"] != "edge" || len(o["items"].([]any)) != 2 {
		t.Fatalf("order: %v", o)
	}
	// A retry of the same checkout is the same order, not a second one.
	if again := s.must(200, "POST", u+"/api/checkout", map[string]string{"id": "first"})["order"].(map[string]any); again["at"] != o["at"] {
		t.Fatalf("retried checkout: %v, want %v", again, o)
	}
	if m := s.must(200, "GET", u+"/api/cart", nil); len(cartItems(m)) != 0 {
		t.Fatalf("cart after checkout: %v", m)
	}
	s.must(400, "POST", u+"/api/checkout", nil)
	if m := s.must(200, "GET", u+"/api/products/"+products[1].ID, nil); m["stock"].(float64) != 98 {
		t.Fatalf("stock estimate after selling 2 of 100: %v", m)
	}
	// Near the end: 3 left; a cart of 2 goes through the central function,
	// then one of 2 more is out of stock and buys nothing.
	s.must(200, "POST", u+"/api/cart/items", map[string]any{"product": products[0].ID, "qty": 2})
	if o := s.must(200, "POST", u+"/api/checkout", nil)["order"].(map[string]any); o["stock"] != "centre" {
		t.Fatalf("order near the end of a stock: %v, want its stock taken at the centre", o)
	}
	s.must(200, "POST", u+"/api/cart/items", map[string]any{"product": products[0].ID, "qty": 2})
	s.must(200, "POST", u+"/api/cart/items", map[string]any{"product": products[4].ID})
	m = s.must(409, "POST", u+"/api/checkout", nil)
	if out, _ := m["out_of_stock"].([]any); len(out) != 1 || out[0] != products[0].ID {
		t.Fatalf("checkout of more than the stock: %v, want 409 naming %s", m, products[0].ID)
	}
	// The dev PoP is the centre: it holds no escrow, the counter is exact.
	if code, body := get(t, admin+"/v1/apps/shop/spot/counters/stock-"+products[4].ID); code != 200 || !strings.Contains(body, `"remaining":100`) {
		t.Fatalf("stock of %s after a refused checkout: %d %s, want its unit back (100)", products[4].ID, code, body)
	}
	if code, body := get(t, admin+"/v1/apps/shop/spot/counters/stock-"+products[0].ID); code != 200 || !strings.Contains(body, `"remaining":1`) {
		t.Fatalf("stock of %s: %d %s, want 1 left", products[0].ID, code, body)
	}
	if ids := orderIDs(s.must(200, "GET", u+"/api/orders", nil)); len(ids) != 2 {
		t.Fatalf("orders: %v", ids)
	}
	s.must(200, "POST", u+"/api/logout", nil)
	s.must(401, "GET", u+"/api/orders", nil)
}

// retryable is an answer after which the same request may be sent again:
// the centre was unreachable (503) or did not answer in time (504), or
// no answer came at all.
func retryable(code int) bool { return code == 0 || code == 502 || code == 503 || code == 504 }

// checkoutUntilDefinite checks out with one id until the answer is 200 or
// 409 (bounded): a retry with the same id never orders twice.
func (s *shopper) checkoutUntilDefinite(url, id string) (int, map[string]any, int) {
	s.t.Helper()
	retries := 0
	for deadline := time.Now().Add(60 * time.Second); ; retries++ {
		code, m := s.call("POST", url+"/api/checkout", map[string]string{"id": id})
		if !retryable(code) || time.Now().After(deadline) {
			return code, m, retries
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestNetShop: the shop's API on three PoPs (ord, the centre, sfo and iad)
// through the verge binary: two PoPs racing to register the same names, a
// flash sale of the last 10 units from all three, and a cart (with its
// session) that follows its user from PoP to PoP.
func TestNetShop(t *testing.T) {
	e2e(t)
	t.Parallel()
	n := startNetApp(t, shopApp(t), 3)
	url := func(id string) string { return "http://" + n.pop(id).HTTP }
	pops := []string{"ord", "sfo", "iad"}
	products := catalogue.Products(1000)[:6]
	products[0].Stock = 10                // the last 10 units
	loadProducts(t, url("sfo"), products) // a central function, forwarded from an edge
	last := products[len(products)-1].ID
	for _, id := range pops {
		eventually(t, "the catalogue at "+id, func() bool {
			code, _ := newShopper(t).call("GET", url(id)+"/api/products/"+last, nil)
			return code == 200
		})
	}

	// Two PoPs race for each name: exactly one registration wins, and its
	// password is the one that logs in, at any PoP.
	const names = 6
	codes := make([][2]int, names)
	var wg sync.WaitGroup
	for side, id := range []string{"sfo", "iad"} {
		wg.Go(func() {
			for i := range names {
				codes[i][side], _ = newShopper(t).call("POST", url(id)+"/api/register",
					map[string]string{"username": fmt.Sprintf("racer%d", i), "password": "password-at-" + id})
			}
		})
	}
	wg.Wait()
	for i, c := range codes {
		if c != [2]int{201, 409} && c != [2]int{409, 201} {
			t.Fatalf("racer%d: sfo %d, iad %d; want exactly one 201 and one 409", i, c[0], c[1])
		}
		winner, loser := "sfo", "iad"
		if c[1] == 201 {
			winner, loser = loser, winner
		}
		name := fmt.Sprintf("racer%d", i)
		eventually(t, name+" logs in at "+loser+" with the winning password", func() bool {
			code, _ := newShopper(t).call("POST", url(loser)+"/api/login", map[string]string{"username": name, "password": "password-at-" + winner})
			return code == 200
		})
		newShopper(t).must(401, "POST", url(winner)+"/api/login", map[string]string{"username": name, "password": "password-at-" + loser})
	}

	// The flash sale: the last 10 units of a product, four buyers at each
	// PoP buying one at a time until told it is out of stock.
	var buyers []*shopper
	var at []string
	for i := range 12 {
		s := newShopper(t)
		id := pops[i%3]
		user := fmt.Sprintf("buyer%d", i)
		s.must(201, "POST", url(id)+"/api/register", creds(user))
		s.must(200, "POST", url(id)+"/api/login", creds(user))
		buyers, at = append(buyers, s), append(at, id)
	}
	var mu sync.Mutex
	sold, refused := 0, 0
	for i, s := range buyers {
		wg.Go(func() {
			for k := range 20 { // bounded: more than the stock
				s.must(200, "POST", url(at[i])+"/api/cart/items", map[string]any{"product": products[0].ID})
				code, m, _ := s.checkoutUntilDefinite(url(at[i]), fmt.Sprintf("b%d-%d", i, k))
				mu.Lock()
				switch code {
				case 200:
					sold++
				case 409:
					refused++
					if out, _ := m["out_of_stock"].([]any); len(out) != 1 || out[0] != products[0].ID {
						t.Errorf("buyer%d at %s: 409 %v, want it to name %s", i, at[i], m, products[0].ID)
					}
				default:
					t.Errorf("buyer%d at %s: %d %v", i, at[i], code, m)
				}
				mu.Unlock()
				if code != 200 {
					return
				}
			}
		})
	}
	wg.Wait()
	ordered := 0
	for i, s := range buyers {
		ordered += len(orderIDs(s.must(200, "GET", url(at[i])+"/api/orders", nil)))
	}
	if sold != 10 || ordered != 10 || refused != len(buyers) {
		t.Fatalf("flash sale of 10 units: %d sold, %d orders, %d buyers refused; want 10, 10 and all %d", sold, ordered, refused, len(buyers))
	}
	resp, err := n.adminGet("ord", "/v1/apps/shop/spot/counters/stock-"+products[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"remaining":0`) {
		t.Fatalf("stock at the centre after the sale: %s, want 0", b)
	}

	// A cart, and the session it belongs to, follow their user: from sfo
	// to iad, and its order is seen at the centre.
	s := newShopper(t)
	s.must(201, "POST", url("sfo")+"/api/register", creds("walker"))
	s.must(200, "POST", url("sfo")+"/api/login", creds("walker"))
	s.must(200, "POST", url("sfo")+"/api/cart/items", map[string]any{"product": products[1].ID, "qty": 2})
	s.must(200, "POST", url("sfo")+"/api/cart/items", map[string]any{"product": products[2].ID})
	m := s.must(200, "GET", url("iad")+"/api/cart", nil)
	if got := cartItems(m); len(got) != 2 || got[products[1].ID] != 2 || got[products[2].ID] != 1 {
		t.Fatalf("the cart at iad: %v, want what was added at sfo", m)
	}
	s.must(200, "POST", url("iad")+"/api/cart/items", map[string]any{"product": products[3].ID})
	o := s.must(200, "POST", url("iad")+"/api/checkout", map[string]string{"id": "walk"})["order"].(map[string]any)
	if len(o["items"].([]any)) != 3 {
		t.Fatalf("order at iad: %v", o)
	}
	// Back at sfo, the cart comes from iad, the PoP that served the user
	// last (the verge_home cookie), emptied by the checkout.
	if m := s.must(200, "GET", url("sfo")+"/api/cart", nil); len(cartItems(m)) != 0 {
		t.Fatalf("the cart back at sfo after checking out at iad: %v", m)
	}
	// At the centre, which backs up every local document: the order
	// arrives there within a batch window of being placed. (The client's
	// home is now sfo, which never held the orders, so the request cannot
	// pull them from iad: the backup is what ord shows.)
	eventually(t, "the order at ord", func() bool {
		code, m := s.call("GET", url("ord")+"/api/orders", nil)
		ids := orderIDs(m)
		return code == 200 && len(ids) == 1 && ids[0] == "walk"
	})
}

// TestNetSpotReplicated: the SPOT replicated over three central servers
// keeps the shop's usernames and stock, and keeps answering, when any one
// of them is killed.
func TestNetSpotReplicated(t *testing.T) {
	e2e(t)
	t.Parallel()
	n := startNetApp(t, shopApp(t), 2, "--spot-replicas", "3") // ord (central) + ord-spot1, ord-spot2; sfo
	if len(n.nf.SpotServers) != 2 {
		t.Fatalf("net.json spot servers: %+v", n.nf.SpotServers)
	}
	u := "http://" + n.pop("sfo").HTTP
	// retry: while the streams whose leader died elect another, SPOT calls
	// answer 503 (nothing applied) or 504 (it may have been).
	retry := func(s *shopper, method, path string, body any) (int, map[string]any) {
		t.Helper()
		var code int
		var m map[string]any
		eventually(t, method+" "+path, func() bool {
			code, m = s.call(method, u+path, body)
			return !retryable(code)
		})
		return code, m
	}
	p := catalogue.Products(10)[0] // 10 units: every take at the centre (threshold 20)
	eventually(t, "loading the product", func() bool {
		_, err := catalogue.Put(&http.Client{Timeout: 10 * time.Second}, u, "shop-admin", p)
		return err == nil
	})
	joe := newShopper(t)
	if code, m := retry(joe, "POST", "/api/register", creds("joe")); code != 201 {
		t.Fatalf("register: %d %v", code, m)
	}
	joe.must(200, "POST", u+"/api/login", creds("joe"))
	remaining := int64(10)
	for round, victim := range []string{"ord-spot1", "ord-spot2"} {
		netCmd(t, "kill", "--dir", n.dir, victim)
		if code, m := retry(newShopper(t), "POST", "/api/register", map[string]string{"username": "joe", "password": "not joe's password"}); code != 409 {
			t.Fatalf("register joe again with %s down: %d %v, want 409", victim, code, m)
		}
		joe.must(200, "POST", u+"/api/cart/items", map[string]any{"product": p.ID})
		code, m, retries := joe.checkoutUntilDefinite(u, fmt.Sprintf("round%d", round))
		if code != 200 {
			t.Fatalf("checkout with %s down: %d %v", victim, code, m)
		}
		// A take at the centre whose outcome was unknown may have cost a
		// unit (undersold), never more than one per retry.
		var left int64
		eventually(t, "the stock", func() bool {
			resp, err := n.adminGet("sfo", "/v1/apps/shop/spot/counters/stock-"+p.ID)
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			var c struct{ Remaining int64 }
			if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&c) != nil {
				return false
			}
			left = c.Remaining
			return true
		})
		if left > remaining-1 || left < remaining-1-int64(retries) {
			t.Fatalf("stock after a checkout with %s down (%d retries): %d, want %d", victim, retries, left, remaining-1)
		}
		remaining = left
		netCmd(t, "restart", "--dir", n.dir, victim)
	}
	if ids := orderIDs(joe.must(200, "GET", u+"/api/orders", nil)); len(ids) != 2 {
		t.Fatalf("joe's orders: %v", ids)
	}
}
