// Package fetch is outbound HTTP for guests: a function reaches the
// backends its manifest declares ([[backend]]), and nothing else.
//
// The host resolves names itself and checks every address it dials, so
// neither a DNS answer (a public name resolving to 127.0.0.1, or changing
// to do so between two requests) nor anything else can make a backend
// without allow_private reach a loopback, private, link-local or otherwise
// non-public address; the check runs on the socket's own address before it
// connects. Redirects are not followed: the function gets the 3xx and
// decides (a proxy passes it on, which is what its client expects), and a
// new request to the Location goes through the same checks. No proxy from
// the environment is used.
//
// Bodies stream both ways: the request body is read from the guest as the
// connection takes it, the response body as the guest reads it; neither is
// held whole by the host. Limits: a number of fetches per guest request
// (Session), a body size per backend (max_body), and three timeouts per
// backend: connect (TCP and TLS), first byte (from the request sent to the
// response's head) and total (the whole exchange, body included).
//
// Errors match the package's sentinels (errors.Is), so that the host's
// status table maps them to ABI statuses, and say what happened.
package fetch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/cache"
)

// Sentinels: every error of this package matches one of them.
var (
	// ErrNotDeclared: the backend (or the URL's host) is not one the app
	// declares.
	ErrNotDeclared = errors.New("fetch: backend not declared")
	// ErrForbiddenAddress: the backend resolved to, or would connect to, a
	// non-public address and does not set allow_private.
	ErrForbiddenAddress = errors.New("fetch: address not allowed")
	// ErrTimeout: the backend's connect, first-byte or total timeout passed.
	ErrTimeout = errors.New("fetch: timeout")
	// ErrTooLarge: a request or response body exceeds the backend's max_body.
	ErrTooLarge = errors.New("fetch: body too large")
	// ErrTooManyFetches: the guest request made more fetches than allowed.
	ErrTooManyFetches = errors.New("fetch: too many fetches")
	// ErrUnavailable: the backend could not be reached or broke off
	// (refused, reset, name not found, TLS failure).
	ErrUnavailable = errors.New("fetch: backend unavailable")
	// ErrInvalid: the request itself is malformed (method, path, header).
	ErrInvalid = errors.New("fetch: invalid request")
)

// Defaults of a backend's timeouts (docs/manifest.md).
const (
	DefaultConnectTimeout   = 2 * time.Second
	DefaultFirstByteTimeout = 15 * time.Second
	// DefaultMaxFetches is how many fetches one guest request may make;
	// Fastly Compute allows 32 backend requests per request, as we do.
	DefaultMaxFetches = 32
)

// Resolver resolves host names; *net.Resolver is one. Tests substitute
// their own to simulate DNS.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Options configure a Service.
type Options struct {
	// Resolver resolves backends' names (default net.DefaultResolver).
	Resolver Resolver
	// Cache, when set, is the PoP's HTTP cache: fetches go through it
	// unless a call says NoCache.
	Cache *cache.Cache
	// MaxFetches bounds the fetches of one Session (default
	// DefaultMaxFetches).
	MaxFetches int
	// Bypass, when set and true, sends fetches straight to the backend as
	// if they said NoCache (a PoP that has not synced purges with the
	// centre must not answer from its cache).
	Bypass func() bool
}

// Service is one app's outbound HTTP: its backends, each with its own
// connection pool. It is safe for concurrent use.
type Service struct {
	app      string
	backends map[string]*backend
	names    []string
	cache    *cache.Cache
	bypass   func() bool
	max      int
}

type backend struct {
	verge.Backend
	scheme, host string // host with port, as dialed
	hostname     string
	rt           *http.Transport
}

// New builds the service of app from its manifest's backends, loading CA
// files now so that a missing or bad one fails the deploy, not a request.
func New(app string, backends []verge.Backend, opts Options) (*Service, error) {
	s := &Service{app: app, backends: map[string]*backend{}, cache: opts.Cache, bypass: opts.Bypass, max: opts.MaxFetches}
	if s.max <= 0 {
		s.max = DefaultMaxFetches
	}
	res := opts.Resolver
	if res == nil {
		res = net.DefaultResolver
	}
	for _, cfg := range backends {
		b, err := newBackend(cfg, res)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.backends[cfg.Name] = b
		s.names = append(s.names, cfg.Name)
	}
	slices.Sort(s.names)
	return s, nil
}

func newBackend(cfg verge.Backend, res Resolver) (*backend, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return nil, fmt.Errorf("backend %q: %q is not an http or https origin", cfg.Name, cfg.URL)
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.FirstByteTimeout <= 0 {
		cfg.FirstByteTimeout = DefaultFirstByteTimeout
	}
	b := &backend{Backend: cfg, scheme: u.Scheme, hostname: strings.ToLower(u.Hostname())}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	b.host = net.JoinHostPort(b.hostname, port)
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.SNI}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("backend %q: ca_file: %w", cfg.Name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("backend %q: ca_file %s holds no PEM certificate", cfg.Name, cfg.CAFile)
		}
		tlsConf.RootCAs = pool
	}
	d := &dialer{backend: cfg.Name, resolver: res, allowPrivate: cfg.AllowPrivate, timeout: cfg.ConnectTimeout}
	b.rt = &http.Transport{
		Proxy:                 nil, // never a proxy from the environment: it would dial for us
		DialContext:           d.DialContext,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   cfg.ConnectTimeout,
		ResponseHeaderTimeout: cfg.FirstByteTimeout,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     true, // a custom TLS config turns it off otherwise
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		// A proxy passes bodies as the origin sent them: no transparent
		// gzip, which would also change Content-Length and ETag semantics.
		DisableCompression: true,
	}
	return b, nil
}

// Close closes idle connections; fetches under way continue.
func (s *Service) Close() {
	for _, b := range s.backends {
		b.rt.CloseIdleConnections()
	}
}

// Backends are the names of the declared backends, sorted.
func (s *Service) Backends() []string { return s.names }

// Session is the fetches of one guest request: it counts them against the
// limit and closes what the guest left open when the request ends.
type Session struct {
	s    *Service
	mu   sync.Mutex
	n    int
	open map[*body]struct{}
}

// Session starts the fetches of one guest request.
func (s *Service) Session() *Session { return &Session{s: s, open: map[*body]struct{}{}} }

// Close closes every response body of the session still open.
func (ss *Session) Close() {
	ss.mu.Lock()
	open := ss.open
	ss.open = map[*body]struct{}{}
	ss.mu.Unlock()
	for b := range open {
		b.Close()
	}
}

// Params are a fetch's options beside its request.
type Params struct {
	// Backend names the declared backend; "" picks the backend whose
	// origin is the request URL's scheme, host and port.
	Backend string
	// NoCache sends the request to the backend, bypassing the cache.
	NoCache bool
}

// Do sends req to a declared backend and returns its response, whose body
// streams from the backend (or the cache) and must be closed; the
// session's Close closes it otherwise. req.URL may be a path ("/x?y") or
// an absolute URL on the backend's origin; req.Host, when set, is sent as
// the Host header. ctx bounds the whole exchange (the guest's wall time).
func (ss *Session) Do(ctx context.Context, req *http.Request, p Params) (*http.Response, error) {
	s := ss.s
	ss.mu.Lock()
	ss.n++
	n := ss.n
	ss.mu.Unlock()
	if n > s.max {
		return nil, errorf(ErrTooManyFetches, nil, "this request already made %d fetches, the most allowed", s.max)
	}
	b, err := s.pick(req.URL, p.Backend)
	if err != nil {
		return nil, err
	}
	out, err := b.request(ctx, req)
	if err != nil {
		return nil, err
	}
	var resp *http.Response
	if s.cache != nil && !p.NoCache && (s.bypass == nil || !s.bypass()) {
		resp, err = s.cache.Do(ctx, s.app, out, b.roundTrip)
	} else {
		resp, err = b.roundTrip(ctx, out)
	}
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, ErrTimeout) {
			// The guest's own deadline, or its client gone: its error.
			return nil, ctx.Err()
		}
		return nil, err
	}
	bd := &body{rc: resp.Body, backend: b.Name, session: ss}
	ss.mu.Lock()
	ss.open[bd] = struct{}{}
	ss.mu.Unlock()
	resp.Body = bd
	return resp, nil
}

// pick finds the backend of a fetch.
func (s *Service) pick(u *url.URL, name string) (*backend, error) {
	if name == "" {
		if u.Host == "" {
			return nil, errorf(ErrNotDeclared, nil, "no backend named and no host in the URL %q", u.String())
		}
		for _, n := range s.names {
			if b := s.backends[n]; b.matches(u) {
				return b, nil
			}
		}
		return nil, errorf(ErrNotDeclared, nil, "%s://%s is not a declared backend; %s", u.Scheme, u.Host, s.declared())
	}
	b := s.backends[name]
	if b == nil {
		return nil, errorf(ErrNotDeclared, nil, "no backend named %q; %s", name, s.declared())
	}
	if u.Host != "" && !b.matches(u) {
		return nil, errorf(ErrNotDeclared, nil, "the URL's origin %s://%s is not backend %q's (%s)", u.Scheme, u.Host, name, b.URL)
	}
	return b, nil
}

func (s *Service) declared() string {
	if len(s.names) == 0 {
		return "the app declares no [[backend]] in verge.toml"
	}
	return "the app declares " + strings.Join(s.names, ", ")
}

// matches reports whether an absolute URL is on the backend's origin.
func (b *backend) matches(u *url.URL) bool {
	if !strings.EqualFold(u.Scheme, b.scheme) {
		return false
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[strings.ToLower(u.Scheme)]
	}
	return net.JoinHostPort(strings.ToLower(u.Hostname()), port) == b.host
}

// request is the outbound request: the backend's origin, the guest's
// method, path, query, headers and body.
func (b *backend) request(ctx context.Context, req *http.Request) (*http.Request, error) {
	if req.Method != "" && !validToken(req.Method) {
		return nil, errorf(ErrInvalid, nil, "invalid method %q", req.Method)
	}
	path := req.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	if path[0] != '/' {
		return nil, errorf(ErrInvalid, nil, "the path %q must start with /", path)
	}
	out := req.Clone(ctx)
	out.URL = &url.URL{Scheme: b.scheme, Host: b.host, Path: req.URL.Path, RawPath: req.URL.RawPath, RawQuery: req.URL.RawQuery}
	if b.host == net.JoinHostPort(b.hostname, map[string]string{"http": "80", "https": "443"}[b.scheme]) {
		out.URL.Host = hostLiteral(b.hostname)
	}
	out.RequestURI = ""
	if out.Host == "" {
		out.Host = out.URL.Host
	}
	// A fetch is one request: no protocol switch, no connection options.
	for _, h := range []string{"Connection", "Upgrade", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding"} {
		out.Header.Del(h)
	}
	if b.MaxBody > 0 && out.Body != nil && out.Body != http.NoBody {
		if out.ContentLength > b.MaxBody {
			return nil, errorf(ErrTooLarge, nil, "the request body of %d bytes exceeds backend %q's max_body of %d bytes", out.ContentLength, b.Name, b.MaxBody)
		}
		out.Body = &limitedBody{rc: out.Body, left: b.MaxBody, backend: b.Name, what: "request"}
	}
	return out, nil
}

func hostLiteral(h string) string {
	if strings.Contains(h, ":") {
		return "[" + h + "]"
	}
	return h
}

// roundTrip is one exchange with the backend, within its total timeout. It
// is the cache's Origin: it may run after the guest's request ended (to
// fill the cache), so it applies the backend's timeouts itself.
func (b *backend) roundTrip(ctx context.Context, req *http.Request) (*http.Response, error) {
	cancel := context.CancelFunc(func() {})
	if b.Timeout > 0 {
		ctx, cancel = context.WithTimeoutCause(ctx, b.Timeout, errTotal)
	}
	resp, err := b.rt.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, b.classify(ctx, err)
	}
	if b.MaxBody > 0 && resp.ContentLength > b.MaxBody {
		resp.Body.Close()
		cancel()
		return nil, errorf(ErrTooLarge, nil, "the response of backend %q declares %d bytes, over its max_body of %d bytes", b.Name, resp.ContentLength, b.MaxBody)
	}
	rb := &limitedBody{rc: resp.Body, left: b.MaxBody, backend: b.Name, what: "response", ctx: ctx, cancel: cancel, b: b}
	if b.MaxBody <= 0 {
		rb.left = -1
	}
	resp.Body = rb
	return resp, nil
}

// errTotal is the cause of the total timeout's context.
var errTotal = errors.New("total timeout")

// classify turns a transport error into one of the sentinels.
func (b *backend) classify(ctx context.Context, err error) error {
	var ne net.Error
	var fe *Error
	switch {
	case errors.As(err, &fe):
		return fe // already says what happened (the dialer's, a body limit)
	case context.Cause(ctx) == errTotal:
		return errorf(ErrTimeout, err, "backend %q did not finish within its timeout of %v", b.Name, b.Timeout)
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.As(err, &ne) && ne.Timeout():
		if strings.Contains(err.Error(), "awaiting response headers") {
			return errorf(ErrTimeout, err, "backend %q sent no response within its first_byte_timeout of %v", b.Name, b.FirstByteTimeout)
		}
		return errorf(ErrTimeout, err, "backend %q: %v (connect_timeout %v)", b.Name, err, b.ConnectTimeout)
	}
	return errorf(ErrUnavailable, err, "backend %q: %v", b.Name, err)
}

// limitedBody bounds a body at left bytes (-1: unbounded) and turns read
// errors into sentinels; for a response it also ends the exchange's
// context when closed.
type limitedBody struct {
	rc      io.ReadCloser
	left    int64
	backend string
	what    string
	ctx     context.Context
	cancel  context.CancelFunc
	b       *backend
}

func (l *limitedBody) Read(p []byte) (int, error) {
	if l.left == 0 {
		// Past the limit only if there is more: probe one byte.
		var one [1]byte
		n, err := l.rc.Read(one[:])
		if n > 0 {
			return 0, errorf(ErrTooLarge, nil, "the %s body of backend %q exceeds its max_body", l.what, l.backend)
		}
		return 0, l.err(err)
	}
	if l.left > 0 && int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.rc.Read(p)
	if l.left > 0 {
		l.left -= int64(n)
	}
	return n, l.err(err)
}

func (l *limitedBody) err(err error) error {
	if err == nil || err == io.EOF || l.b == nil {
		return err
	}
	if errors.Is(err, ErrTooLarge) {
		return err
	}
	return l.b.classify(l.ctx, err)
}

func (l *limitedBody) Close() error {
	err := l.rc.Close()
	if l.cancel != nil {
		l.cancel()
	}
	return err
}

// body is a response body handed to the guest: the session closes it if
// the guest does not.
type body struct {
	rc      io.ReadCloser
	backend string
	session *Session
	once    sync.Once
}

func (b *body) Read(p []byte) (int, error) { return b.rc.Read(p) }

func (b *body) Close() error {
	var err error
	b.once.Do(func() {
		err = b.rc.Close()
		b.session.mu.Lock()
		delete(b.session.open, b)
		b.session.mu.Unlock()
	})
	return err
}

// ---- the dialer ----

// dialer resolves a backend's name itself and connects only to addresses
// its policy allows.
type dialer struct {
	backend      string
	resolver     Resolver
	allowPrivate bool
	timeout      time.Duration
}

func (d *dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, errorf(ErrInvalid, err, "backend %q: address %q", d.backend, addr)
	}
	port, err := parsePort(portStr)
	if err != nil {
		return nil, errorf(ErrInvalid, err, "backend %q: port %q", d.backend, portStr)
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		rctx, cancel := context.WithTimeout(ctx, d.timeout)
		ips, err = d.resolver.LookupNetIP(rctx, "ip", host)
		cancel()
		if err != nil {
			var dnsErr *net.DNSError
			if errors.As(err, &dnsErr) && dnsErr.IsTimeout || errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				return nil, errorf(ErrTimeout, err, "backend %q: resolving %s timed out", d.backend, host)
			}
			return nil, errorf(ErrUnavailable, err, "backend %q: resolving %s: %v", d.backend, host, err)
		}
	}
	var allowed []netip.Addr
	var refused []string
	for _, ip := range ips {
		if why := verge.ForbiddenAddress(ip); why != "" && !d.allowPrivate {
			refused = append(refused, ip.String()+" ("+why+")")
			continue
		}
		allowed = append(allowed, ip.Unmap())
	}
	if len(allowed) == 0 {
		if len(refused) == 0 {
			return nil, errorf(ErrUnavailable, nil, "backend %q: %s has no address", d.backend, host)
		}
		if len(ips) == 1 && ips[0].String() == host {
			return nil, errorf(ErrForbiddenAddress, nil, "backend %q: %s is %s; a backend reaches public addresses only unless it sets allow_private = true",
				d.backend, host, verge.ForbiddenAddress(ips[0]))
		}
		return nil, errorf(ErrForbiddenAddress, nil, "backend %q: %s resolves to %s; a backend reaches public addresses only unless it sets allow_private = true",
			d.backend, host, strings.Join(refused, ", "))
	}
	nd := net.Dialer{Timeout: d.timeout, Control: d.control}
	var last error
	for _, ip := range allowed {
		conn, err := nd.DialContext(ctx, network, netip.AddrPortFrom(ip, port).String())
		if err == nil {
			return conn, nil
		}
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, last
}

// control checks the address a socket is about to connect to, after every
// resolution: the last word on where a backend connection goes.
func (d *dialer) control(network, address string, _ syscall.RawConn) error {
	if d.allowPrivate {
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return errorf(ErrForbiddenAddress, err, "backend %q: cannot check the address %q", d.backend, address)
	}
	if why := verge.ForbiddenAddress(ap.Addr()); why != "" {
		return errorf(ErrForbiddenAddress, nil, "backend %q: %s is %s; a backend reaches public addresses only unless it sets allow_private = true", d.backend, ap.Addr(), why)
	}
	return nil
}

func parsePort(s string) (uint16, error) {
	var n uint32
	if s == "" || len(s) > 5 {
		return 0, errors.New("bad port")
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, errors.New("bad port")
		}
		n = n*10 + uint32(c-'0')
	}
	if n == 0 || n > 65535 {
		return 0, errors.New("bad port")
	}
	return uint16(n), nil
}

func validToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return s != ""
}

// Error is an error of this package: it matches its kind (a sentinel) and
// its cause, and says what happened.
type Error struct {
	Kind  error
	Cause error
	Msg   string
}

func (e *Error) Error() string   { return e.Msg }
func (e *Error) Unwrap() []error { return []error{e.Kind, e.Cause} }

func errorf(kind, cause error, format string, args ...any) error {
	return &Error{Kind: kind, Cause: cause, Msg: fmt.Sprintf(format, args...)}
}
