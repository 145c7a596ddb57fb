// Command load puts the demo catalogue into a running shop: 240 products in
// 10 categories from 20 brands, each with -stock units, through the shop's
// admin endpoint.
//
//	go run ./examples/shop/load                       # the shop of make dev APP=examples/shop
//	go run ./examples/shop/load -url http://127.0.0.1:8080 -token shop-admin -stock 1000
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/verge-edge/verge/examples/shop/catalogue"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:8080", "the shop (any PoP of it)")
	token := flag.String("token", "shop-admin", "the shop's SHOP_ADMIN_TOKEN (verge.toml)")
	stock := flag.Int64("stock", 1000, "units of each product")
	flag.Parse()
	client := &http.Client{Timeout: 30 * time.Second}
	products := catalogue.Products(*stock)
	start := time.Now()
	for i, p := range products {
		if _, err := catalogue.Put(client, *url, *token, p); err != nil {
			fmt.Fprintf(os.Stderr, "load: product %d of %d: %v\n", i+1, len(products), err)
			os.Exit(1)
		}
	}
	fmt.Printf("load: %d products in %d categories from %d brands, %d units each, in %v\n",
		len(products), len(catalogue.Categories), len(catalogue.Brands), *stock, time.Since(start).Round(time.Millisecond))
}
