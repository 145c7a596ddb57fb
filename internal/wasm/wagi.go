package wasm

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/tetratelabs/wazero/sys"
)

// serveWAGI runs a WASI command module once for the request, with the CGI
// contract: the request in environment variables and stdin, the response
// (headers, blank line, body) on stdout, stderr to the log.
func (f *Function) serveWAGI(ctx context.Context, deadline time.Time, req *Request) (*Response, error) {
	// Headers may add up to 64 KiB on top of the body limit.
	stdout := &cappedBuffer{limit: f.Limits.ResponseBody + 64<<10}
	stderr := &logWriter{log: f.log, id: req.ID}
	cfg := f.moduleConfig().
		WithArgs(f.Spec.Name).
		WithStdin(bytes.NewReader(req.Body)).
		WithStdout(stdout).
		WithStderr(stderr)
	mem := f.newMemory()
	env := append(cgiEnv(req), f.env()...)
	cpu, err := limited(ctx, f.Limits.CPUTime, deadline, nil, env, func(ctx context.Context) error {
		mod, err := f.rt.InstantiateModule(withMemory(ctx, mem), f.compiled, cfg.WithStartFunctions("_start"))
		if mod != nil {
			mod.Close(context.WithoutCancel(ctx))
		}
		return err
	})
	stderr.flush()
	if err != nil {
		var exit *sys.ExitError
		if errors.As(err, &exit) && exit.ExitCode() == 0 {
			err = nil
		} else if errors.As(err, &exit) && ctx.Err() == nil && !mem.exceeded.Load() {
			return nil, withCPU(&Error{Kind: KindExit, Status: http.StatusBadGateway, Msg: fmt.Sprintf("the program exited with code %d", exit.ExitCode())}, cpu)
		} else {
			return nil, withCPU(f.runError(ctx, mem, err), cpu)
		}
	}
	if stdout.overflow {
		return nil, withCPU(limitError(KindResponseBody, http.StatusInternalServerError,
			"the response body exceeds the function's limit of %d bytes (limits.response_body)", f.Limits.ResponseBody), cpu)
	}
	resp, err := parseCGI(stdout.Bytes())
	if err != nil {
		return nil, withCPU(err, cpu)
	}
	resp.CPU, resp.Fresh = cpu, true
	return resp, nil
}

// cgiEnv builds the CGI/1.1 meta-variables (RFC 3875) plus WAGI's X_ extras,
// as "KEY=VALUE" strings.
func cgiEnv(r *Request) []string {
	script := strings.TrimSuffix(strings.TrimSuffix(r.Route, "*"), "/")
	pathInfo := strings.TrimPrefix(r.Path, script)
	host, port, err := net.SplitHostPort(r.Host)
	if err != nil {
		host, port = r.Host, "80"
	}
	remote, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		remote = r.RemoteAddr
	}
	env := make([]string, 0, 20+len(r.Header))
	env = append(env,
		"GATEWAY_INTERFACE=CGI/1.1",
		"SERVER_SOFTWARE=Verge",
		"SERVER_PROTOCOL="+r.Proto,
		"SERVER_NAME="+host,
		"SERVER_PORT="+port,
		"REQUEST_METHOD="+r.Method,
		"SCRIPT_NAME="+script,
		"PATH_INFO="+pathInfo,
		"PATH_TRANSLATED="+pathInfo,
		"QUERY_STRING="+r.Query,
		"REMOTE_ADDR="+remote,
		"REMOTE_HOST="+remote,
		"REQUEST_URI="+r.URI,
		"CONTENT_LENGTH="+strconv.Itoa(len(r.Body)),
		"X_MATCHED_ROUTE="+r.Route,
		"X_FULL_URL=http://"+r.Host+r.URI,
		"X_RAW_PATH_INFO="+pathInfo,
		"X_REQUEST_ID="+r.ID,
	)
	if ct := r.Header.Get("Content-Type"); ct != "" {
		env = append(env, "CONTENT_TYPE="+ct)
	}
	for k, vs := range r.Header {
		if k == "Content-Type" || k == "Content-Length" || k == "Authorization" || k == "Proxy-Authorization" {
			// RFC 3875 §4.1.18: the server need not, and for credentials
			// should not, pass these as HTTP_ variables.
			continue
		}
		name := "HTTP_" + strings.ToUpper(strings.ReplaceAll(k, "-", "_"))
		env = append(env, name+"="+strings.Join(vs, ", "))
	}
	return env
}

// parseCGI splits a CGI response into status, headers and body.
func parseCGI(out []byte) (*Response, error) {
	bad := func(format string, args ...any) error {
		return &Error{Kind: KindBadResponse, Status: http.StatusBadGateway, Msg: "malformed CGI response: " + fmt.Sprintf(format, args...)}
	}
	i := bytes.Index(out, []byte("\n\n"))
	j := bytes.Index(out, []byte("\r\n\r\n"))
	var head, body []byte
	switch {
	case j >= 0 && (i < 0 || j < i):
		head, body = out[:j+2], out[j+4:]
	case i >= 0:
		head, body = out[:i+1], out[i+2:]
	default:
		if len(out) == 0 {
			return nil, bad("the program wrote nothing to stdout; a CGI response starts with headers and a blank line")
		}
		return nil, bad("no blank line after the headers in %q", truncate(out, 80))
	}
	tp := textproto.NewReader(bufio.NewReader(io.MultiReader(bytes.NewReader(head), strings.NewReader("\r\n"))))
	mh, err := tp.ReadMIMEHeader()
	if err != nil {
		return nil, bad("%v", err)
	}
	h := http.Header(mh)
	status := http.StatusOK
	if s := h.Get("Status"); s != "" {
		code, _, _ := strings.Cut(s, " ")
		n, err := strconv.Atoi(code)
		if err != nil || n < 100 || n > 999 {
			return nil, bad("invalid Status header %q; expected e.g. \"404 Not Found\"", s)
		}
		status = n
		h.Del("Status")
	} else if h.Get("Location") != "" {
		status = http.StatusFound
	}
	return &Response{Status: status, Header: h, Body: body}, nil
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// cappedBuffer fails writes past its limit instead of growing without end.
type cappedBuffer struct {
	bytes.Buffer
	limit    int64
	overflow bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if int64(b.Len())+int64(len(p)) > b.limit {
		b.overflow = true
		return 0, errors.New("response too large")
	}
	return b.Buffer.Write(p)
}

// logWriter turns a guest's stderr into log lines, bounded in volume.
type logWriter struct {
	log     *slog.Logger
	id      string
	buf     []byte
	written int
}

func (w *logWriter) Write(p []byte) (int, error) {
	if w.written+len(p) > maxLogPerRequest {
		return 0, errors.New("log volume limit reached")
	}
	w.written += len(p)
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.emit(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

func (w *logWriter) emit(line []byte) {
	if len(line) > maxLogLine {
		line = line[:maxLogLine]
	}
	w.log.Info(string(line), "source", "stderr", "request_id", w.id)
}

func (w *logWriter) flush() {
	if len(w.buf) > 0 {
		w.emit(w.buf)
		w.buf = nil
	}
}
