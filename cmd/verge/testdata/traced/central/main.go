// central claims a name at the single point of truth.
package main

import (
	"fmt"

	"github.com/verge-edge/verge/sdk/go/verge"
)

func init() {
	verge.HandleFunc(func(w verge.ResponseWriter, r *verge.Request) {
		claimed, owner, err := verge.Claim("names", "x", "central")
		fmt.Fprint(w, claimed, owner, err)
	})
}

func main() {}
