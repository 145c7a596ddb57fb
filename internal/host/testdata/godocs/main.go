// godocs exercises the document host calls through the Go SDK.
package main

import (
	"fmt"
	"strings"

	"github.com/verge-edge/verge/sdk/go/verge"
)

func init() {
	verge.HandleFunc(func(w verge.ResponseWriter, r *verge.Request) {
		carts := verge.Documents("carts")
		user := r.URL.Query().Get("user")
		switch strings.TrimPrefix(r.URL.Path, "/") {
		case "add":
			if err := carts.Update(user, verge.Append("items", r.URL.Query().Get("item")), verge.Increment("count", 1)); err != nil {
				w.WriteHeader(500)
				fmt.Fprint(w, err)
				return
			}
		case "bad":
			err := carts.Update(user, verge.Increment("items", 1))
			fmt.Fprint(w, err)
			return
		case "delete":
			found, err := carts.Delete(user)
			fmt.Fprint(w, found, err)
			return
		case "list":
			keys, next, err := carts.List("", 100)
			fmt.Fprint(w, keys, next, err)
			return
		}
		doc, found, err := carts.GetJSON(user)
		if err != nil || !found {
			w.WriteHeader(404)
			fmt.Fprint(w, found, err)
			return
		}
		w.Write(doc)
	})
}

func main() {}
