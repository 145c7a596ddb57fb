package main

import (
	"bytes"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testOrigin is the origin examples/proxy sits in front of in the tests: a
// real net/http server on loopback. Every response is cacheable for
// five minutes and tagged with its first path segment and "all"; its body
// names the path, the origin's version and how many requests it had.
type testOrigin struct {
	*httptest.Server
	version atomic.Value // string
	mu      sync.Mutex
	hits    map[string]int
}

func newOrigin(t *testing.T) *testOrigin {
	t.Helper()
	o := &testOrigin{hits: map[string]int{}}
	o.version.Store("v1")
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.hits[r.URL.Path]++
		n := o.hits[r.URL.Path]
		o.mu.Unlock()
		seg := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 2)[0]
		if seg == "slow" {
			time.Sleep(300 * time.Millisecond) // long enough for misses to pile up
		}
		// The page's two parts answer only once both were asked for: a
		// function fetching one after the other gets a 504 here.
		if other := map[string]string{"header": "content", "content": "header"}[seg]; other != "" {
			deadline := time.Now().Add(5 * time.Second)
			for o.countSeg(other) < o.countSeg(seg) {
				if time.Now().After(deadline) {
					http.Error(w, "the other part was not asked for: fetched one after the other?", http.StatusGatewayTimeout)
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Header().Set("Surrogate-Key", "all "+seg)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%s %s #%d\n", r.URL.RequestURI(), o.version.Load(), n)
	}))
	t.Cleanup(o.Close)
	return o
}

// countSeg counts the requests whose path starts with /seg.
func (o *testOrigin) countSeg(seg string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for p, c := range o.hits {
		if p == "/"+seg || strings.HasPrefix(p, "/"+seg+"/") {
			n += c
		}
	}
	return n
}

func (o *testOrigin) count(path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.hits[path]
}

// proxyApp copies examples/proxy (built) with its backend pointed at url.
func proxyApp(t *testing.T, url string) string {
	t.Helper()
	src := filepath.Join("..", "..", "examples", "proxy")
	if _, err := os.Stat(filepath.Join(src, "proxy.wasm")); err != nil {
		t.Fatalf("%s is not built (%v): run make examples", src, err)
	}
	dir := t.TempDir()
	copyFile(t, filepath.Join(src, "proxy.wasm"), filepath.Join(dir, "proxy.wasm"))
	b, err := os.ReadFile(filepath.Join(src, "verge.toml"))
	if err != nil {
		t.Fatal(err)
	}
	m := string(b)
	i := strings.Index(m, "url = \"")
	j := strings.Index(m[i+7:], "\"")
	if i < 0 || j < 0 {
		t.Fatal("examples/proxy/verge.toml has no backend url")
	}
	m = m[:i] + "url = \"" + url + "\"\nallow_private = true" + m[i+7+j+1:]
	if err := os.WriteFile(filepath.Join(dir, "verge.toml"), []byte(m), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

type cachedResp struct {
	code  int
	cache string
	age   int
	body  string
	hdr   http.Header
}

func getCached(t *testing.T, url string) cachedResp {
	t.Helper()
	c := &http.Client{Timeout: 20 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	age := -1
	if a := resp.Header.Get("Age"); a != "" {
		age, _ = strconv.Atoi(a)
	}
	return cachedResp{code: resp.StatusCode, cache: resp.Header.Get("X-Cache"), age: age, body: string(b), hdr: resp.Header}
}

// TestNetProxyCache: examples/proxy on a 3-PoP verge net in front of a real
// origin. Each PoP misses once, then serves from its cache without running
// the function (HIT, Age growing), with the header the function adds and
// no Surrogate-Key; the page assembled from two parallel fetches too.
func TestNetProxyCache(t *testing.T) {
	e2e(t)
	o := newOrigin(t)
	n := startNetApp(t, proxyApp(t, o.URL), 3)
	ids := []string{"ord", "sfo", "iad"}
	const path = "/item/1?color=red"
	for _, id := range ids {
		base := "http://" + n.pop(id).HTTP
		// An edge PoP reads its cache once it has synced purges with the
		// centre, right after it starts.
		var first cachedResp
		eventually(t, id+" serving through its cache", func() bool {
			first = getCached(t, base+path)
			return first.cache != "BYPASS"
		})
		if first.code != 200 || !strings.HasPrefix(first.body, path+" v1 ") || first.hdr.Get("X-Proxied-By") != "verge" {
			t.Fatalf("%s: first answer %d %q %v", id, first.code, first.body, first.hdr)
		}
		if first.hdr.Get("Surrogate-Key") != "" {
			t.Errorf("%s: Surrogate-Key reached the client", id)
		}
		second := getCached(t, base+path)
		if second.cache != "HIT" || second.body != first.body || second.age < 0 {
			t.Fatalf("%s: second answer X-Cache %q Age %d %q, want a HIT of %q", id, second.cache, second.age, second.body, first.body)
		}
		t.Logf("%s: %s then %s (Age %d)", id, first.cache, second.cache, second.age)
	}
	// One origin request per PoP at most (the function's fetch misses the
	// PoP's cache once; a BYPASS before the first sync may add one).
	if c := o.count("/item/1"); c < 3 || c > 6 {
		t.Errorf("the origin saw %d requests for /item/1, want one per PoP", c)
	}
	before := o.count("/item/1")
	time.Sleep(1100 * time.Millisecond)
	for _, id := range ids {
		r := getCached(t, "http://"+n.pop(id).HTTP+path)
		if r.cache != "HIT" || r.age < 1 {
			t.Errorf("%s: after a second, X-Cache %q Age %d; want a HIT with Age ≥ 1", id, r.cache, r.age)
		}
	}
	if c := o.count("/item/1"); c != before {
		t.Errorf("hits went to the origin: %d requests, then %d", before, c)
	}
	// Page assembly: two fetches in parallel (the origin answers neither
	// until both arrived), one page, cached.
	for _, id := range ids {
		base := "http://" + n.pop(id).HTTP
		p1 := getCached(t, base+"/page/home")
		if p1.code != 200 || !strings.Contains(p1.body, "/header v1") || !strings.Contains(p1.body, "/content/home v1") {
			t.Fatalf("%s: page %d %q", id, p1.code, p1.body)
		}
		p2 := getCached(t, base+"/page/home")
		if p2.cache != "HIT" || p2.body != p1.body {
			t.Fatalf("%s: page again: X-Cache %q", id, p2.cache)
		}
	}
}

// TestNetPurgePartition: a purge by surrogate key at one edge PoP empties
// every reachable PoP's cache; a PoP partitioned during the purge is named,
// serves without its cache while cut off, and never serves the purged
// object after the partition heals.
func TestNetPurgePartition(t *testing.T) {
	e2e(t)
	o := newOrigin(t)
	n := startNetApp(t, proxyApp(t, o.URL), 3)
	ids := []string{"ord", "sfo", "iad"}
	url := func(id string) string { return "http://" + n.pop(id).HTTP + "/obj/1" }
	for _, id := range ids {
		eventually(t, id+" serving v1 from its cache", func() bool {
			r := getCached(t, url(id))
			return r.cache == "HIT" && strings.Contains(r.body, " v1 ")
		})
	}
	netCmd(t, "partition", "--dir", n.dir, "iad", "all")
	eventually(t, "iad bypassing its cache, cut off from the centre", func() bool {
		return getCached(t, url("iad")).cache == "BYPASS"
	})
	o.version.Store("v2")
	code, out := vergeCmd(t, "purge", "--net", n.dir, "--pop", "sfo", "proxy", "--key", "obj")
	if code != 0 || !strings.Contains(out, "not reached: iad") || !strings.Contains(out, "ord, sfo") {
		t.Fatalf("verge purge: %d\n%s", code, out)
	}
	t.Log(strings.TrimSpace(out))
	for _, id := range []string{"ord", "sfo"} {
		if r := getCached(t, url(id)); r.cache != "MISS" || !strings.Contains(r.body, " v2 ") {
			t.Fatalf("%s after the purge: X-Cache %q %q, want a MISS of v2", id, r.cache, r.body)
		}
	}
	if r := getCached(t, url("iad")); strings.Contains(r.body, " v1 ") {
		t.Fatalf("iad, partitioned, served the purged object: %q (X-Cache %s)", r.body, r.cache)
	}
	netCmd(t, "heal", "--dir", n.dir)
	// From the heal on, iad never serves v1, and soon serves v2 from its
	// cache again.
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := getCached(t, url("iad"))
		if strings.Contains(r.body, " v1 ") {
			t.Fatalf("iad served the purged object after the heal: %q (X-Cache %s)", r.body, r.cache)
		}
		if r.cache == "HIT" && strings.Contains(r.body, " v2 ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("iad did not serve v2 from its cache within 30 s of the heal (last: X-Cache %s %q)", r.cache, r.body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A purge with every PoP reachable names none.
	code, out = vergeCmd(t, "purge", "--net", n.dir, "proxy", "--all", "--soft")
	if code != 0 || strings.Contains(out, "not reached") || !strings.Contains(out, "3 PoPs") {
		t.Fatalf("verge purge --all: %d\n%s", code, out)
	}
}

// TestDevProxyCache: examples/proxy under verge dev (a network of one PoP,
// its own centre): fetch, the cache and `verge purge --to`.
func TestDevProxyCache(t *testing.T) {
	e2e(t)
	t.Parallel()
	o := newOrigin(t)
	p, admin := startDevAdmin(t, proxyApp(t, o.URL), "--no-build")
	first := getCached(t, p.url+"/obj/7")
	second := getCached(t, p.url+"/obj/7")
	if first.cache != "MISS" || second.cache != "HIT" || second.body != first.body || !strings.HasPrefix(first.body, "/obj/7 v1 #1") {
		t.Fatalf("verge dev: %q %q then %q %q", first.cache, first.body, second.cache, second.body)
	}
	// A hit is a request of its own: its own request id, not the one of
	// the run that filled the cache; the PoP's and version's headers as
	// on any response.
	third := getCached(t, p.url+"/obj/7")
	ids := map[string]bool{}
	for _, r := range []cachedResp{first, second, third} {
		ids[r.hdr.Get("X-Verge-Request-Id")] = true
		if r.hdr.Get("Verge-PoP") == "" || r.hdr.Get("Verge-Version") != first.hdr.Get("Verge-Version") || r.hdr.Get("Verge-Version") == "" {
			t.Errorf("%s: Verge-PoP %q, Verge-Version %q", r.cache, r.hdr.Get("Verge-PoP"), r.hdr.Get("Verge-Version"))
		}
	}
	if len(ids) != 3 || ids[""] || third.cache != "HIT" {
		t.Errorf("request ids of a miss and two hits: %v (%s), want three distinct ids", ids, third.cache)
	}
	// 100 concurrent misses of one URL: one run of the function, one
	// origin request.
	var wg sync.WaitGroup
	labels := make([]string, 100)
	reqIDs := make([]string, 100)
	for i := range labels {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := (&http.Client{Timeout: 30 * time.Second}).Get(p.url + "/slow/1")
			if err != nil {
				labels[i] = err.Error()
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			labels[i] = resp.Header.Get("X-Cache")
			reqIDs[i] = resp.Header.Get("X-Verge-Request-Id")
		}()
	}
	wg.Wait()
	if distinct := len(slices.Compact(slices.Sorted(slices.Values(reqIDs)))); distinct != len(reqIDs) || slices.Contains(reqIDs, "") {
		t.Errorf("100 collapsed requests carry %d distinct request ids, want 100", distinct)
	}
	if c := o.count("/slow/1"); c != 1 {
		t.Errorf("100 concurrent misses made %d origin requests, want 1", c)
	}
	for _, l := range labels {
		if l != "MISS" && l != "HIT" {
			t.Errorf("a collapsed request answered X-Cache %q", l)
			break
		}
	}
	o.version.Store("v2")
	code, out := vergeCmd(t, "purge", "--to", admin, "proxy", "--url", "/obj/7")
	if code != 0 || !strings.Contains(out, "at 1 PoPs (dev)") {
		t.Fatalf("verge purge: %d\n%s", code, out)
	}
	if r := getCached(t, p.url+"/obj/7"); r.cache != "MISS" || !strings.Contains(r.body, " v2 ") {
		t.Fatalf("after the purge: %q %q", r.cache, r.body)
	}
}

// TestDevProxyTLSOrigin: examples/proxy in front of an https origin whose
// certificate the backend's ca_file trusts.
func TestDevProxyTLSOrigin(t *testing.T) {
	e2e(t)
	t.Parallel()
	origin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=60")
		fmt.Fprintf(w, "tls %s", r.URL.Path)
	}))
	defer origin.Close()
	dir := proxyApp(t, origin.URL)
	pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: origin.Certificate().Raw})
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), pemCert, 0o644); err != nil {
		t.Fatal(err)
	}
	m, _ := os.ReadFile(filepath.Join(dir, "verge.toml"))
	m = []byte(strings.Replace(string(m), "\nallow_private = true", "\nallow_private = true\nca_file = \"ca.pem\"", 1))
	if err := os.WriteFile(filepath.Join(dir, "verge.toml"), m, 0o644); err != nil {
		t.Fatal(err)
	}
	p, _ := startDevAdmin(t, dir, "--no-build")
	first := getCached(t, p.url+"/secure")
	second := getCached(t, p.url+"/secure")
	if first.code != 200 || first.body != "tls /secure" || first.cache != "MISS" || second.cache != "HIT" {
		t.Fatalf("through an https origin: %d %q %s, then %s", first.code, first.body, first.cache, second.cache)
	}
}

// TestDevProxyStreamsGigabyte: 1 GiB from an origin (chunked, no length)
// through examples/proxy under verge dev reaches the client whole, and the
// verge process's resident memory stays flat: the function streams it.
func TestDevProxyStreamsGigabyte(t *testing.T) {
	e2e(t)
	t.Parallel()
	const size = 1 << 30
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	t.Cleanup(origin.Close)
	p, _ := startDevAdmin(t, proxyApp(t, origin.URL), "--no-build")
	rss := func() int64 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
		if err != nil {
			return 0
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				return kb << 10
			}
		}
		return 0
	}
	base := rss()
	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if r := rss(); r > peak.Load() {
				peak.Store(r)
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	resp, err := (&http.Client{Timeout: 5 * time.Minute}).Get(p.url + "/big")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	close(stop)
	<-sampled
	if err != nil || n != size || resp.StatusCode != 200 || resp.Header.Get("X-Proxied-By") != "verge" {
		t.Fatalf("got %d bytes, %v, status %d, %v\n%s", n, err, resp.StatusCode, resp.Header, p.stderr)
	}
	growth := peak.Load() - base
	t.Logf("verge dev's RSS: %d MiB before, at most %d MiB while 1 GiB streamed", base>>20, peak.Load()>>20)
	if growth > 64<<20 {
		t.Fatalf("verge dev's RSS grew by %d MiB while proxying 1 GiB", growth>>20)
	}
}

// TestDevProxyOriginBreaksOff: an origin that dies 4 MiB into a streamed
// body: the client's read fails, it never gets a short body as whole.
func TestDevProxyOriginBreaksOff(t *testing.T) {
	e2e(t)
	t.Parallel()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Write(bytes.Repeat([]byte("x"), 4<<20))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the connection is cut mid-body
	}))
	t.Cleanup(origin.Close)
	p, _ := startDevAdmin(t, proxyApp(t, origin.URL), "--no-build")
	resp, err := (&http.Client{Timeout: time.Minute}).Get(p.url + "/broken")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Fatalf("a body cut at the origin reached the client as complete (%d bytes, status %d)", n, resp.StatusCode)
	}
}
