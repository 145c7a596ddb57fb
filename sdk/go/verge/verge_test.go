//go:build !wasip1

package verge_test

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/verge-edge/verge/sdk/go/verge"
)

// fakeHost plays the host side of the ABI for one request.
type fakeHost struct {
	head    []byte
	body    *strings.Reader
	status  int
	headers []byte
	out     strings.Builder
	logs    []string
	calls   int
	docs    map[string]string // "coll/key" -> JSON
	lastOps string
	lastErr string
	docGets int
}

func str(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

func newFakeHost(method, uri, body string, headers ...string) *fakeHost {
	h := binary.LittleEndian.AppendUint32(nil, 5)
	for _, f := range []string{method, uri, "example.com", "127.0.0.1:1", "req-1"} {
		h = str(h, f)
	}
	h = binary.LittleEndian.AppendUint32(h, uint32(len(headers)/2))
	for _, s := range headers {
		h = str(h, s)
	}
	return &fakeHost{head: h, body: strings.NewReader(body)}
}

func (f *fakeHost) Log(level uint32, msg string) uint32 { f.logs = append(f.logs, msg); return 0 }
func (f *fakeHost) ReqHead(h uint32, buf []byte) (uint32, uint32) {
	f.calls++
	if len(buf) < len(f.head) {
		return uint32(len(f.head)), 3
	}
	return uint32(copy(buf, f.head)), 0
}
func (f *fakeHost) BodyRead(h uint32, buf []byte) (uint32, uint32) {
	n, _ := f.body.Read(buf)
	return uint32(n), 0
}
func (f *fakeHost) RespHead(h uint32, status int, head []byte) uint32 {
	f.status, f.headers = status, append([]byte(nil), head...)
	return 0
}
func (f *fakeHost) BodyWrite(h uint32, b []byte) uint32 { f.out.Write(b); return 0 }
func (f *fakeHost) LastError(buf []byte) (uint32, uint32) {
	if len(buf) < len(f.lastErr) {
		return uint32(len(f.lastErr)), 3
	}
	return uint32(copy(buf, f.lastErr)), 0
}
func (f *fakeHost) DocGet(coll, key string, buf []byte) (uint32, uint32) {
	f.docGets++
	doc, ok := f.docs[coll+"/"+key]
	if !ok {
		return 0, 5
	}
	if len(buf) < len(doc) {
		return uint32(len(doc)), 3
	}
	return uint32(copy(buf, doc)), 0
}
func (f *fakeHost) DocUpdate(coll, key string, ops []byte) uint32 {
	if coll == "nope" {
		f.lastErr = `unknown collection "nope"`
		return 1
	}
	f.lastOps = string(ops)
	return 0
}
func (f *fakeHost) DocDelete(coll, key string) uint32 {
	if _, ok := f.docs[coll+"/"+key]; !ok {
		return 5
	}
	delete(f.docs, coll+"/"+key)
	return 0
}
func (f *fakeHost) DocList(coll, after string, limit int, buf []byte) (uint32, uint32) {
	b := binary.LittleEndian.AppendUint32(nil, 2)
	b = str(str(str(b, "a"), "b"), "b")
	if len(buf) < len(b) {
		return uint32(len(b)), 3
	}
	return uint32(copy(buf, b)), 0
}

func TestDocuments(t *testing.T) {
	host := newFakeHost("GET", "/", "")
	host.docs = map[string]string{"carts/u1": strings.Repeat(" ", 2000) + `{"items":[7],"count":1}`}
	defer verge.SetHost(verge.SetHost(host))
	carts := verge.Documents("carts")

	var cart struct {
		Items []int `json:"items"`
		Count int   `json:"count"`
	}
	if found, err := carts.Get("u1", &cart); !found || err != nil || cart.Count != 1 || cart.Items[0] != 7 {
		t.Fatalf("Get of a 2 KB document: %v %v %+v", found, err, cart)
	}
	if found, err := carts.Get("u2", &cart); found || err != nil {
		t.Fatalf("Get of a missing document: %v %v", found, err)
	}
	// A collection's documents too large for the first buffer are read in
	// one call once one of them has been: the SDK remembers the size.
	host.docGets = 0
	if doc, found, err := carts.GetJSON("u1"); !found || err != nil || len(doc) != 2023 || host.docGets != 1 {
		t.Fatalf("GetJSON again: %d bytes, %v %v, %d host calls; want one", len(doc), found, err, host.docGets)
	}
	if err := carts.Update("u1", verge.Prepend("items", 42), verge.Insert("items", 1, "x"), verge.Increment("count", -2), verge.Remove("old")); err != nil {
		t.Fatal(err)
	}
	want := `[{"op":"prepend","path":"items","value":42},{"op":"insert","path":"items","index":1,"value":"x"},{"op":"increment","path":"count","value":-2},{"op":"remove","path":"old"}]`
	if host.lastOps != want {
		t.Fatalf("ops sent\n%s\nwant\n%s", host.lastOps, want)
	}
	err := verge.Documents("nope").Update("k", verge.Set("a", 1))
	var he *verge.HostError
	if !errors.As(err, &he) || he.Status != 1 || !strings.Contains(err.Error(), `unknown collection "nope"`) {
		t.Fatalf("an invalid update: %v, want the host's message", err)
	}
	if found, err := carts.Delete("u1"); !found || err != nil {
		t.Fatalf("Delete: %v %v", found, err)
	}
	if found, err := carts.Delete("u1"); found || err != nil {
		t.Fatalf("Delete of a missing document: %v %v", found, err)
	}
	keys, next, err := carts.List("", 10)
	if err != nil || len(keys) != 2 || keys[1] != "b" || next != "b" {
		t.Fatalf("List: %v %q %v", keys, next, err)
	}
}

func TestRequestAndResponse(t *testing.T) {
	host := newFakeHost("POST", "/items/7?color=red%20ish", "payload", "Content-Type", "text/plain", "X-Multi", "a", "X-Multi", "b")
	defer verge.SetHost(verge.SetHost(host))
	verge.HandleFunc(func(w verge.ResponseWriter, r *verge.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("content-type", "application/json")
		w.WriteHeader(201)
		fmt.Fprintf(w, "%s %s %s %s %v %s %s", r.Method, r.URL.Path, r.URL.Query().Get("color"), r.Header.Get("content-type"), r.Header["X-Multi"], body, r.ID)
	})
	if rc := verge.ServeOnce(1, 2); rc != 0 {
		t.Fatalf("handler returned %d", rc)
	}
	want := "POST /items/7 red ish text/plain [a b] payload req-1"
	if host.status != 201 || host.out.String() != want {
		t.Fatalf("got %d %q, want 201 %q", host.status, host.out.String(), want)
	}
	if !strings.Contains(string(host.headers), "Content-Type") || !strings.Contains(string(host.headers), "application/json") {
		t.Fatalf("response headers %q lack the canonical Content-Type", host.headers)
	}
}

// respHost offers http_resp: a buffered response goes out in one call.
type respHost struct {
	*fakeHost
	resps int
}

func (r *respHost) Resp(h uint32, status int, head, body []byte) uint32 {
	r.resps++
	r.status, r.headers = status, append([]byte(nil), head...)
	r.out.Write(body)
	return 0
}

func TestResponseInOneCall(t *testing.T) {
	host := &respHost{fakeHost: newFakeHost("GET", "/", "")}
	defer verge.SetHost(verge.SetHost(host))
	verge.HandleFunc(func(w verge.ResponseWriter, r *verge.Request) {
		w.Header().Set("X-A", "1")
		w.WriteHeader(202)
		io.WriteString(w, "small")
	})
	if rc := verge.ServeOnce(1, 2); rc != 0 || host.resps != 1 || host.status != 202 || host.out.String() != "small" || !strings.Contains(string(host.headers), "X-A") {
		t.Fatalf("rc %d, %d http_resp calls, %d %q %q", rc, host.resps, host.status, host.out.String(), host.headers)
	}
	// A body larger than the buffer is flushed as it is written: head and
	// body go with http_resp_head and body_write instead.
	host = &respHost{fakeHost: newFakeHost("GET", "/", "")}
	verge.SetHost(host)
	big := strings.Repeat("x", 100<<10)
	verge.HandleFunc(func(w verge.ResponseWriter, r *verge.Request) { io.WriteString(w, big) })
	if rc := verge.ServeOnce(1, 2); rc != 0 || host.resps != 0 || host.status != 200 || host.out.String() != big {
		t.Fatalf("rc %d, %d http_resp calls, status %d, %d bytes", rc, host.resps, host.status, host.out.Len())
	}
}

func TestLargeHeadIsFetchedAgain(t *testing.T) {
	big := strings.Repeat("v", 10000)
	host := newFakeHost("GET", "/", "", "X-Big", big)
	defer verge.SetHost(verge.SetHost(host))
	verge.HandleFunc(func(w verge.ResponseWriter, r *verge.Request) { io.WriteString(w, r.Header.Get("X-Big")) })
	if rc := verge.ServeOnce(1, 2); rc != 0 || host.out.String() != big || host.calls != 2 {
		t.Fatalf("rc %d, %d bytes back, %d head calls; want the 10000-byte header after a second call", rc, host.out.Len(), host.calls)
	}
}

func TestPanicIsReported(t *testing.T) {
	host := newFakeHost("GET", "/", "")
	defer verge.SetHost(verge.SetHost(host))
	verge.HandleFunc(func(w verge.ResponseWriter, r *verge.Request) { panic("boom") })
	if rc := verge.ServeOnce(1, 2); rc == 0 || len(host.logs) == 0 || !strings.Contains(host.logs[0], "boom") {
		t.Fatalf("rc %d logs %q: a panic must return non-zero and be logged", rc, host.logs)
	}
}

func TestCanonicalHeaderKey(t *testing.T) {
	for in, want := range map[string]string{"content-type": "Content-Type", "X-FOO-bar": "X-Foo-Bar", "Host": "Host", "a": "A"} {
		if got := verge.CanonicalHeaderKey(in); got != want {
			t.Errorf("CanonicalHeaderKey(%q) = %q, want %q", in, got, want)
		}
	}
}

// A handler reads like net/http's. Built with GOOS=wasip1 GOARCH=wasm
// -buildmode=c-shared, it becomes a Verge function; natively, a fake host
// (SetHost) drives it, as here.
func ExampleHandleFunc() {
	host := newFakeHost("GET", "/hello?name=Ada", "")
	defer verge.SetHost(verge.SetHost(host))

	verge.HandleFunc(func(w verge.ResponseWriter, r *verge.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "Hello, %s!", r.URL.Query().Get("name"))
	})

	verge.ServeOnce(1, 2)
	fmt.Println(host.status, host.out.String())
	// Output: 200 Hello, Ada!
}

// Update's encoder writes what encoding/json writes.
func TestUpdateEncodesOpsAsJSON(t *testing.T) {
	host := newFakeHost("GET", "/", "")
	defer verge.SetHost(verge.SetHost(host))
	ops := []verge.Op{
		verge.Set("a", "plain"), verge.Set("b", `<tag> & "quotes" \ é`), verge.Set("c", "bad\xffutf8"),
		verge.Set("d", 1.5), verge.Set("e", map[string]any{"x": []int{1, 2}}), verge.Set("f", nil),
		verge.Set("g", true), verge.Insert("h", 3, int64(-7)), verge.Increment("i", 1<<62), verge.Remove("j.0"),
		verge.Append("k", uint32(9)), verge.Set("l", []byte("bytes")), verge.Set("", json.RawMessage(`{"z":1}`)),
	}
	if err := verge.Documents("c").Update("k", ops...); err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(ops)
	if host.lastOps != string(want) {
		t.Fatalf("sent\n%s\nencoding/json gives\n%s", host.lastOps, want)
	}
}
