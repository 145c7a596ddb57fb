// gofetch exercises the outbound fetch host calls through the Go SDK. Each
// route answers one line: what it got, then the kind of the error ("-" for
// none) and the error.
package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/verge-edge/verge/sdk/go/verge"
)

func kind(err error) string {
	switch {
	case err == nil:
		return "-"
	case errors.Is(err, verge.ErrNotFound):
		return "notfound"
	case errors.Is(err, verge.ErrLimit):
		return "limit"
	case errors.Is(err, verge.ErrUnavailable):
		return "unavailable"
	}
	var he *verge.HostError
	if errors.As(err, &he) {
		return fmt.Sprintf("status%d", he.Status)
	}
	return "other"
}

func init() {
	verge.HandleFunc(func(w verge.ResponseWriter, r *verge.Request) {
		q := r.URL.Query()
		backend, target := q.Get("b"), q.Get("u")
		fail := func(err error) { fmt.Fprintf(w, "%s %v", kind(err), err) }
		switch strings.TrimPrefix(r.URL.Path, "/") {
		case "get": // status, X-Cache and body of one fetch
			req, _ := verge.NewRequest("GET", target, nil)
			req.Header.Set("X-From-Guest", "yes")
			resp, err := verge.Fetch(req, backend, verge.FetchOptions{NoCache: q.Get("nocache") != ""})
			if err != nil {
				fail(err)
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			fmt.Fprintf(w, "%d %s %s|%s", resp.StatusCode, resp.Header.Get("X-Cache"), b, kind(err))
		case "post": // the incoming body, streamed to the backend
			req, _ := verge.NewRequest("POST", target, r.Body)
			resp, err := verge.Fetch(req, backend)
			if err != nil {
				fail(err)
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			fmt.Fprintf(w, "%d %s|%s", resp.StatusCode, b, kind(err))
		case "parallel": // two fetches under way at once
			var pending []*verge.Pending
			for _, u := range strings.Split(target, ",") {
				req, _ := verge.NewRequest("GET", u, nil)
				p, err := verge.FetchAsync(req, backend)
				if err != nil {
					fail(err)
					return
				}
				pending = append(pending, p)
			}
			for _, p := range pending {
				resp, err := p.Wait()
				if err != nil {
					fail(err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				fmt.Fprintf(w, "[%s]", b)
			}
		case "proxy": // the backend's response, passed on with a header added
			req, _ := verge.NewRequest("GET", target, nil)
			resp, err := verge.Fetch(req, backend)
			if err != nil {
				fail(err)
				return
			}
			defer resp.Body.Close()
			for k, vs := range resp.Header {
				for _, v := range vs {
					w.Header().Add(k, v)
				}
			}
			w.Header().Set("X-Proxied-By", "verge")
			w.WriteHeader(resp.StatusCode)
			io.Copy(w, resp.Body)
		case "many": // n fetches without closing any
			n := 0
			fmt.Sscan(q.Get("n"), &n)
			for i := 0; i < n; i++ {
				req, _ := verge.NewRequest("GET", target, nil)
				if _, err := verge.Fetch(req, backend); err != nil {
					fmt.Fprintf(w, "%d ", i)
					fail(err)
					return
				}
			}
			fmt.Fprint(w, "ok")
		case "leave": // reads a byte and leaves the body open
			req, _ := verge.NewRequest("GET", target, nil)
			resp, err := verge.Fetch(req, backend)
			if err != nil {
				fail(err)
				return
			}
			var one [1]byte
			resp.Body.Read(one[:])
			fmt.Fprintf(w, "read %q", one[:])
		}
	})
}

func main() {}
