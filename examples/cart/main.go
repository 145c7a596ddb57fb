// cart is a shopping cart per user plus a page-view counter shared by every
// user, written with the Verge Go SDK's documents.
//
//	GET  /cart/{user}                       the cart: {"user", "items": {sku: qty}, "views"}
//	POST /cart/{user}/add?sku=SKU&qty=N     add N (default 1) of SKU
//	POST /cart/{user}/remove?sku=SKU        take SKU out of the cart
//	GET  /views                             {"cart": N}: how often carts were shown
//
// A cart is a document whose fields are SKUs and whose values are
// quantities. Adding is an increment, so two PoPs adding to the same cart at
// once both count, and a missing field starts at zero: no "create the cart
// first" step that two concurrent first adds could race on.
package main

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"github.com/verge-edge/verge/sdk/go/verge"
)

var (
	carts = verge.Documents("carts") // scope "local": a user's cart stays at their PoP
	stats = verge.Documents("stats") // scope "global": every PoP counts views
)

func init() { verge.HandleFunc(serve) }

func serve(w verge.ResponseWriter, r *verge.Request) {
	if r.URL.Path == "/views" {
		views, _, err := stats.GetJSON("pages")
		if err != nil {
			fail(w, 500, err.Error())
			return
		}
		if views == nil {
			views = []byte("{}")
		}
		reply(w, json.RawMessage(views))
		return
	}
	parts := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.Path, "/cart"), "/"), "/")
	user := parts[0]
	if user == "" || len(parts) > 2 {
		fail(w, 404, "expected /cart/{user}, /cart/{user}/add or /cart/{user}/remove")
		return
	}
	action := ""
	if len(parts) == 2 {
		action = parts[1]
	}
	q := r.URL.Query()
	switch {
	case action == "" && r.Method == "GET":
		if err := stats.Update("pages", verge.Increment("cart", 1)); err != nil {
			fail(w, 500, err.Error())
			return
		}
		show(w, user)
	case action == "add" && r.Method == "POST":
		qty := int64(1)
		if s := q.Get("qty"); s != "" {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n < 1 || n > 1000 {
				fail(w, 400, "qty must be a number from 1 to 1000")
				return
			}
			qty = n
		}
		if !validSKU(q.Get("sku")) {
			fail(w, 400, "sku must be 1-64 letters, digits, - or _")
			return
		}
		if err := carts.Update(user, verge.Increment(q.Get("sku"), qty)); err != nil {
			fail(w, 500, err.Error())
			return
		}
		show(w, user)
	case action == "remove" && r.Method == "POST":
		if !validSKU(q.Get("sku")) {
			fail(w, 400, "sku must be 1-64 letters, digits, - or _")
			return
		}
		var cart map[string]int64
		if _, err := carts.Get(user, &cart); err != nil {
			fail(w, 500, err.Error())
			return
		}
		if _, ok := cart[q.Get("sku")]; ok {
			if err := carts.Update(user, verge.Remove(q.Get("sku"))); err != nil {
				fail(w, 500, err.Error())
				return
			}
		}
		show(w, user)
	default:
		fail(w, 405, "use GET /cart/{user}, POST /cart/{user}/add or POST /cart/{user}/remove")
	}
}

// show answers with the cart and the page views so far.
func show(w verge.ResponseWriter, user string) {
	items := map[string]int64{}
	if _, err := carts.Get(user, &items); err != nil {
		fail(w, 500, err.Error())
		return
	}
	var views map[string]int64
	stats.Get("pages", &views)
	w.Header().Set("Content-Type", "application/json")
	w.Write(appendCart(make([]byte, 0, 256), user, items, views["cart"]))
}

// appendCart appends the JSON of {"user", "items", "views"} as json.Marshal
// of a map would write it (keys sorted), and a newline. Built by hand
// because encoding/json's reflection is most of a request's CPU time in a
// Go guest.
func appendCart(b []byte, user string, items map[string]int64, views int64) []byte {
	skus := make([]string, 0, len(items))
	for sku := range items {
		skus = append(skus, sku)
	}
	slices.Sort(skus)
	b = append(b, `{"items":{`...)
	for i, sku := range skus {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, sku)
		b = append(b, ':')
		b = strconv.AppendInt(b, items[sku], 10)
	}
	b = append(b, `},"user":`...)
	b = appendString(b, user)
	b = append(b, `,"views":`...)
	b = strconv.AppendInt(b, views, 10)
	return append(b, "}\n"...)
}

// appendString quotes s as encoding/json does; only plain ASCII, which
// needs no escaping, skips it.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// validSKU keeps SKUs to names that are also valid document paths.
func validSKU(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func reply(w verge.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	b, _ := json.Marshal(v)
	w.Write(append(b, '\n'))
}

func fail(w verge.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	b, _ := json.Marshal(map[string]string{"error": msg})
	w.Write(append(b, '\n'))
}

func main() {}
