package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestCrashKeepsAcknowledgedWrites runs examples/cart under verge dev,
// drives concurrent updates through both the function (POST /cart/.../add)
// and the admin API, kills the process with SIGKILL mid-load, restarts it on
// the same data directory and checks that every acknowledged update is there
// and that nothing else changed: each counter is at least the number of
// acknowledged increments and at most the number attempted.
func TestCrashKeepsAcknowledgedWrites(t *testing.T) {
	e2e(t)
	t.Parallel()
	appDir := filepath.Join("..", "..", "examples", "cart")
	dataDir := t.TempDir()
	const users, skus = 4, 3
	acked := map[string]int{}     // "user/field" -> acknowledged increments
	attempted := map[string]int{} // "user/field" -> increments sent
	var mu sync.Mutex
	client := &http.Client{Timeout: 10 * time.Second}

	for round := 0; round < 2; round++ {
		extra := []string{"--data", dataDir}
		if round > 0 {
			extra = append(extra, "--no-build") // built in round 0
		}
		p, adminURL := startDevAdmin(t, appDir, extra...)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; i < 5000; i++ { // bounded; the kill comes first
					select {
					case <-stop:
						return
					default:
					}
					user := fmt.Sprintf("u%d", (w+i)%users)
					var field string
					var req *http.Request
					if w%2 == 0 { // through the function
						field = fmt.Sprintf("fn%d", i%skus)
						req, _ = http.NewRequest("POST", p.url+"/cart/"+user+"/add?sku="+field, nil)
					} else { // through the admin API
						field = fmt.Sprintf("admin%d", i%skus)
						body := `{"ops":[{"op":"increment","path":"` + field + `","value":1}]}`
						req, _ = http.NewRequest("POST", adminURL+"/v1/apps/cart/collections/carts/docs/"+user, strings.NewReader(body))
					}
					k := user + "/" + field
					mu.Lock()
					attempted[k]++
					mu.Unlock()
					resp, err := client.Do(req)
					if err != nil {
						return // the process is gone
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 200 {
						mu.Lock()
						acked[k]++
						mu.Unlock()
					}
				}
			}(w)
		}
		time.Sleep(time.Duration(300+rand.IntN(500)) * time.Millisecond)
		p.cmd.Process.Kill() // SIGKILL, mid-load
		close(stop)
		wg.Wait()
		<-p.done
	}

	// Restart and read everything back through the admin API.
	_, adminURL := startDevAdmin(t, appDir, "--data", dataDir, "--no-build")
	total := 0
	for u := 0; u < users; u++ {
		user := fmt.Sprintf("u%d", u)
		resp, err := client.Get(adminURL + "/v1/apps/cart/collections/carts/docs/" + user)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]int
		if resp.StatusCode == 200 {
			if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
				t.Fatal(err)
			}
		}
		resp.Body.Close()
		for field, v := range doc {
			k := user + "/" + field
			if attempted[k] == 0 {
				t.Errorf("%s = %d, but no update of it was ever sent", k, v)
			}
		}
		for k, a := range acked {
			if !strings.HasPrefix(k, user+"/") {
				continue
			}
			got := doc[strings.TrimPrefix(k, user+"/")]
			total += a
			if got < a || got > attempted[k] {
				t.Errorf("%s = %d after the crashes; %d increments were acknowledged, %d sent", k, got, a, attempted[k])
			}
		}
	}
	if total == 0 {
		t.Fatal("no update was acknowledged before the kills: the test proved nothing")
	}
	t.Logf("%d acknowledged increments survived two kill -9s", total)
}

// TestCartExample walks examples/cart through its routes.
// It is not parallel: it builds the example in place, and Go runs it before
// the parallel tests, among them the crash test, which uses the build.
func TestCartExample(t *testing.T) {
	e2e(t)
	p, adminURL := startDevAdmin(t, filepath.Join("..", "..", "examples", "cart"), "--data", t.TempDir())
	post := func(path string) string {
		resp, err := http.Post(p.url+path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.TrimSpace(string(b))
	}
	post("/cart/ada/add?sku=apple&qty=2")
	post("/cart/ada/add?sku=pear")
	if got := post("/cart/ada/remove?sku=apple"); got != `{"items":{"pear":1},"user":"ada","views":0}` {
		t.Fatalf("after add, add, remove: %s", got)
	}
	if got := post("/cart/ada/add?sku=bad%20sku"); !strings.Contains(got, "sku must be") {
		t.Fatalf("a bad sku: %s", got)
	}
	for i := 1; i <= 2; i++ {
		code, body := get(t, p.url+"/cart/bob")
		if code != 200 || body != fmt.Sprintf(`{"items":{},"user":"bob","views":%d}`+"\n", i) {
			t.Fatalf("GET %d: %d %q", i, code, body)
		}
	}
	if code, body := get(t, adminURL+"/v1/apps/cart/collections/stats/docs/pages"); code != 200 || body != `{"cart":2}`+"\n" {
		t.Fatalf("views through the admin API: %d %q", code, body)
	}
}
