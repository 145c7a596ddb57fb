// proxy sits in front of one origin (the backend "origin" of its
// verge.toml): every request's path and query are fetched from it and the
// response is passed on with one header added, cacheable as the origin
// says, so the PoP's cache serves repeats without running the function.
//
// Bodies over 1 MiB, or of unknown length, are streamed: the client gets
// them as the origin sends them, and the PoP never holds more than a chunk.
//
// /page/NAME assembles a page from two origin calls made in parallel:
// /header and /content/NAME. Both fetches are started (FetchAsync) before
// either is waited for, so they run at the same time in the host although
// the guest itself is single-threaded.
package main

import (
	"io"
	"strconv"
	"strings"

	"github.com/verge-edge/verge/sdk/go/verge"
)

func init() {
	verge.HandleFunc(serve)
}

// hop-by-hop fields, and the fetch's own cache report, are not passed on.
var skip = map[string]bool{"Connection": true, "Keep-Alive": true, "Transfer-Encoding": true, "Te": true,
	"Trailer": true, "Upgrade": true, "Proxy-Authenticate": true, "X-Cache": true}

// forwarded are the request fields sent on to the origin.
var forwarded = []string{"Accept", "Accept-Language", "Accept-Encoding", "User-Agent", "If-None-Match", "If-Modified-Since"}

func serve(w verge.ResponseWriter, r *verge.Request) {
	if name, ok := strings.CutPrefix(r.URL.Path, "/page/"); ok {
		page(w, name)
		return
	}
	target := r.URL.EscapedPath()
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}
	req, err := verge.NewRequest(r.Method, target, nil)
	if err != nil {
		http(w, 400, "bad target: "+err.Error())
		return
	}
	for _, k := range forwarded {
		if v := r.Header.Get(k); v != "" {
			req.Header.Set(k, v)
		}
	}
	resp, err := verge.Fetch(req, "origin")
	if err != nil {
		http(w, 502, "origin: "+err.Error())
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		if !skip[k] {
			w.Header()[k] = vs
		}
	}
	w.Header().Set("X-Proxied-By", "verge")
	w.WriteHeader(resp.StatusCode)
	if n, err := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64); err == nil && n <= streamAbove {
		io.Copy(w, resp.Body) // small: sent whole at the end, one host call
		return
	}
	// Large, or of unknown length: streamed as it comes, so the PoP holds
	// one chunk at a time whatever the size (with the origin's
	// Content-Length when it sent one).
	f := w.(verge.Flusher)
	f.Flush()
	buf := make([]byte, 64<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			f.Flush()
		}
		if err == io.EOF {
			return
		}
		if err != nil {
			// The head is out: failing is how the client learns the body
			// broke off (the PoP cuts the connection).
			panic("origin: " + err.Error())
		}
	}
}

// streamAbove is the body size past which a response is streamed.
const streamAbove = 1 << 20

// page fetches the header and the content in parallel and combines them.
// The page is cacheable for as long as both parts are, and carries both
// parts' surrogate keys, so purging either part's key purges the page.
func page(w verge.ResponseWriter, name string) {
	paths := []string{"/header", "/content/" + name}
	var pending []*verge.Pending
	for _, p := range paths {
		req, _ := verge.NewRequest("GET", p, nil)
		f, err := verge.FetchAsync(req, "origin")
		if err != nil {
			http(w, 502, "origin: "+err.Error())
			return
		}
		pending = append(pending, f)
	}
	var parts []string
	var keys []string
	ttl := -1
	for i, f := range pending {
		resp, err := f.Wait()
		if err != nil {
			http(w, 502, "origin "+paths[i]+": "+err.Error())
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			http(w, 502, "origin "+paths[i]+": status "+strconv.Itoa(resp.StatusCode))
			return
		}
		parts = append(parts, string(b))
		keys = append(keys, strings.Fields(resp.Header.Get("Surrogate-Key"))...)
		t := maxAge(resp.Header.Get("Cache-Control"))
		if ttl < 0 || t < ttl {
			ttl = t
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if ttl > 0 {
		w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(ttl))
	} else {
		w.Header().Set("Cache-Control", "no-store")
	}
	if len(keys) > 0 {
		w.Header().Set("Surrogate-Key", strings.Join(keys, " "))
	}
	w.Header().Set("X-Proxied-By", "verge")
	io.WriteString(w, "<!doctype html>\n<html><body>\n"+parts[0]+"\n"+parts[1]+"\n</body></html>\n")
}

// maxAge is the freshness a shared cache may give a response: s-maxage,
// else max-age; 0 when it says no-store, private or no-cache, or nothing.
func maxAge(cc string) int {
	sm, ma := -1, -1
	for _, d := range strings.Split(cc, ",") {
		d = strings.ToLower(strings.TrimSpace(d))
		switch {
		case d == "no-store" || d == "private" || d == "no-cache":
			return 0
		case strings.HasPrefix(d, "s-maxage="):
			sm, _ = strconv.Atoi(d[len("s-maxage="):])
		case strings.HasPrefix(d, "max-age="):
			ma, _ = strconv.Atoi(d[len("max-age="):])
		}
	}
	if sm >= 0 {
		return sm
	}
	return max(ma, 0)
}

func http(w verge.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	io.WriteString(w, msg+"\n")
}

// main is not called: the module is a reactor (-buildmode=c-shared) whose
// handler is registered by init.
func main() {}
