package verge

import (
	"encoding/binary"
	"errors"
	"io"
	"net/url"
)

// Outbound fetch: a function reaches the backends its verge.toml declares
// ([[backend]]), by name, and nothing else. The API follows Fastly's Go
// SDK and net/http: build a Request, send it to a backend, read the
// Response's Body as it streams, and close it.
//
//	req, _ := verge.NewRequest("GET", "/products/42", nil)
//	resp, err := verge.Fetch(req, "origin")
//	if err != nil { ... }
//	defer resp.Body.Close()
//
// Fetches go through the PoP's HTTP cache unless FetchOptions.NoCache is
// set; the response then says how in X-Cache (HIT, MISS, ...). Redirects are
// not followed: the 3xx comes back to the function. To make several fetches
// at once, start each with FetchAsync and Wait for them: they run in
// parallel in the host.
//
// Errors match ErrNotFound for a backend the app does not declare, ErrLimit
// for a limit (fetches per request, max_body, the function's body limit)
// and ErrUnavailable when the backend cannot be reached in time or fails
// (a timeout included); the error's message says which.

// NewRequest returns a request for Fetch: a method, a target that is a path
// with an optional query ("/x?y=1") or an absolute URL on the backend's
// origin, and an optional body, sent as it is read.
func NewRequest(method, target string, body io.Reader) (*Request, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	if method == "" {
		method = "GET"
	}
	return &Request{Method: method, URL: u, RequestURI: target, Header: Header{}, Body: body}, nil
}

// Response is a backend's response.
type Response struct {
	StatusCode int
	Header     Header
	// Body streams the response body; Close it when done (the host closes
	// what is left open when the request ends).
	Body io.ReadCloser
}

// FetchOptions adjust a fetch.
type FetchOptions struct {
	// NoCache sends the request to the backend, bypassing the PoP's cache.
	NoCache bool
}

// Fetch sends req to the backend named backend and returns its response once
// its head has arrived; the body streams as it is read.
func Fetch(req *Request, backend string, opts ...FetchOptions) (*Response, error) {
	p, err := FetchAsync(req, backend, opts...)
	if err != nil {
		return nil, err
	}
	return p.Wait()
}

// Pending is a fetch under way.
type Pending struct {
	h    uint32
	done bool
}

// Flags of fetch_open (docs/abi.md).
const (
	fetchHasBody = 1 << 0
	fetchNoCache = 1 << 1
)

// FetchAsync starts sending req to backend and returns without waiting for
// the response: start several, then Wait for each, and they run in
// parallel. A request body is sent before FetchAsync returns.
func FetchAsync(req *Request, backend string, opts ...FetchOptions) (*Pending, error) {
	var flags uint32
	for _, o := range opts {
		if o.NoCache {
			flags |= fetchNoCache
		}
	}
	if req.Body != nil {
		flags |= fetchHasBody
	}
	target := req.RequestURI
	if req.URL != nil {
		target = req.URL.String()
	}
	head := binary.LittleEndian.AppendUint32(nil, 2)
	head = appendStr(appendStr(head, req.Method), target)
	n := 0
	for _, vs := range req.Header {
		n += len(vs)
	}
	if req.Host != "" {
		n++
	}
	head = binary.LittleEndian.AppendUint32(head, uint32(n))
	for k, vs := range req.Header {
		for _, v := range vs {
			head = appendStr(appendStr(head, k), v)
		}
	}
	if req.Host != "" {
		head = appendStr(appendStr(head, "Host"), req.Host)
	}
	h, st := sysFetchOpen(backend, head, flags)
	if st != statusOK {
		return nil, explained("fetch_open", st)
	}
	if req.Body != nil {
		buf := make([]byte, 64<<10)
		for {
			k, err := req.Body.Read(buf)
			if k > 0 {
				if st := sysFetchBodyWrite(h, buf[:k]); st != statusOK {
					err := explained("fetch_body_write", st)
					sysFetchClose(h)
					return nil, err
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				sysFetchClose(h)
				return nil, err
			}
		}
		sysFetchBodyClose(h)
	}
	return &Pending{h: h}, nil
}

// Wait waits for the response's head.
func (p *Pending) Wait() (*Response, error) {
	if p.done {
		return nil, errors.New("verge: Wait called twice on one fetch")
	}
	p.done = true
	buf := make([]byte, 2048)
	n, st := sysFetchHead(p.h, buf)
	if st == statusTooSmall {
		buf = make([]byte, n)
		n, st = sysFetchHead(p.h, buf)
	}
	if st != statusOK {
		err := explained("fetch_head", st)
		sysFetchClose(p.h)
		return nil, err
	}
	r := headReader{s: string(buf[:n])}
	code, ok := r.u32()
	nh, ok2 := r.u32()
	if !ok || !ok2 {
		sysFetchClose(p.h)
		return nil, errors.New("verge: malformed response head")
	}
	hdr := make(Header, nh)
	for i := uint32(0); i < nh; i++ {
		k, ok1 := r.str()
		v, ok2 := r.str()
		if !ok1 || !ok2 {
			sysFetchClose(p.h)
			return nil, errors.New("verge: malformed response headers")
		}
		hdr[k] = append(hdr[k], v)
	}
	return &Response{StatusCode: int(code), Header: hdr, Body: &fetchBody{h: p.h}}, nil
}

// fetchBody reads a response body from the host.
type fetchBody struct {
	h      uint32
	eof    bool
	closed bool
}

func (b *fetchBody) Read(p []byte) (int, error) {
	if b.closed {
		return 0, errors.New("verge: read from a closed response body")
	}
	if b.eof {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, st := sysFetchBodyRead(b.h, p)
	if st != statusOK {
		return 0, explained("fetch_body_read", st)
	}
	if n == 0 {
		b.eof = true
		return 0, io.EOF
	}
	return int(n), nil
}

func (b *fetchBody) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	return hostErr("fetch_close", sysFetchClose(b.h))
}
