// gohog allocates without end: the memory limit must stop it.
package main

import "github.com/verge-edge/verge/sdk/go/verge"

var keep [][]byte

func init() {
	verge.HandleFunc(func(w verge.ResponseWriter, r *verge.Request) {
		if r.URL.Path == "/small" {
			w.Write([]byte("ok"))
			return
		}
		for {
			keep = append(keep, make([]byte, 1<<20))
		}
	})
}

func main() {}
