//go:build !wasip1

package verge_test

import (
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/verge-edge/verge/sdk/go/verge"
)

// fetchHost adds outbound fetch to fakeHost: it records what the SDK sends
// and answers with a canned response.
type fetchHost struct {
	*fakeHost
	backend string
	head    []byte
	flags   uint32
	sent    strings.Builder
	closed  map[uint32]bool
	respHd  []byte
	resp    *strings.Reader
	openErr uint32
}

func (h *fetchHost) FetchOpen(backend string, head []byte, flags uint32) (uint32, uint32) {
	if h.openErr != 0 {
		h.lastErr = "no backend named " + backend
		return 0, h.openErr
	}
	h.backend, h.head, h.flags = backend, append([]byte(nil), head...), flags
	return 3, 0
}
func (h *fetchHost) FetchBodyWrite(_ uint32, b []byte) uint32 { h.sent.Write(b); return 0 }
func (h *fetchHost) FetchBodyClose(uint32) uint32             { return 0 }
func (h *fetchHost) FetchHead(_ uint32, buf []byte) (uint32, uint32) {
	if len(buf) < len(h.respHd) {
		return uint32(len(h.respHd)), 3
	}
	return uint32(copy(buf, h.respHd)), 0
}
func (h *fetchHost) FetchBodyRead(_ uint32, buf []byte) (uint32, uint32) {
	n, _ := h.resp.Read(buf)
	return uint32(n), 0
}
func (h *fetchHost) FetchClose(hd uint32) uint32 { h.closed[hd] = true; return 0 }

func TestFetch(t *testing.T) {
	fh := &fetchHost{fakeHost: newFakeHost("GET", "/", ""), closed: map[uint32]bool{}, resp: strings.NewReader("payload")}
	// A response head bigger than the SDK's first buffer: it asks again.
	rh := binary.LittleEndian.AppendUint32(nil, 201)
	rh = binary.LittleEndian.AppendUint32(rh, 2)
	rh = str(str(rh, "X-Cache"), "MISS")
	rh = str(str(rh, "X-Big"), strings.Repeat("b", 3000))
	fh.respHd = rh
	defer verge.SetHost(verge.SetHost(fh))

	req, err := verge.NewRequest("POST", "/items?x=1", strings.NewReader("request body"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-A", "1")
	req.Host = "virtual.example"
	resp, err := verge.Fetch(req, "origin", verge.FetchOptions{NoCache: true})
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil || string(b) != "payload" || resp.StatusCode != 201 || resp.Header.Get("X-Cache") != "MISS" || len(resp.Header.Get("X-Big")) != 3000 {
		t.Fatalf("response: %d %v %q %v", resp.StatusCode, resp.Header, b, err)
	}
	resp.Body.Close()
	if !fh.closed[3] {
		t.Fatal("Close did not release the fetch")
	}
	if fh.backend != "origin" || fh.flags != 3 || fh.sent.String() != "request body" {
		t.Fatalf("sent: backend %q flags %d body %q", fh.backend, fh.flags, fh.sent.String())
	}
	// The head: 2 fields (method, url), then the headers, Host last.
	want := binary.LittleEndian.AppendUint32(nil, 2)
	want = str(str(want, "POST"), "/items?x=1")
	want = binary.LittleEndian.AppendUint32(want, 2)
	want = str(str(want, "X-A"), "1")
	want = str(str(want, "Host"), "virtual.example")
	if string(fh.head) != string(want) {
		t.Fatalf("head %q\nwant %q", fh.head, want)
	}

	fh.openErr = 5
	_, err = verge.Fetch(req, "nope")
	if !errors.Is(err, verge.ErrNotFound) || !strings.Contains(err.Error(), "no backend named nope") {
		t.Fatalf("undeclared backend: %v", err)
	}
}

func TestFetchWithoutHost(t *testing.T) {
	defer verge.SetHost(verge.SetHost(newFakeHost("GET", "/", "")))
	req, _ := verge.NewRequest("GET", "/", nil)
	var he *verge.HostError
	if _, err := verge.Fetch(req, "origin"); !errors.As(err, &he) || he.Status != 7 {
		t.Fatalf("a host without fetch: %v", err)
	}
}
