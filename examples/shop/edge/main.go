// shop is the edge half of a small shop: unique usernames (a SPOT claim at
// the central PoP), a flash sale that never oversells (a bounded stock with
// a hybrid threshold), and orders kept at the user's PoP.
//
//	POST /signup/{name}?owner=ID    claim a username: 200 yours, 409 taken (with its owner)
//	POST /buy/{sku}?user=NAME       take one unit: 200 with what remains, 409 sold out
//	GET  /stock/{sku}               what remains at the centre
//	POST /restock/{sku}?n=N         restock, by invoking the central function below
//
// Restocking runs at the centre: POST /backoffice/restock/{sku}?n=N (a
// central function; an edge PoP forwards it there).
package main

import (
	"encoding/json"
	"errors"
	"strings"

	"github.com/verge-edge/verge/sdk/go/verge"
)

var orders = verge.Documents("orders")

func init() { verge.HandleFunc(serve) }

func serve(w verge.ResponseWriter, r *verge.Request) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) != 2 || parts[1] == "" {
		fail(w, 404, "expected /signup/{name}, /buy/{sku}, /stock/{sku} or /restock/{sku}")
		return
	}
	q := r.URL.Query()
	switch {
	case parts[0] == "signup" && r.Method == "POST":
		claimed, owner, err := verge.Claim("users", parts[1], q.Get("owner"))
		if err != nil {
			unavailable(w, err)
			return
		}
		code := 200
		if !claimed {
			code = 409
		}
		reply(w, code, map[string]any{"name": parts[1], "claimed": claimed, "owner": owner})
	case parts[0] == "buy" && r.Method == "POST":
		ok, remaining, err := verge.Take(parts[1], 1)
		if err != nil {
			unavailable(w, err)
			return
		}
		if !ok {
			reply(w, 409, map[string]any{"sku": parts[1], "sold_out": true})
			return
		}
		if user := q.Get("user"); user != "" {
			if err := orders.Update(user, verge.Increment(parts[1], 1)); err != nil {
				fail(w, 500, err.Error())
				return
			}
		}
		reply(w, 200, map[string]any{"sku": parts[1], "bought": 1, "remaining": remaining})
	case parts[0] == "restock" && r.Method == "POST":
		// One WAN round trip to the centre, whatever the central function does there.
		status, body, err := verge.Invoke("backoffice", "POST", "/backoffice/restock/"+parts[1]+"?n="+q.Get("n"), nil)
		if err != nil {
			unavailable(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write(body)
	case parts[0] == "stock" && r.Method == "GET":
		n, err := verge.Stock(parts[1])
		if err != nil {
			unavailable(w, err)
			return
		}
		reply(w, 200, map[string]any{"sku": parts[1], "remaining": n})
	default:
		fail(w, 405, "use POST /signup/{name}, POST /buy/{sku} or GET /stock/{sku}")
	}
}

func unavailable(w verge.ResponseWriter, err error) {
	if errors.Is(err, verge.ErrUnknownOutcome) {
		// The centre may have applied it: the client must look before
		// buying again (an order it placed shows under its user).
		fail(w, 504, "no answer from the central PoP in time; it may have gone through: "+err.Error())
		return
	}
	if errors.Is(err, verge.ErrUnavailable) {
		fail(w, 503, "the central PoP is unreachable; retry: "+err.Error())
		return
	}
	fail(w, 500, err.Error())
}

func reply(w verge.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	b, _ := json.Marshal(v)
	w.Write(append(b, '\n'))
}

func fail(w verge.ResponseWriter, code int, msg string) {
	reply(w, code, map[string]string{"error": msg})
}

func main() {}
