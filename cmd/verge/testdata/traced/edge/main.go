// edge writes a global document and invokes the central function.
package main

import (
	"fmt"

	"github.com/verge-edge/verge/sdk/go/verge"
)

func init() {
	verge.HandleFunc(func(w verge.ResponseWriter, r *verge.Request) {
		span := verge.StartSpan("pricing") // the guest's own span
		span.SetAttribute("sku", r.URL.Path)
		span.End()
		verge.Logf("priced %s", r.URL.Path) // a guest line, with the request's trace id
		if err := verge.Documents("stats").Update("hits", verge.Increment("n", 1)); err != nil {
			w.WriteHeader(500)
			fmt.Fprint(w, err)
			return
		}
		status, body, err := verge.Invoke("central", "POST", "/central/claim", nil)
		if err != nil {
			w.WriteHeader(502)
			fmt.Fprint(w, err)
			return
		}
		w.WriteHeader(status)
		w.Write(body)
	})
}

func main() {}
