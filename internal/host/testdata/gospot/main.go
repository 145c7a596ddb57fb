// gospot exercises the central PoP's host calls (spot_*, invoke) through the
// Go SDK. Every answer is one line: the results, then the kind of the error
// ("-" for none) and the error.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/verge-edge/verge/sdk/go/verge"
)

func kind(err error) string {
	switch {
	case err == nil:
		return "-"
	case errors.Is(err, verge.ErrUnknownOutcome): // before ErrUnavailable, which it also matches
		return "unknown"
	case errors.Is(err, verge.ErrUnavailable):
		return "unavailable"
	case errors.Is(err, verge.ErrConflict):
		return "conflict"
	case errors.Is(err, verge.ErrNotFound):
		return "notfound"
	case errors.Is(err, verge.ErrLimit):
		return "limit"
	}
	return "other"
}

func init() {
	verge.HandleFunc(func(w verge.ResponseWriter, r *verge.Request) {
		q := r.URL.Query()
		n, _ := strconv.ParseInt(q.Get("n"), 10, 64)
		rev, _ := strconv.ParseUint(q.Get("rev"), 10, 64)
		body, _ := io.ReadAll(r.Body)
		out := func(vals ...any) {
			err, _ := vals[len(vals)-1].(error)
			vals[len(vals)-1] = kind(err)
			fmt.Fprint(w, vals...)
			if err != nil {
				fmt.Fprint(w, " ", err)
			}
		}
		switch strings.TrimPrefix(r.URL.Path, "/") {
		case "claim":
			claimed, owner, err := verge.Claim(q.Get("ns"), q.Get("key"), q.Get("owner"))
			out(claimed, " ", owner, " ", err)
		case "release":
			released, err := verge.Release(q.Get("ns"), q.Get("key"), q.Get("owner"))
			out(released, " ", err)
		case "take":
			ok, left, err := verge.Take(q.Get("c"), n)
			out(ok, " ", left, " ", err)
		case "restock":
			left, err := verge.Restock(q.Get("c"), n)
			out(left, " ", err)
		case "stock":
			left, err := verge.Stock(q.Get("c"))
			out(left, " ", err)
		case "doc":
			doc, rev, err := verge.CentralDoc(q.Get("key"))
			out(rev, " ", string(doc), " ", err)
		case "update":
			var ops []verge.Op
			if err := json.Unmarshal(body, &ops); err != nil {
				out(err)
				return
			}
			doc, rev, err := verge.UpdateCentralDoc(q.Get("key"), rev, ops...)
			out(rev, " ", len(doc), " ", string(doc[:min(len(doc), 40)]), " ", err)
		case "invoke":
			code, resp, err := verge.Invoke(q.Get("fn"), q.Get("method"), q.Get("path"), body)
			out(code, " ", len(resp), " ", string(resp[:min(len(resp), 80)]), " ", err)
		default:
			w.WriteHeader(404)
		}
	})
}

func main() {}
