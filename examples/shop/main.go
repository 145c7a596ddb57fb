// shop is Verge's shopping demo: the page and a JSON API for a catalogue,
// accounts, carts, checkout and orders, written as a plain app. Where it
// runs is the manifest's business: at every PoP (the default), or only at
// the central PoP (placement = "central"), with the same code.
//
//	GET    /                          the shop page
//	GET    /api/categories            {"categories": [{"name", "count"}]}
//	GET    /api/brands                {"brands": [{"name", "count"}]}
//	GET    /api/products[?category=C&brand=B]   {"products": [product]}
//	GET    /api/products/{id}         product, with its live stock
//	POST   /api/register              {"username","password"}: 201, or 409 when the name is taken anywhere
//	POST   /api/login                 {"username","password"}: 200 and a session cookie, or 401
//	POST   /api/logout
//	GET    /api/me                    {"username"}, or 401
//	GET    /api/cart                  the cart (401 without a session)
//	POST   /api/cart/items            {"product","qty"}: adds qty (default 1)
//	DELETE /api/cart/items/{product}
//	POST   /api/checkout              [{"id"}]: 200 {"order"}, or 409 naming the products out of stock
//	GET    /api/orders                {"orders": [order]}, newest first
//	POST   /api/admin/products        Authorization: Bearer SHOP_ADMIN_TOKEN;
//	                                  {"id","name","category","brand","price","stock"}: adds or
//	                                  updates the product and sets its stock (a central function)
//
// Every response carries Server-Timing: app;dur=MS, the time spent in the
// function (and centre;dur=MS;desc="N": N round trips to the central PoP
// within it); the PoP adds Verge-PoP, the PoP that served it.
//
// Where the data lives (verge.toml): the catalogue and the accounts are
// global documents, read at every PoP in microseconds; a session is a
// cookie the app signs (SHOP_SESSION_KEY), which any PoP verifies; carts
// and orders are local documents that follow their user; usernames are SPOT
// claims and each product's stock a bounded counter with the hybrid
// threshold ("stock-" + id), both at the central PoP.
package main

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/verge-edge/verge/sdk/go/verge"
)

var (
	catalogue = verge.Documents("catalogue") // global: "products" and "levels"
	accounts  = verge.Documents("accounts")  // global: username -> password hash
	carts     = verge.Documents("carts")     // local: username -> {product: qty}
	orders    = verge.Documents("orders")    // local: username -> {order id: order}
)

func init() { verge.HandleFunc(serve) }

// route is one endpoint: its method and handler; a path may have several.
type route struct {
	method string
	fn     func(*reply, *verge.Request, string)
}

// routes by path; a path ending in "/" takes the rest as its argument.
var routes = map[string][]route{
	"/":                      {{"GET", servePage}},
	"/api/categories":        {{"GET", getCategories}},
	"/api/brands":            {{"GET", getBrands}},
	"/api/products":          {{"GET", getProducts}},
	"/api/products/":         {{"GET", getProduct}},
	"/api/register":          {{"POST", register}},
	"/api/login":             {{"POST", login}},
	"/api/logout":            {{"POST", logout}},
	"/api/me":                {{"GET", me}},
	"/api/cart":              {{"GET", getCart}},
	"/api/cart/items":        {{"POST", addToCart}},
	"/api/cart/items/":       {{"DELETE", removeFromCart}},
	"/api/checkout":          {{"POST", checkout}},
	"/api/orders":            {{"GET", getOrders}},
	"/api/admin/products":    {{"POST", adminProduct}},
	"/api/internal/checkout": {{"POST", centralCheckout}},
}

func serve(w verge.ResponseWriter, r *verge.Request) {
	x := &reply{w: w, start: time.Now()}
	path, arg := r.URL.Path, ""
	rs, ok := routes[path]
	if !ok {
		if i := strings.LastIndexByte(path, '/'); i > 0 {
			path, arg = path[:i+1], path[i+1:]
			rs, ok = routes[path]
		}
	}
	if !ok || (strings.HasSuffix(path, "/") && path != "/" && arg == "") {
		x.fail(404, "no such endpoint: "+r.URL.Path+" (the API is listed at the top of examples/shop/main.go)")
		return
	}
	var allow []string
	for _, rt := range rs {
		if rt.method == r.Method {
			rt.fn(x, r, arg)
			return
		}
		allow = append(allow, rt.method)
	}
	x.w.Header().Set("Allow", strings.Join(allow, ", "))
	x.fail(405, r.Method+" "+r.URL.Path+": use "+strings.Join(allow, " or "))
}

// reply writes one response, with the time spent so far as Server-Timing:
// app, the whole time in the function, and centre, the part spent waiting
// for the central PoP (claims, central invocations), with the number of
// round trips as its description:
//
//	Server-Timing: app;dur=231.84, centre;dur=229.90;desc="1"
type reply struct {
	w      verge.ResponseWriter
	start  time.Time
	centre time.Duration
	trips  int
}

// atCentre runs fn, a call that always goes to the central PoP, counting
// its round trip and its time.
func (x *reply) atCentre(fn func()) {
	t := time.Now()
	fn()
	x.centre += time.Since(t)
	x.trips++
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 2, 64)
}

func (x *reply) send(code int, contentType string, body []byte) {
	h := x.w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-store")
	timing := "app;dur=" + ms(time.Since(x.start))
	if x.trips > 0 {
		timing += ", centre;dur=" + ms(x.centre) + `;desc="` + strconv.Itoa(x.trips) + `"`
	}
	h.Set("Server-Timing", timing)
	x.w.WriteHeader(code)
	x.w.Write(body)
}

func (x *reply) json(code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		x.fail(500, "encoding the answer: "+err.Error())
		return
	}
	x.send(code, "application/json", append(b, '\n'))
}

func (x *reply) fail(code int, msg string) { x.json(code, map[string]string{"error": msg}) }

// hostFailed answers a failed host call: the central PoP (or the PoP a
// user's document must come from) unreachable (503: nothing happened,
// retry), no answer in time (504: it may have happened), or anything else
// (500).
func (x *reply) hostFailed(what string, err error) {
	switch {
	case errors.Is(err, verge.ErrUnknownOutcome):
		x.fail(504, what+": no answer from the central PoP in time; it may have gone through: "+err.Error())
	case errors.Is(err, verge.ErrUnavailable):
		x.w.Header().Set("Retry-After", "1")
		x.fail(503, what+": the central PoP is unreachable; retry: "+err.Error())
	default:
		x.fail(500, what+": "+err.Error())
	}
}

// readJSON decodes a request body of at most 64 KiB into v.
func readJSON(r *verge.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, 64<<10+1))
	if err != nil {
		return err
	}
	if len(b) > 64<<10 {
		return errors.New("the body is larger than 64 KiB")
	}
	if err := json.Unmarshal(b, v); err != nil {
		return errors.New("the body is not the JSON object expected: " + err.Error())
	}
	return nil
}

// env reads an integer setting of the manifest.
func envInt(name string, def int64) int64 {
	if n, err := strconv.ParseInt(os.Getenv(name), 10, 64); err == nil {
		return n
	}
	return def
}

// validID keeps product ids, usernames and checkout ids to names that are
// also document paths and counter names: 1-64 lowercase letters, digits,
// - or _.
func validID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func stockOf(product string) string { return "stock-" + product }

func now() string { return time.Now().UTC().Format("2006-01-02T15:04:05.000Z") }

func main() {}
