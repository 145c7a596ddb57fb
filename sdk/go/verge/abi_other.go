//go:build !wasip1

package verge

// Outside Wasm the host ABI is a Go interface, so that handlers and the SDK
// itself can be unit-tested natively with a fake host (see verge_test.go).
// Real guests are built with GOOS=wasip1 and never use this file.

// Host is the host ABI as seen by the SDK; only non-Wasm builds use it.
type Host interface {
	Log(level uint32, msg string) uint32
	ReqHead(h uint32, buf []byte) (n uint32, status uint32)
	BodyRead(h uint32, buf []byte) (n uint32, status uint32)
	RespHead(h uint32, status int, head []byte) uint32
	BodyWrite(h uint32, b []byte) uint32
	LastError(buf []byte) (n uint32, status uint32)
	DocGet(coll, key string, buf []byte) (n uint32, status uint32)
	DocUpdate(coll, key string, ops []byte) uint32
	DocDelete(coll, key string) uint32
	DocList(coll, after string, limit int, buf []byte) (n uint32, status uint32)
}

var host Host = noHost{}

// SetHost installs a fake host for native tests and returns the previous one.
func SetHost(h Host) Host { old := host; host = h; return old }

// ServeOnce runs the registered handler for one request through the fake host,
// as the Wasm export verge_handle does.
func ServeOnce(req, resp uint32) uint32 { return serve(req, resp) }

type noHost struct{}

func (noHost) Log(uint32, string) uint32                { return statusUnsupported }
func (noHost) ReqHead(uint32, []byte) (uint32, uint32)  { return 0, statusUnsupported }
func (noHost) BodyRead(uint32, []byte) (uint32, uint32) { return 0, statusUnsupported }
func (noHost) RespHead(uint32, int, []byte) uint32      { return statusUnsupported }
func (noHost) BodyWrite(uint32, []byte) uint32          { return statusUnsupported }
func (noHost) LastError([]byte) (uint32, uint32)        { return 0, statusUnsupported }
func (noHost) DocGet(string, string, []byte) (uint32, uint32) {
	return 0, statusUnsupported
}
func (noHost) DocUpdate(string, string, []byte) uint32 { return statusUnsupported }
func (noHost) DocDelete(string, string) uint32         { return statusUnsupported }
func (noHost) DocList(string, string, int, []byte) (uint32, uint32) {
	return 0, statusUnsupported
}

// RespHost is implemented by a fake host that also offers http_resp, the
// response head and body in one call; without it the SDK sends them with
// RespHead and BodyWrite.
type RespHost interface {
	Resp(h uint32, status int, head, body []byte) uint32
}

func sysResp(h uint32, code int, head, body []byte) uint32 {
	if r, ok := host.(RespHost); ok {
		return r.Resp(h, code, head, body)
	}
	if st := host.RespHead(h, code, head); st != statusOK {
		return st
	}
	if len(body) == 0 {
		return statusOK
	}
	return host.BodyWrite(h, body)
}

func sysLog(level uint32, msg string) uint32                  { return host.Log(level, msg) }
func sysReqHead(h uint32, buf []byte) (uint32, uint32)        { return host.ReqHead(h, buf) }
func sysBodyRead(h uint32, buf []byte) (uint32, uint32)       { return host.BodyRead(h, buf) }
func sysRespHead(h uint32, code int, head []byte) uint32      { return host.RespHead(h, code, head) }
func sysBodyWrite(h uint32, b []byte) uint32                  { return host.BodyWrite(h, b) }
func sysLastError(buf []byte) (uint32, uint32)                { return host.LastError(buf) }
func sysDocGet(coll, key string, buf []byte) (uint32, uint32) { return host.DocGet(coll, key, buf) }
func sysDocUpdate(coll, key string, ops []byte) uint32        { return host.DocUpdate(coll, key, ops) }
func sysDocDelete(coll, key string) uint32                    { return host.DocDelete(coll, key) }
func sysDocList(coll, after string, limit int, buf []byte) (uint32, uint32) {
	return host.DocList(coll, after, limit, buf)
}

// CentralHost is the part of the host ABI that reaches the central PoP: its
// strongly consistent operations and the app's central functions. A fake
// Host implements it to test code using Claim, Take, CentralDoc, Invoke...;
// without it, those calls report StatusUnsupported.
type CentralHost interface {
	SpotClaim(ns, key, owner string, buf []byte) (n uint32, status uint32)
	SpotRelease(ns, key, owner string) uint32
	SpotTake(counter string, n int64) (remaining int64, status uint32)
	SpotRestock(counter string, n int64) (remaining int64, status uint32)
	SpotCounter(counter string) (remaining int64, status uint32)
	SpotDocGet(key string, buf []byte) (n uint32, rev uint64, status uint32)
	SpotDocUpdate(key string, rev uint64, ops, buf []byte) (n uint32, newRev uint64, status uint32)
	Invoke(fn, method, path string, body, buf []byte) (n uint32, httpStatus uint32, status uint32)
}

func central() CentralHost {
	if c, ok := host.(CentralHost); ok {
		return c
	}
	return noCentral{}
}

type noCentral struct{}

func (noCentral) SpotClaim(string, string, string, []byte) (uint32, uint32) {
	return 0, statusUnsupported
}
func (noCentral) SpotRelease(string, string, string) uint32          { return statusUnsupported }
func (noCentral) SpotTake(string, int64) (int64, uint32)             { return 0, statusUnsupported }
func (noCentral) SpotRestock(string, int64) (int64, uint32)          { return 0, statusUnsupported }
func (noCentral) SpotCounter(string) (int64, uint32)                 { return 0, statusUnsupported }
func (noCentral) SpotDocGet(string, []byte) (uint32, uint64, uint32) { return 0, 0, statusUnsupported }
func (noCentral) SpotDocUpdate(string, uint64, []byte, []byte) (uint32, uint64, uint32) {
	return 0, 0, statusUnsupported
}
func (noCentral) Invoke(string, string, string, []byte, []byte) (uint32, uint32, uint32) {
	return 0, 0, statusUnsupported
}

func sysSpotClaim(ns, key, owner string, buf []byte) (uint32, uint32) {
	return central().SpotClaim(ns, key, owner, buf)
}
func sysSpotRelease(ns, key, owner string) uint32 { return central().SpotRelease(ns, key, owner) }
func sysSpotTake(counter string, n int64) (int64, uint32) {
	return central().SpotTake(counter, n)
}
func sysSpotRestock(counter string, n int64) (int64, uint32) {
	return central().SpotRestock(counter, n)
}
func sysSpotCounter(counter string) (int64, uint32) { return central().SpotCounter(counter) }
func sysSpotDocGet(key string, buf []byte) (uint32, uint64, uint32) {
	return central().SpotDocGet(key, buf)
}
func sysSpotDocUpdate(key string, rev uint64, ops, buf []byte) (uint32, uint64, uint32) {
	return central().SpotDocUpdate(key, rev, ops, buf)
}
func sysInvoke(fn, method, path string, body, buf []byte) (uint32, uint32, uint32) {
	return central().Invoke(fn, method, path, body, buf)
}

// TraceHost is the part of the host ABI for the guest's own spans. A fake
// Host implements it to see them; without it, spans record nothing.
type TraceHost interface {
	SpanStart(parent uint32, name string) (h uint32, status uint32)
	SpanEnd(h uint32) uint32
	SpanAttr(h uint32, key, value string) uint32
}

func sysSpanStart(parent uint32, name string) (uint32, uint32) {
	if t, ok := host.(TraceHost); ok {
		return t.SpanStart(parent, name)
	}
	return 0, statusUnsupported
}

func sysSpanEnd(h uint32) uint32 {
	if t, ok := host.(TraceHost); ok {
		return t.SpanEnd(h)
	}
	return statusUnsupported
}

func sysSpanAttr(h uint32, k, v string) uint32 {
	if t, ok := host.(TraceHost); ok {
		return t.SpanAttr(h, k, v)
	}
	return statusUnsupported
}

// StreamHost is the part of the host ABI that streams a response. A fake
// Host implements it to see flushes; without it, Flush keeps the response
// buffered, as a host that cannot stream does.
type StreamHost interface {
	RespFlush(h uint32) uint32
}

func sysRespFlush(h uint32) uint32 {
	if s, ok := host.(StreamHost); ok {
		return s.RespFlush(h)
	}
	return statusUnsupported
}
