// gostream streams its response: "first\n", a flush, then (with ?wait) a
// test host call that returns once the client has read "first", then
// ?n= bytes in 64 KiB writes, flushed as they go.
package main

import (
	"strconv"

	"github.com/verge-edge/verge/sdk/go/verge"
)

//go:wasmimport verge test_wait
func testWait() uint32

var chunk = make([]byte, 64<<10)

func init() {
	for i := range chunk {
		chunk[i] = 'a' + byte(i%26)
	}
	verge.HandleFunc(func(w verge.ResponseWriter, r *verge.Request) {
		q := r.URL.Query()
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("first\n"))
		w.(verge.Flusher).Flush()
		if q.Get("wait") != "" {
			testWait()
		}
		n, _ := strconv.ParseInt(q.Get("n"), 10, 64)
		for n > 0 {
			c := chunk[:min(int64(len(chunk)), n)]
			if _, err := w.Write(c); err != nil {
				return
			}
			n -= int64(len(c))
		}
		if q.Get("fail") != "" {
			panic("after the head went out")
		}
	})
}

func main() {}
