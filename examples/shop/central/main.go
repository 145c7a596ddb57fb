// backoffice runs only at the central PoP (kind = "central"): every SPOT
// call it makes is local to the centre, so a batch of them costs the caller
// one WAN round trip in all.
//
//	POST /backoffice/restock/{sku}?n=N   add N units; answers what remains
package main

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/verge-edge/verge/sdk/go/verge"
)

func init() { verge.HandleFunc(serve) }

func serve(w verge.ResponseWriter, r *verge.Request) {
	sku, ok := strings.CutPrefix(r.URL.Path, "/backoffice/restock/")
	if !ok || sku == "" || r.Method != "POST" {
		reply(w, 404, map[string]string{"error": "expected POST /backoffice/restock/{sku}?n=N"})
		return
	}
	n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
	if err != nil || n <= 0 {
		reply(w, 400, map[string]string{"error": "n must be a positive integer"})
		return
	}
	remaining, err := verge.Restock(sku, n)
	if err != nil {
		reply(w, 503, map[string]string{"error": err.Error()})
		return
	}
	reply(w, 200, map[string]any{"sku": sku, "remaining": remaining})
}

func reply(w verge.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	b, _ := json.Marshal(v)
	w.Write(append(b, '\n'))
}

func main() {}
