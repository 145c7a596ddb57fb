// goheaders answers with a header naming the request's path, so that
// consecutive responses carry the same or different headers.
package main

import "github.com/verge-edge/verge/sdk/go/verge"

func init() {
	verge.HandleFunc(func(w verge.ResponseWriter, r *verge.Request) {
		w.Header().Set("X-Path", r.URL.Path)
		w.Write([]byte("ok"))
	})
}

func main() {}
