// gostate keeps state between the requests an instance serves: a count, a
// value a request may set, and the runtime's random generator.
package main

import (
	"fmt"
	"math/rand/v2"

	"github.com/verge-edge/verge/sdk/go/verge"
)

var (
	count  int
	secret string
)

func init() {
	verge.HandleFunc(func(w verge.ResponseWriter, r *verge.Request) {
		count++
		if v := r.URL.Query().Get("set"); v != "" {
			secret = v
		}
		fmt.Fprintf(w, "%d %q %d", count, secret, rand.Uint64())
	})
}

func main() {}
