package admin

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkHTTPIncrement is durable counter increments through the admin API
// over loopback HTTP/1.1 keep-alive connections, fsync on, at 1 and 32
// concurrent clients, each on its own document ("Docs") or all on one.
// updates/s is the figure to compare with other stores.
func BenchmarkHTTPIncrement(b *testing.B) {
	for _, c := range []int{1, 32} {
		for _, oneDoc := range []bool{false, true} {
			name := fmt.Sprintf("c=%d/Docs", c)
			if oneDoc {
				name = fmt.Sprintf("c=%d/OneDoc", c)
			}
			if c == 1 && oneDoc {
				continue
			}
			b.Run(name, func(b *testing.B) { benchIncrement(b, c, oneDoc) })
		}
	}
}

func benchIncrement(b *testing.B, clients int, oneDoc bool) {
	srv := newServer(b, Options{}, false)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	defer client.CloseIdleConnections()
	const body = `{"ops":[{"op":"increment","path":"n","value":1}]}`
	var next atomic.Int64
	var left atomic.Int64
	left.Store(int64(b.N))
	var wg sync.WaitGroup
	b.ResetTimer()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url := srv.URL + "/v1/apps/a/collections/stats/docs/views"
			if !oneDoc {
				url = fmt.Sprintf("%s/v1/apps/a/collections/stats/docs/d%d", srv.URL, next.Add(1))
			}
			for left.Add(-1) >= 0 {
				resp, err := client.Post(url, "application/json", strings.NewReader(body))
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Error(resp.Status)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "updates/s")
}
