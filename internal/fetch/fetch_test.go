package fetch

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/cache"
)

// resolver is DNS as a test wants it: names to addresses, and a count of
// lookups.
type resolver struct {
	mu      sync.Mutex
	names   map[string][]netip.Addr
	lookups int
	block   bool // lookups wait for their context (a DNS server that never answers)
}

func (r *resolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	r.lookups++
	addrs, ok := r.names[host]
	block := r.block
	r.mu.Unlock()
	if block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return addrs, nil
}

func loopback(names ...string) *resolver {
	r := &resolver{names: map[string][]netip.Addr{}}
	for _, n := range names {
		r.names[n] = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	}
	return r
}

// server is a test origin that counts its requests.
type server struct {
	*httptest.Server
	n atomic.Int64
}

func newServer(t testing.TB, tls bool, h http.HandlerFunc) *server {
	s := &server{}
	wrapped := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.n.Add(1)
		h(w, r)
	})
	if tls {
		s.Server = httptest.NewTLSServer(wrapped)
	} else {
		s.Server = httptest.NewServer(wrapped)
	}
	t.Cleanup(s.Close)
	return s
}

func (s *server) port() string {
	_, p, _ := net.SplitHostPort(s.Listener.Addr().String())
	return p
}

func newService(t testing.TB, backends []verge.Backend, opts Options) *Service {
	t.Helper()
	s, err := New("app", backends, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func get(t testing.TB, ss *Session, backend, target string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequest("GET", target, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ss.Do(context.Background(), req, Params{Backend: backend})
}

func readAll(t testing.TB, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return string(b)
}

func mustFail(t testing.TB, err error, kind error, contains string) {
	t.Helper()
	if !errors.Is(err, kind) || !strings.Contains(fmt.Sprint(err), contains) {
		t.Fatalf("got %v; want %v saying %q", err, kind, contains)
	}
}

func TestFetch(t *testing.T) {
	origin := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s host=%s x=%s body=%s", r.Method, r.URL.RequestURI(), r.Host, r.Header.Get("X-Test"), b)
	})
	s := newService(t, []verge.Backend{{Name: "origin", URL: origin.URL, AllowPrivate: true}}, Options{})
	ss := s.Session()
	defer ss.Close()
	req, _ := http.NewRequest("POST", "/items/a%2Fb?q=1", strings.NewReader("hello"))
	req.Header.Set("X-Test", "yes")
	resp, err := ss.Do(context.Background(), req, Params{Backend: "origin"})
	if err != nil {
		t.Fatal(err)
	}
	want := "POST /items/a%2Fb?q=1 host=" + origin.Listener.Addr().String() + " x=yes body=hello"
	if got := readAll(t, resp); got != want {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	// An absolute URL on the backend's origin picks it without a name.
	resp, err = get(t, ss, "", origin.URL+"/abs")
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, resp); !strings.HasPrefix(got, "GET /abs ") {
		t.Fatalf("got %q", got)
	}
	// req.Host is sent as the Host header.
	req, _ = http.NewRequest("GET", "/h", nil)
	req.Host = "virtual.example"
	resp, err = ss.Do(context.Background(), req, Params{Backend: "origin"})
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, resp); !strings.Contains(got, "host=virtual.example") {
		t.Fatalf("got %q", got)
	}
}

func TestNotDeclared(t *testing.T) {
	origin := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {})
	other := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {})
	s := newService(t, []verge.Backend{{Name: "origin", URL: origin.URL, AllowPrivate: true}}, Options{})
	ss := s.Session()
	_, err := get(t, ss, "nope", "/")
	mustFail(t, err, ErrNotDeclared, `no backend named "nope"; the app declares origin`)
	_, err = get(t, ss, "", other.URL+"/")
	mustFail(t, err, ErrNotDeclared, "is not a declared backend")
	_, err = get(t, ss, "origin", other.URL+"/")
	mustFail(t, err, ErrNotDeclared, `is not backend "origin"'s`)
	_, err = get(t, ss, "origin", "https://"+origin.Listener.Addr().String()+"/") // another scheme is another origin
	mustFail(t, err, ErrNotDeclared, `is not backend "origin"'s`)
	_, err = get(t, ss, "", "/relative")
	mustFail(t, err, ErrNotDeclared, "no backend named")
	if other.n.Load() != 0 || origin.n.Load() != 0 {
		t.Fatal("an undeclared fetch reached a server")
	}
	s2 := newService(t, nil, Options{})
	_, err = get(t, s2.Session(), "origin", "/")
	mustFail(t, err, ErrNotDeclared, "declares no [[backend]]")
}

func TestSSRF(t *testing.T) {
	secret := newServer(t, false, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("secret")) })
	t.Run("loopback literal without allow_private", func(t *testing.T) {
		s := newService(t, []verge.Backend{{Name: "b", URL: secret.URL}}, Options{})
		_, err := get(t, s.Session(), "b", "/")
		mustFail(t, err, ErrForbiddenAddress, `backend "b": 127.0.0.1 is a loopback address; a backend reaches public addresses only unless it sets allow_private = true`)
	})
	t.Run("a name resolving to loopback", func(t *testing.T) {
		res := loopback("evil.example")
		s := newService(t, []verge.Backend{{Name: "b", URL: "http://evil.example:" + secret.port()}}, Options{Resolver: res})
		_, err := get(t, s.Session(), "b", "/")
		mustFail(t, err, ErrForbiddenAddress, `backend "b": evil.example resolves to 127.0.0.1 (a loopback address)`)
		if res.lookups != 1 {
			t.Fatalf("%d lookups: the host did not resolve the name itself", res.lookups)
		}
	})
	t.Run("every answer is checked", func(t *testing.T) {
		res := &resolver{names: map[string][]netip.Addr{"mixed.example": {
			netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("169.254.169.254"), netip.MustParseAddr("::ffff:127.0.0.1"),
		}}}
		s := newService(t, []verge.Backend{{Name: "b", URL: "http://mixed.example:" + secret.port()}}, Options{Resolver: res})
		_, err := get(t, s.Session(), "b", "/")
		mustFail(t, err, ErrForbiddenAddress, "10.1.2.3 (a private address), 169.254.169.254 (a link-local address), ::ffff:127.0.0.1 (a loopback address)")
	})
	t.Run("allow_private reaches it", func(t *testing.T) {
		s := newService(t, []verge.Backend{{Name: "b", URL: "http://evil.example:" + secret.port(), AllowPrivate: true}}, Options{Resolver: loopback("evil.example")})
		resp, err := get(t, s.Session(), "b", "/")
		if err != nil {
			t.Fatal(err)
		}
		if readAll(t, resp) != "secret" {
			t.Fatal("allow_private did not reach the server")
		}
	})
	t.Run("redirects are not followed", func(t *testing.T) {
		before := secret.n.Load()
		redirector := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, secret.URL+"/admin", http.StatusFound)
		})
		s := newService(t, []verge.Backend{{Name: "b", URL: redirector.URL, AllowPrivate: true}}, Options{})
		resp, err := get(t, s.Session(), "b", "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != secret.URL+"/admin" || secret.n.Load() != before {
			t.Fatalf("got %d to %q; the secret server had %d requests", resp.StatusCode, resp.Header.Get("Location"), secret.n.Load()-before)
		}
		// Following it by hand is a new fetch, through the same checks.
		_, err = get(t, s.Session(), "", resp.Header.Get("Location"))
		mustFail(t, err, ErrNotDeclared, "is not a declared backend")
	})
	t.Run("the proxy of the environment is not used", func(t *testing.T) {
		proxy := newServer(t, false, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("proxied")) })
		t.Setenv("HTTP_PROXY", proxy.URL)
		t.Setenv("http_proxy", proxy.URL)
		s := newService(t, []verge.Backend{{Name: "b", URL: "http://evil.example:" + secret.port()}}, Options{Resolver: loopback("evil.example")})
		_, err := get(t, s.Session(), "b", "/")
		mustFail(t, err, ErrForbiddenAddress, "loopback")
		if proxy.n.Load() != 0 {
			t.Fatal("the request went through HTTP_PROXY")
		}
	})
	if secret.n.Load() != 1 {
		t.Fatalf("the secret server had %d requests; only allow_private's", secret.n.Load())
	}
}

// The socket's own address is checked before it connects: the last word,
// whatever resolved it.
func TestDialControl(t *testing.T) {
	d := &dialer{backend: "b"}
	for _, a := range []string{"127.0.0.1:80", "[::1]:443", "169.254.169.254:80", "10.0.0.1:8080", "[fd00::1]:80", "0.0.0.0:80", "[::ffff:127.0.0.1]:80"} {
		if err := d.control("tcp", a, nil); !errors.Is(err, ErrForbiddenAddress) {
			t.Errorf("%s: %v", a, err)
		}
	}
	for _, a := range []string{"8.8.8.8:53", "[2606:4700::1111]:443"} {
		if err := d.control("tcp", a, nil); err != nil {
			t.Errorf("%s: %v", a, err)
		}
	}
	d.allowPrivate = true
	if err := d.control("tcp", "127.0.0.1:80", nil); err != nil {
		t.Error(err)
	}
}

func TestTimeouts(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	slow := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/trickle" {
			w.Write([]byte("start"))
			w.(http.Flusher).Flush()
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Run("first byte", func(t *testing.T) {
		s := newService(t, []verge.Backend{{Name: "slow", URL: slow.URL, AllowPrivate: true, FirstByteTimeout: 50 * time.Millisecond}}, Options{})
		_, err := get(t, s.Session(), "slow", "/")
		mustFail(t, err, ErrTimeout, `backend "slow" sent no response within its first_byte_timeout of 50ms`)
	})
	t.Run("total", func(t *testing.T) {
		s := newService(t, []verge.Backend{{Name: "slow", URL: slow.URL, AllowPrivate: true, Timeout: 100 * time.Millisecond}}, Options{})
		resp, err := get(t, s.Session(), "slow", "/trickle")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if string(b) != "start" {
			t.Fatalf("read %q", b)
		}
		mustFail(t, err, ErrTimeout, "did not finish within its timeout of 100ms")
	})
	t.Run("the guest's deadline is the guest's", func(t *testing.T) {
		s := newService(t, []verge.Backend{{Name: "slow", URL: slow.URL, AllowPrivate: true}}, Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequest("GET", "/", nil)
		_, err := s.Session().Do(ctx, req, Params{Backend: "slow"})
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrTimeout) {
			t.Fatalf("got %v; want the context's deadline", err)
		}
	})
	t.Run("resolving within connect_timeout", func(t *testing.T) {
		s := newService(t, []verge.Backend{{Name: "b", URL: "http://never.example", ConnectTimeout: 50 * time.Millisecond}}, Options{Resolver: &resolver{block: true}})
		_, err := get(t, s.Session(), "b", "/")
		mustFail(t, err, ErrTimeout, "resolving never.example timed out")
	})
}

func TestUnavailable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nobody listens there now
	s := newService(t, []verge.Backend{{Name: "down", URL: "http://" + addr, AllowPrivate: true},
		{Name: "nxdomain", URL: "http://nowhere.example"}}, Options{Resolver: loopback()})
	_, err = get(t, s.Session(), "down", "/")
	mustFail(t, err, ErrUnavailable, "connection refused")
	_, err = get(t, s.Session(), "nxdomain", "/")
	mustFail(t, err, ErrUnavailable, "resolving nowhere.example")
}

func TestBodyLimits(t *testing.T) {
	origin := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		size := 0
		fmt.Sscan(r.URL.Query().Get("size"), &size)
		if r.URL.Query().Get("chunked") == "" {
			w.Header().Set("Content-Length", fmt.Sprint(size))
		}
		w.Header().Set("X-Received", fmt.Sprint(n))
		w.Write([]byte(strings.Repeat("x", size)))
	})
	s := newService(t, []verge.Backend{{Name: "o", URL: origin.URL, AllowPrivate: true, MaxBody: 1000}}, Options{})
	ss := s.Session()
	defer ss.Close()
	resp, err := get(t, ss, "o", "/?size=1000&chunked=1")
	if err != nil || len(readAll(t, resp)) != 1000 {
		t.Fatalf("exactly max_body: %v", err)
	}
	_, err = get(t, ss, "o", "/?size=1001")
	mustFail(t, err, ErrTooLarge, "declares 1001 bytes, over its max_body of 1000")
	resp, err = get(t, ss, "o", "/?size=5000&chunked=1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	mustFail(t, err, ErrTooLarge, "exceeds its max_body")

	req, _ := http.NewRequest("POST", "/", strings.NewReader(strings.Repeat("y", 1001)))
	_, err = ss.Do(context.Background(), req, Params{Backend: "o"})
	mustFail(t, err, ErrTooLarge, "request body of 1001 bytes")
	// A streamed request body of unknown length is cut at the limit.
	req, _ = http.NewRequest("POST", "/", io.MultiReader(strings.NewReader(strings.Repeat("y", 600)), strings.NewReader(strings.Repeat("y", 600))))
	req.ContentLength = -1
	_, err = ss.Do(context.Background(), req, Params{Backend: "o"})
	mustFail(t, err, ErrTooLarge, "request body of backend \"o\" exceeds its max_body")
}

func TestMaxFetches(t *testing.T) {
	origin := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {})
	s := newService(t, []verge.Backend{{Name: "o", URL: origin.URL, AllowPrivate: true}}, Options{MaxFetches: 3})
	ss := s.Session()
	for range 3 {
		resp, err := get(t, ss, "o", "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	_, err := get(t, ss, "o", "/")
	mustFail(t, err, ErrTooManyFetches, "already made 3 fetches")
	// Another guest request has its own count.
	resp, err := get(t, s.Session(), "o", "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

func TestSessionCloseClosesBodies(t *testing.T) {
	gone := make(chan struct{})
	origin := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("endless"))
		w.(http.Flusher).Flush()
		<-r.Context().Done() // until the client hangs up
		close(gone)
	})
	s := newService(t, []verge.Backend{{Name: "o", URL: origin.URL, AllowPrivate: true}}, Options{})
	ss := s.Session()
	resp, err := get(t, ss, "o", "/")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 7)
	io.ReadFull(resp.Body, buf)
	ss.Close() // the guest request ended without closing it
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the backend's connection stayed open after the session closed")
	}
}

// writeCA writes the test server's certificate as a PEM CA file.
func writeCA(t testing.TB, s *server) string {
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTLS(t *testing.T) {
	origin := newServer(t, true, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls=%v sni=%s", r.TLS != nil, r.TLS.ServerName)
	})
	ca := writeCA(t, origin)
	res := loopback("origin.test")
	port := origin.port()
	t.Run("ca_file", func(t *testing.T) {
		s := newService(t, []verge.Backend{{Name: "o", URL: "https://127.0.0.1:" + port, AllowPrivate: true, CAFile: ca}}, Options{})
		resp, err := get(t, s.Session(), "o", "/")
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, resp); got != "tls=true sni=" { // no SNI for an IP address
			t.Fatalf("got %q", got)
		}
	})
	t.Run("sni", func(t *testing.T) {
		// The certificate names example.com; the backend's host is another
		// name: sni says which name to send and verify.
		s := newService(t, []verge.Backend{{Name: "o", URL: "https://origin.test:" + port, AllowPrivate: true, CAFile: ca, SNI: "example.com"}}, Options{Resolver: res})
		resp, err := get(t, s.Session(), "o", "/")
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, resp); got != "tls=true sni=example.com" {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("the wrong name is refused", func(t *testing.T) {
		s := newService(t, []verge.Backend{{Name: "o", URL: "https://origin.test:" + port, AllowPrivate: true, CAFile: ca}}, Options{Resolver: res})
		_, err := get(t, s.Session(), "o", "/")
		mustFail(t, err, ErrUnavailable, "certificate is valid for")
	})
	t.Run("an unknown authority is refused", func(t *testing.T) {
		s := newService(t, []verge.Backend{{Name: "o", URL: "https://127.0.0.1:" + port, AllowPrivate: true}}, Options{})
		_, err := get(t, s.Session(), "o", "/")
		mustFail(t, err, ErrUnavailable, "certificate")
	})
	t.Run("a bad ca_file fails the deploy", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.pem")
		os.WriteFile(bad, []byte("not pem"), 0o644)
		for file, want := range map[string]string{bad: "holds no PEM certificate", bad + ".missing": "no such file"} {
			_, err := New("app", []verge.Backend{{Name: "o", URL: "https://a.example", CAFile: file}}, Options{})
			if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), `backend "o"`) {
				t.Fatalf("got %v; want %q", err, want)
			}
		}
	})
}

func TestThroughTheCache(t *testing.T) {
	origin := newServer(t, true, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Surrogate-Key", "k")
		w.Write([]byte("cached " + r.URL.Path))
	})
	c := cache.New(cache.Options{})
	s := newService(t, []verge.Backend{{Name: "o", URL: origin.URL, AllowPrivate: true, CAFile: writeCA(t, origin)}}, Options{Cache: c})
	ss := s.Session()
	defer ss.Close()
	for i, want := range []string{cache.Miss, cache.Hit} {
		resp, err := get(t, ss, "o", "/a")
		if err != nil {
			t.Fatal(err)
		}
		if body := readAll(t, resp); resp.Header.Get(cache.HeaderXCache) != want || body != "cached /a" || origin.n.Load() != 1 {
			t.Fatalf("fetch %d: %s %q after %d origin requests", i, resp.Header.Get(cache.HeaderXCache), body, origin.n.Load())
		}
	}
	req, _ := http.NewRequest("GET", "/a", nil)
	resp, err := ss.Do(context.Background(), req, Params{Backend: "o", NoCache: true})
	if err != nil {
		t.Fatal(err)
	}
	if readAll(t, resp); resp.Header.Get(cache.HeaderXCache) != "" || origin.n.Load() != 2 {
		t.Fatalf("NoCache: %q after %d origin requests", resp.Header.Get(cache.HeaderXCache), origin.n.Load())
	}
	c.Purge("app", cache.Purge{Keys: []string{"k"}})
	resp, _ = get(t, ss, "o", "/a")
	if readAll(t, resp); resp.Header.Get(cache.HeaderXCache) != cache.Miss {
		t.Fatal("purge by key did not reach a fetched response")
	}
	// Errors keep their kind through the cache.
	_, err = get(t, ss, "nope", "/a")
	mustFail(t, err, ErrNotDeclared, "nope")
}
