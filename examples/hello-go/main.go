// hello-go is the smallest Verge function written with the Go SDK.
package main

import (
	"io"
	"strings"

	"github.com/verge-edge/verge/sdk/go/verge"
)

func init() {
	verge.HandleFunc(hello)
}

func hello(w verge.ResponseWriter, r *verge.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if r.Method == "POST" {
		// Echo the body: shows the request body streaming in.
		io.Copy(w, r.Body)
		return
	}
	name := r.URL.Query().Get("name")
	if rest, ok := strings.CutPrefix(r.URL.Path, "/hello/"); ok && rest != "" {
		name = rest
	}
	if name == "" {
		name = "world"
	}
	io.WriteString(w, "Hello, "+name+", from Go on Verge!\n")
}

// main is not called: the module is a reactor (-buildmode=c-shared) whose
// handler is registered by init.
func main() {}
