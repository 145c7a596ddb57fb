// Package admintest probes a PoP's admin API from outside, for the tests of
// every binary and package that serves one.
package admintest

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Endpoint is one admin endpoint with a concrete path.
type Endpoint struct{ Method, Path string }

// Endpoints are every endpoint of a PoP's admin API: documents, the SPOT,
// deploys, the network controls, and a path that serves nothing.
var Endpoints = []Endpoint{
	{"GET", "/v1/apps/shop/collections"},
	{"GET", "/v1/apps/shop/collections/carts/docs"},
	{"GET", "/v1/apps/shop/collections/carts/docs/k"},
	{"PUT", "/v1/apps/shop/collections/carts/docs/k"},
	{"POST", "/v1/apps/shop/collections/carts/docs/k"},
	{"DELETE", "/v1/apps/shop/collections/carts/docs/k"},
	{"POST", "/v1/apps/shop/spot/claims/users/ada"},
	{"POST", "/v1/apps/shop/spot/claims/users/ada/release"},
	{"POST", "/v1/apps/shop/spot/counters/brush/take"},
	{"POST", "/v1/apps/shop/spot/counters/brush/restock"},
	{"GET", "/v1/apps/shop/spot/counters/brush"},
	{"GET", "/v1/apps/shop/spot/docs/cfg"},
	{"POST", "/v1/apps/shop/spot/docs/cfg"},
	{"GET", "/v1/apps"},
	{"GET", "/v1/apps/shop/versions"},
	{"PUT", "/v1/apps/shop/versions/0123456789abcdef0123456789abcdef"},
	{"POST", "/v1/apps/shop/rollouts"},
	{"GET", "/v1/apps/shop/rollouts"},
	{"POST", "/v1/apps/shop/rollback"},
	{"DELETE", "/v1/apps/shop"},
	{"GET", "/v1/apps/shop/rooms"},
	{"POST", "/v1/apps/shop/rooms/chat/lobby/move"},
	{"POST", "/v1/apps/shop/cache/purge"},
	{"GET", "/v1/net/links"},
	{"GET", "/metrics"},
	{"GET", "/v1/slow"},
	{"POST", "/v1/net/partition?peer=all"},
	{"POST", "/v1/net/heal?peer=all"},
	{"GET", "/v1/nothing/here"},
}

// Do sends a request with an optional bearer token and returns the status
// and body.
func Do(t testing.TB, method, url, token, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

// RequireToken asserts that every endpoint of the admin API at base
// (http://host:port) answers 401 with a JSON error of kind "unauthorized",
// without a token and with a wrong one.
func RequireToken(t testing.TB, base, wrong string) {
	t.Helper()
	for _, e := range Endpoints {
		for _, tok := range []string{"", wrong} {
			code, body := Do(t, e.Method, base+e.Path, tok, `{"owner":"x","n":1,"rev":0,"ops":[]}`)
			var eb struct{ Kind string }
			if code != http.StatusUnauthorized || json.Unmarshal([]byte(body), &eb) != nil || eb.Kind != "unauthorized" {
				t.Errorf("%s %s with token %q: %d %s; want 401 kind unauthorized", e.Method, e.Path, tok, code, body)
			}
		}
	}
}
