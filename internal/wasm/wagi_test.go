package wasm

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/verge-edge/verge"
)

func TestParseCGI(t *testing.T) {
	t.Parallel()
	w := &wagiStreams{}
	for _, c := range []struct {
		out, status, header, body string
	}{
		{"Content-Type: text/plain\n\nhi", "200", "text/plain", "hi"},
		{"content-type: text/plain\r\nX-A:  1 \r\n\r\nhi\n", "200", "text/plain", "hi\n"},
		{"Status: 404 Not Found\nContent-Type: a\n\n", "404", "a", ""},
		{"Status: 404 Not Found\nContent-Type: a\n\n", "404", "a", ""}, // the cached head again
		{"Location: /x\n\n", "302", "", ""},
		{"Content-Type: a;\n b=c\n\nz", "200", "a; b=c", "z"},
	} {
		resp, err := w.parseCGI([]byte(c.out))
		if err != nil {
			t.Fatalf("%q: %v", c.out, err)
		}
		if strconv.Itoa(resp.Status) != c.status ||
			resp.Header.Get("Content-Type") != c.header || string(resp.Body) != c.body || resp.Header.Get("Status") != "" {
			t.Fatalf("%q: got %d %v %q", c.out, resp.Status, resp.Header, resp.Body)
		}
	}
	for _, out := range []string{"", "no blank line\n", "bad line\n\n", "Status: abc\n\n", " continued\n\n"} {
		_, err := w.parseCGI([]byte(out))
		var e *Error
		if !errors.As(err, &e) || e.Kind != KindBadResponse {
			t.Fatalf("%q: got %v, want a bad_response error", out, err)
		}
	}
}

// A WAGI function's environment and response are right request after
// request, its streams being reused.
func TestWAGIRequestsInTurn(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	f := load(t, e, verge.Function{Module: buildGo(t, "examples/hello-wagi-go", false), Executor: verge.ExecutorWAGI, Routes: []string{"/hello", "/hello/*"}})
	for i, name := range []string{"ada", "grace", "ada"} {
		req := get("/hello/" + name)
		req.Route = "/hello/*"
		resp, err := f.Serve(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != 200 || !strings.Contains(string(resp.Body), name) {
			t.Fatalf("request %d for %s: %d %q", i, name, resp.Status, resp.Body)
		}
	}
}

// Every WAGI request runs on a fresh instance: restored to its state
// before _start, none of a run's writes to memory or globals reach the
// next, and an exit does not break the instance.
func TestWAGIRequestsDoNotShareState(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	f := load(t, e, verge.Function{Module: fixture("wagi_state.wasm"), Executor: verge.ExecutorWAGI})
	if f.pool == nil || f.snap == nil {
		t.Fatal("the command module is not restored from a snapshot")
	}
	for i := 0; i < 4; i++ {
		serveOK(t, f, "/", "11")
		req := get("/")
		req.Query, req.URI = "exit", "/?exit"
		_, err := f.Serve(context.Background(), req)
		var re *Error
		if !errors.As(err, &re) || re.Kind != KindExit || !strings.Contains(re.Msg, "code 3") {
			t.Fatalf("exit 3: got %v", err)
		}
	}
}

// A WAGI program's stderr lines are logged with the request's context, so
// that the log handler (obs.LogHandler) puts its trace and span ids on
// them as on the guest's own log lines; the last line, without a newline,
// is logged when the run ends.
func TestWAGIStderrCarriesTheRequestContext(t *testing.T) {
	t.Parallel()
	h := &ctxHandler{}
	e, err := NewEngine(Options{CacheDir: "-", Logger: slog.New(h)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	f := load(t, e, verge.Function{Module: fixture("wagi_stderr.wasm"), Executor: verge.ExecutorWAGI})
	for _, id := range []string{"first", "second"} {
		ctx := context.WithValue(context.Background(), requestKey{}, id)
		if resp, err := f.Serve(ctx, get("/")); err != nil || string(resp.Body) != "ok" {
			t.Fatalf("request %s: %v", id, err)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	want := []string{"line one first", "line two first", "line one second", "line two second"}
	if !slices.Equal(h.lines, want) {
		t.Fatalf("stderr lines logged as %q, want %q", h.lines, want)
	}
}

type requestKey struct{}

// ctxHandler records each line's message with the request its context
// names.
type ctxHandler struct {
	mu    sync.Mutex
	lines []string
}

func (h *ctxHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *ctxHandler) Handle(ctx context.Context, r slog.Record) error {
	id, _ := ctx.Value(requestKey{}).(string)
	h.mu.Lock()
	h.lines = append(h.lines, r.Message+" "+id)
	h.mu.Unlock()
	return nil
}
func (h *ctxHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *ctxHandler) WithGroup(string) slog.Handler      { return h }
