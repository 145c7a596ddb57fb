package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/jsonapi"
	"github.com/verge-edge/verge/internal/wasm"
)

var quiet = slog.New(slog.DiscardHandler)

func fixture(name string) string { return filepath.Join("..", "wasm", "testdata", name) }

func engine(t *testing.T) *wasm.Engine {
	e, err := wasm.NewEngine(wasm.Options{CacheDir: "-", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	return e
}

func loadFn(t *testing.T, e *wasm.Engine, name, module string, routes []string, lim verge.Limits) *wasm.Function {
	t.Helper()
	f, err := e.Load(context.Background(), verge.Function{Name: name, Module: fixture(module), Executor: verge.ExecutorVerge,
		Isolation: verge.IsolationPooled, Routes: routes, Limits: lim.WithDefaults()})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func fetch(t *testing.T, method, url string, body io.Reader) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, url, body)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestRouting(t *testing.T) {
	t.Parallel()
	e := engine(t)
	g := New(quiet)
	defer g.Close()
	g.Set(loadFn(t, e, "hi", "hello.wasm", []string{"/hello", "/hello/*"}, verge.Limits{}))
	g.Set(loadFn(t, e, "bye", "bye.wasm", []string{"/hello/bye", "/bye/*"}, verge.Limits{}))
	srv := httptest.NewServer(g)
	defer srv.Close()
	for path, want := range map[string]string{"/hello": "hi", "/hello/": "hi", "/hello/x/y": "hi", "/hello/bye": "bye", "/bye": "bye", "/bye/1": "bye"} {
		code, body, h := fetch(t, "GET", srv.URL+path, nil)
		if code != 200 || body != want || h.Get(RequestIDHeader) == "" {
			t.Errorf("GET %s: %d %q (request id %q), want 200 %q", path, code, body, h.Get(RequestIDHeader), want)
		}
	}
	code, body, h := fetch(t, "GET", srv.URL+"/nothing", nil)
	var eb jsonapi.ErrorBody
	if code != 404 || json.Unmarshal([]byte(body), &eb) != nil || eb.Kind != "not_found" || eb.RequestID != h.Get(RequestIDHeader) {
		t.Fatalf("unrouted path: %d %s", code, body)
	}
}

func TestOversizedBody(t *testing.T) {
	t.Parallel()
	e := engine(t)
	g := New(quiet)
	defer g.Close()
	g.Set(loadFn(t, e, "hi", "hello.wasm", []string{"/*"}, verge.Limits{RequestBody: 1024}))
	srv := httptest.NewServer(g)
	defer srv.Close()
	big := strings.Repeat("x", 4096)
	// With a Content-Length, and chunked (the length unknown up front).
	for _, body := range []io.Reader{strings.NewReader(big), io.MultiReader(strings.NewReader(big))} {
		code, out, h := fetch(t, "POST", srv.URL+"/", body)
		var eb jsonapi.ErrorBody
		if err := json.Unmarshal([]byte(out), &eb); err != nil || code != 413 || eb.Limit != "request_body" || eb.RequestID != h.Get(RequestIDHeader) {
			t.Fatalf("oversized body: %d %s", code, out)
		}
	}
	if code, out, _ := fetch(t, "POST", srv.URL+"/", strings.NewReader("small")); code != 200 || out != "hi" {
		t.Fatalf("good request after oversized ones: %d %q", code, out)
	}
}

func TestSlowloris(t *testing.T) {
	t.Parallel()
	e := engine(t)
	g := New(quiet)
	defer g.Close()
	g.Set(loadFn(t, e, "hi", "hello.wasm", []string{"/*"}, verge.Limits{}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(g, ServerOptions{ReadHeaderTimeout: 300 * time.Millisecond}, quiet)
	go srv.Serve(ln)
	defer srv.Close()
	// A client that sends its headers one byte at a time, forever.
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	closed := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		msg := "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "
		for i := 0; i < 200; i++ { // bounded: 200 bytes over at most 10 s
			if _, err := conn.Write([]byte{msg[i%len(msg)]}); err != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, conn)
		closed <- time.Since(start)
	}()
	// Meanwhile good requests are served.
	code, body, _ := fetch(t, "GET", "http://"+ln.Addr().String()+"/", nil)
	if code != 200 || body != "hi" {
		t.Fatalf("good request during slowloris: %d %q", code, body)
	}
	select {
	case d := <-closed:
		if d > 5*time.Second {
			t.Fatalf("slow client held its connection %v", d)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("slow client was never disconnected")
	}
}

// TestReloadKeepsRequestsInFlight swaps a function while requests run on it:
// every request in flight completes on the old version, new ones get the new.
func TestReloadKeepsRequestsInFlight(t *testing.T) {
	t.Parallel()
	e := engine(t)
	g := New(quiet)
	defer g.Close()
	inFlight := make(chan struct{}, 8)
	g.acquired = func() { inFlight <- struct{}{} }
	g.Set(loadFn(t, e, "app", "slow.wasm", []string{"/*"}, verge.Limits{CPUTime: 30 * time.Second, WallTime: 60 * time.Second}))
	srv := httptest.NewServer(g)
	defer srv.Close()
	var wg sync.WaitGroup
	results := make(chan string, 8)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body, _ := fetch(t, "GET", srv.URL+"/", nil)
			results <- fmt.Sprintf("%d %s", code, body)
		}()
	}
	for range 4 { // every request holds the old version
		select {
		case <-inFlight:
		case <-time.After(30 * time.Second):
			t.Fatal("the requests never reached the function")
		}
	}
	g.Set(loadFn(t, e, "app", "hello.wasm", []string{"/*"}, verge.Limits{}))
	if code, body, _ := fetch(t, "GET", srv.URL+"/", nil); code != 200 || body != "hi" {
		t.Fatalf("after reload: %d %q, want the new version", code, body)
	}
	wg.Wait()
	close(results)
	for r := range results {
		if r != "200 slow" {
			t.Fatalf("request in flight during reload: %q, want \"200 slow\"", r)
		}
	}
}

func TestMalformedRequest(t *testing.T) {
	t.Parallel()
	e := engine(t)
	g := New(quiet)
	defer g.Close()
	g.Set(loadFn(t, e, "hi", "hello.wasm", []string{"/*"}, verge.Limits{}))
	srv := httptest.NewServer(g)
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GARBAGE\x00\x01 / HTTP/9.9\r\n\r\n")
	line, _ := bufio.NewReader(conn).ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 400") {
		t.Fatalf("malformed request: %q", line)
	}
	if code, body, _ := fetch(t, "GET", srv.URL+"/", nil); code != 200 || body != "hi" {
		t.Fatalf("good request after a malformed one: %d %q", code, body)
	}
}
