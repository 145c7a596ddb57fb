package wasm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/sys"
)

// serveWAGI runs a WASI command module once for the request, with the CGI
// contract: the request in environment variables and stdin, the response
// (headers, blank line, body) on stdout, stderr to the log.
func (f *Function) serveWAGI(ctx context.Context, deadline time.Time, req *Request) (*Response, error) {
	if f.pool != nil {
		return f.serveWAGIInstance(ctx, deadline, req)
	}
	w := f.wagiIO()
	defer f.wagi.Put(w)
	w.stdin.Reset(req.Body)
	w.stdout.reset()
	w.stderr.reset(ctx, req.ID)
	mem := f.newMemory()
	env := w.cgiEnv(req, f.env())
	cpu, err := limited(ctx, f.share, f.Limits.CPUTime, deadline, nil, env, func(ctx context.Context) error {
		if f.data == nil {
			mod, err := f.rt.InstantiateModule(withMemory(ctx, mem), f.compiled, w.cfg)
			if mod != nil {
				mod.Close(context.WithoutCancel(ctx))
			}
			return err
		}
		// The data segments were stripped for a snapshot that could not
		// be taken: write them before _start.
		mod, err := f.rt.InstantiateModule(withMemory(ctx, mem), f.compiled, w.cfg.WithStartFunctions())
		if err != nil {
			return err
		}
		defer mod.Close(context.WithoutCancel(ctx))
		for i, d := range f.data {
			if !mod.Memory().Write(d.Offset, d.Data) {
				return fmt.Errorf("data[%d]: out of bounds memory access", i)
			}
		}
		_, err = mod.ExportedFunction("_start").Call(ctx)
		return err
	})
	return f.wagiResult(ctx, w, mem, cpu, err)
}

// serveWAGIInstance runs the request on an instance of the command module
// restored to its state before _start (snapshot.go), and restores it again
// afterwards: the same fresh instance per request, without instantiating.
func (f *Function) serveWAGIInstance(ctx context.Context, deadline time.Time, req *Request) (*Response, error) {
	inst, err := f.pool.get(ctx)
	if err != nil {
		return nil, err
	}
	defer f.pool.renew(inst)
	w := inst.streams
	w.stdin.Reset(req.Body)
	w.stdout.reset()
	w.stderr.reset(ctx, req.ID)
	r := &inst.run
	r.call, r.env, r.limit, r.deadline, r.share = nil, w.cgiEnv(req, f.env()), f.Limits.CPUTime, deadline, f.share
	cpu, err := limitedRun(ctx, r, inst.callHandle)
	return f.wagiResult(ctx, w, inst.mem, cpu, err)
}

// wagiResult turns a WAGI run (its error, the CPU time it used, what it
// wrote) into the response or the error the client gets. Every run is a
// fresh start of the program.
func (f *Function) wagiResult(ctx context.Context, w *wagiStreams, mem *guestMemory, cpu time.Duration, err error) (*Response, error) {
	w.stderr.flush()
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
	if w.stdout.overflow {
		return nil, withCPU(limitError(KindResponseBody, http.StatusInternalServerError,
			"the response body exceeds the function's limit of %d bytes (limits.response_body)", f.Limits.ResponseBody), cpu)
	}
	resp, err := w.parseCGI(w.stdout.Bytes())
	if err != nil {
		return nil, withCPU(err, cpu)
	}
	resp.CPU, resp.Fresh = cpu, true
	return resp, nil
}

// wagiStreams is a WAGI instance's standard streams, the configuration
// that names them and the buffers of a request, made once and reused from
// request to request: wazero copies the whole configuration for every
// With call, and a request's environment is some twenty strings.
type wagiStreams struct {
	cfg    wazero.ModuleConfig
	stdin  bytes.Reader
	stdout cappedBuffer
	stderr logWriter
	envBuf []byte
	env    []string
	// the last response head parsed and its headers, shared by the
	// responses that repeat it (Response.Header is read-only)
	head   []byte
	header http.Header
}

func (f *Function) wagiIO() *wagiStreams {
	if w, ok := f.wagi.Get().(*wagiStreams); ok {
		return w
	}
	return f.newWAGIStreams()
}

func (f *Function) newWAGIStreams() *wagiStreams {
	w := &wagiStreams{}
	// Headers may add up to 64 KiB on top of the body limit.
	w.stdout.limit = f.Limits.ResponseBody + 64<<10
	w.stderr.log = f.log
	w.cfg = f.moduleConfig().
		WithArgs(f.Spec.Name).
		WithStdin(&w.stdin).
		WithStdout(&w.stdout).
		WithStderr(&w.stderr).
		WithStartFunctions("_start")
	return w
}

// cgiEnv builds the CGI/1.1 meta-variables (RFC 3875) plus WAGI's X_ extras,
// as "KEY=VALUE" strings, followed by extra. The strings share one buffer,
// rewritten by the next request: only the environment functions read them,
// during the request.
func (w *wagiStreams) cgiEnv(r *Request, extra []string) []string {
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
	b := w.envBuf[:0]
	var ends [64]int
	end := ends[:0]
	add := func(parts ...string) {
		for _, p := range parts {
			b = append(b, p...)
		}
		end = append(end, len(b))
	}
	add("GATEWAY_INTERFACE=CGI/1.1")
	add("SERVER_SOFTWARE=Verge")
	add("SERVER_PROTOCOL=", r.Proto)
	add("SERVER_NAME=", host)
	add("SERVER_PORT=", port)
	add("REQUEST_METHOD=", r.Method)
	add("SCRIPT_NAME=", script)
	add("PATH_INFO=", pathInfo)
	add("PATH_TRANSLATED=", pathInfo)
	add("QUERY_STRING=", r.Query)
	add("REMOTE_ADDR=", remote)
	add("REMOTE_HOST=", remote)
	add("REQUEST_URI=", r.URI)
	b = append(b, "CONTENT_LENGTH="...)
	b = strconv.AppendInt(b, int64(len(r.Body)), 10)
	end = append(end, len(b))
	add("X_MATCHED_ROUTE=", r.Route)
	add("X_FULL_URL=http://", r.Host, r.URI)
	add("X_RAW_PATH_INFO=", pathInfo)
	add("X_REQUEST_ID=", r.ID)
	if ct := r.Header.Get("Content-Type"); ct != "" {
		add("CONTENT_TYPE=", ct)
	}
	for k, vs := range r.Header {
		if k == "Content-Type" || k == "Content-Length" || k == "Authorization" || k == "Proxy-Authorization" {
			// RFC 3875 §4.1.18: the server need not, and for credentials
			// should not, pass these as HTTP_ variables.
			continue
		}
		b = append(b, "HTTP_"...)
		for i := 0; i < len(k); i++ {
			c := k[i]
			switch {
			case c == '-':
				c = '_'
			case 'a' <= c && c <= 'z':
				c -= 'a' - 'A'
			}
			b = append(b, c)
		}
		b = append(b, '=')
		for i, v := range vs {
			if i > 0 {
				b = append(b, ", "...)
			}
			b = append(b, v...)
		}
		end = append(end, len(b))
	}
	w.envBuf = b
	env := w.env[:0]
	start := 0
	for _, e := range end {
		env = append(env, unsafe.String(unsafe.SliceData(b[start:]), e-start))
		start = e
	}
	env = append(env, extra...)
	w.env = env
	return env
}

// parseCGI splits a CGI response into status, headers and body. The body
// is copied out of the stream's buffer, which the next request reuses.
func (w *wagiStreams) parseCGI(out []byte) (*Response, error) {
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
	var h http.Header
	if w.header != nil && bytes.Equal(head, w.head) {
		h = w.header
	} else {
		var err error
		if h, err = parseCGIHeader(head); err != nil {
			return nil, bad("%v", err)
		}
		w.head, w.header = append(w.head[:0], head...), h
	}
	status := http.StatusOK
	if s := h.Get("Status"); s != "" {
		code, _, _ := strings.Cut(s, " ")
		n, err := strconv.Atoi(code)
		if err != nil || n < 100 || n > 999 {
			w.header = nil
			return nil, bad("invalid Status header %q; expected e.g. \"404 Not Found\"", s)
		}
		status = n
		if len(h) == 1 {
			h = nil
		} else {
			h = h.Clone()
			h.Del("Status")
		}
	} else if h.Get("Location") != "" {
		status = http.StatusFound
	}
	return &Response{Status: status, Header: h, Body: bytes.Clone(body)}, nil
}

// parseCGIHeader reads "Name: value" lines (a line starting with a space or
// a tab continues the previous value), as net/textproto does.
func parseCGIHeader(head []byte) (http.Header, error) {
	h := http.Header{}
	var last string
	for len(head) > 0 {
		line := head
		if i := bytes.IndexByte(head, '\n'); i >= 0 {
			line, head = head[:i], head[i+1:]
		} else {
			head = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if last == "" {
				return nil, fmt.Errorf("malformed MIME header initial line: %q", line)
			}
			vs := h[last]
			vs[len(vs)-1] += " " + string(bytes.TrimSpace(line))
			continue
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok || !ValidHeaderName(string(k)) {
			return nil, fmt.Errorf("malformed MIME header line: %q", line)
		}
		last = textproto.CanonicalMIMEHeaderKey(string(k))
		h[last] = append(h[last], string(bytes.Trim(v, " \t")))
	}
	return h, nil
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

func (b *cappedBuffer) reset() {
	if b.Cap() > 64<<10 {
		b.Buffer = bytes.Buffer{} // do not keep a large response's buffer
	}
	b.Reset()
	b.overflow = false
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
	ctx     context.Context // the request's: its span's ids go on every line (obs.LogHandler)
	id      string
	buf     []byte
	written int
}

func (w *logWriter) reset(ctx context.Context, id string) {
	w.ctx, w.id, w.buf, w.written = ctx, id, w.buf[:0], 0
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
	ctx := w.ctx
	if ctx == nil { // a line written outside a request (initialisation)
		ctx = context.Background()
	}
	w.log.InfoContext(ctx, string(line), "source", "stderr", "request_id", w.id)
}

func (w *logWriter) flush() {
	if len(w.buf) > 0 {
		w.emit(w.buf)
		w.buf = w.buf[:0]
	}
	w.ctx = nil // a pooled writer keeps no request's context
}
