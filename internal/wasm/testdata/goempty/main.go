package main

import "github.com/verge-edge/verge/sdk/go/verge"

func init() {
	verge.HandleFunc(func(w verge.ResponseWriter, r *verge.Request) {})
}

func main() {}
