package main

import (
	_ "embed"

	"github.com/verge-edge/verge/sdk/go/verge"
)

// page is the whole shop page: HTML, CSS and JavaScript in one file, no
// build step and nothing fetched from elsewhere, so it works offline and
// from any PoP.
//
//go:embed page.html
var page []byte

func servePage(x *reply, _ *verge.Request, _ string) {
	x.send(200, "text/html; charset=utf-8", page)
}
