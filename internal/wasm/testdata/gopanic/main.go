// gopanic panics on /panic and answers other paths normally.
package main

import "github.com/verge-edge/verge/sdk/go/verge"

func init() {
	verge.HandleFunc(func(w verge.ResponseWriter, r *verge.Request) {
		if r.URL.Path == "/panic" {
			panic("on purpose")
		}
		w.Write([]byte("fine"))
	})
}

func main() {}
