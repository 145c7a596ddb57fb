//go:build !wasip1

package verge_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/verge-edge/verge/sdk/go/verge"
)

// centralHost adds a fake central PoP to fakeHost. Like the real host, it
// keeps the result of a call with effects whose output did not fit, for the
// retry with the same arguments.
type centralHost struct {
	*fakeHost
	down     bool
	unknown  bool // takes are applied but answered UNKNOWN_OUTCOME, as after a lost reply
	owners   map[string]string
	stock    map[string]int64
	doc      string
	rev      uint64
	calls    map[string]int // calls that had an effect
	lastOps  string
	lastCall string
	kept     string // the arguments of the call whose result is kept
}

func newCentralHost() *centralHost {
	return &centralHost{fakeHost: newFakeHost("GET", "/", ""), owners: map[string]string{}, stock: map[string]int64{}, calls: map[string]int{}}
}

func (h *centralHost) unavailable() uint32 {
	h.lastErr = "the central PoP cannot be reached"
	return 8
}

// out writes data to buf with the too-small protocol, keeping the result
// under args when it does not fit.
func (h *centralHost) out(args string, data string, buf []byte, status uint32) (uint32, uint32) {
	if len(buf) < len(data) {
		h.kept = args
		return uint32(len(data)), 3
	}
	h.kept = ""
	return uint32(copy(buf, data)), status
}

func (h *centralHost) SpotClaim(ns, key, owner string, buf []byte) (uint32, uint32) {
	if h.down {
		return 0, h.unavailable()
	}
	args := "claim " + ns + " " + key + " " + owner
	if h.kept != args {
		h.calls["claim"]++
		if _, ok := h.owners[ns+"/"+key]; !ok {
			h.owners[ns+"/"+key] = owner
		}
	}
	cur := h.owners[ns+"/"+key]
	if cur == owner {
		return h.out(args, cur, buf, 0)
	}
	return h.out(args, cur, buf, 9)
}

func (h *centralHost) SpotRelease(ns, key, owner string) uint32 {
	if h.owners[ns+"/"+key] != owner {
		return 5
	}
	delete(h.owners, ns+"/"+key)
	return 0
}

func (h *centralHost) SpotTake(counter string, n int64) (int64, uint32) {
	if h.down {
		return 0, h.unavailable()
	}
	if n <= 0 {
		h.lastErr = "the amount must be positive"
		return 0, 1
	}
	if h.stock[counter] < n {
		return h.stock[counter], 9
	}
	h.stock[counter] -= n
	if h.unknown {
		h.lastErr = "no answer from the central PoP in time; the change may have been applied"
		return 0, 11
	}
	return h.stock[counter], 0
}

func (h *centralHost) SpotRestock(counter string, n int64) (int64, uint32) {
	h.stock[counter] += n
	return h.stock[counter], 0
}

func (h *centralHost) SpotCounter(counter string) (int64, uint32) { return h.stock[counter], 0 }

func (h *centralHost) SpotDocGet(key string, buf []byte) (uint32, uint64, uint32) {
	if h.rev == 0 {
		return 0, 0, 5
	}
	n, st := h.out("", h.doc, buf, 0)
	return n, h.rev, st
}

func (h *centralHost) SpotDocUpdate(key string, rev uint64, ops, buf []byte) (uint32, uint64, uint32) {
	args := "update " + key + " " + string(ops)
	if h.kept != args {
		if rev != h.rev {
			h.lastErr = "the document moved"
			if h.rev == 0 {
				return 0, 0, 5
			}
			return 0, h.rev, 9
		}
		h.calls["update"]++
		h.lastOps = string(ops)
		h.rev++
		h.doc = `{"v":"` + strings.Repeat("x", int(h.rev)*1000) + `"}`
	}
	n, st := h.out(args, h.doc, buf, 0)
	return n, h.rev, st
}

func (h *centralHost) Invoke(fn, method, path string, body, buf []byte) (uint32, uint32, uint32) {
	if fn != "orders" {
		h.lastErr = `no central function "` + fn + `"`
		return 0, 0, 5
	}
	args := "invoke " + fn + " " + method + " " + path + " " + string(body)
	if h.kept != args {
		h.calls["invoke"]++
		h.lastCall = method + " " + path + " " + string(body)
	}
	n, st := h.out(args, strings.Repeat("r", 5000), buf, 0)
	return n, 202, st
}

func TestClaimAndRelease(t *testing.T) {
	h := newCentralHost()
	defer verge.SetHost(verge.SetHost(h))
	if claimed, owner, err := verge.Claim("users", "ada", "s1"); !claimed || owner != "s1" || err != nil {
		t.Fatalf("first claim: %v %q %v", claimed, owner, err)
	}
	if claimed, owner, err := verge.Claim("users", "ada", "s2"); claimed || owner != "s1" || err != nil {
		t.Fatalf("taken claim: %v %q %v, want false s1", claimed, owner, err)
	}
	long := strings.Repeat("o", 1000) // more than the SDK's first buffer
	if claimed, owner, err := verge.Claim("users", "bob", long); !claimed || owner != long || err != nil || h.calls["claim"] != 3 {
		t.Fatalf("long owner: %v %d bytes %v, %d claims made (want 3)", claimed, len(owner), err, h.calls["claim"])
	}
	if ok, err := verge.Release("users", "ada", "s2"); ok || err != nil {
		t.Fatalf("release by a non-owner: %v %v", ok, err)
	}
	if ok, err := verge.Release("users", "ada", "s1"); !ok || err != nil {
		t.Fatalf("release by the owner: %v %v", ok, err)
	}
	h.down = true
	_, _, err := verge.Claim("users", "ada", "s2")
	if !errors.Is(err, verge.ErrUnavailable) || errors.Is(err, verge.ErrConflict) || !strings.Contains(err.Error(), "the central PoP cannot be reached") {
		t.Fatalf("claim with the centre down: %v, want ErrUnavailable with the host's message", err)
	}
}

func TestStock(t *testing.T) {
	h := newCentralHost()
	defer verge.SetHost(verge.SetHost(h))
	if ok, left, err := verge.Take("seats", 1); ok || left != 0 || err != nil {
		t.Fatalf("take from nothing: %v %d %v", ok, left, err)
	}
	if left, err := verge.Restock("seats", 3); left != 3 || err != nil {
		t.Fatalf("restock: %d %v", left, err)
	}
	if ok, left, err := verge.Take("seats", 2); !ok || left != 1 || err != nil {
		t.Fatalf("take 2 of 3: %v %d %v", ok, left, err)
	}
	if ok, left, err := verge.Take("seats", 2); ok || left != 1 || err != nil {
		t.Fatalf("take 2 of 1: %v %d %v", ok, left, err)
	}
	if left, err := verge.Stock("seats"); left != 1 || err != nil {
		t.Fatalf("stock: %d %v", left, err)
	}
	_, _, err := verge.Take("seats", 0)
	var he *verge.HostError
	if !errors.As(err, &he) || he.Status != 1 || he.Call != "spot_take" || !strings.Contains(err.Error(), "must be positive") {
		t.Fatalf("take 0: %v", err)
	}
	// A lost reply: the take was applied, the guest cannot know; the error
	// says so and is still a kind of unavailability.
	h.unknown = true
	_, _, err = verge.Take("seats", 1)
	if !errors.Is(err, verge.ErrUnknownOutcome) || !errors.Is(err, verge.ErrUnavailable) || errors.Is(err, verge.ErrConflict) ||
		!strings.Contains(err.Error(), "outcome unknown: no answer") {
		t.Fatalf("take with a lost reply: %v, want ErrUnknownOutcome (and ErrUnavailable)", err)
	}
	h.unknown, h.down = false, true
	if _, _, err = verge.Take("seats", 1); errors.Is(err, verge.ErrUnknownOutcome) || !errors.Is(err, verge.ErrUnavailable) {
		t.Fatalf("take with the centre down: %v, want ErrUnavailable only", err)
	}
	h.down = false
	if left, err := verge.Stock("seats"); left != 0 || err != nil {
		t.Fatalf("stock after the take whose reply was lost: %d %v, want 0", left, err)
	}
}

func TestCentralDocs(t *testing.T) {
	h := newCentralHost()
	defer verge.SetHost(verge.SetHost(h))
	if doc, rev, err := verge.CentralDoc("cfg"); doc != nil || rev != 0 || err != nil {
		t.Fatalf("missing document: %q %d %v", doc, rev, err)
	}
	_, _, err := verge.UpdateCentralDoc("cfg", 4, verge.Set("a", 1))
	if !errors.Is(err, verge.ErrNotFound) {
		t.Fatalf("update of a missing document at revision 4: %v, want ErrNotFound", err)
	}
	// Each update grows the document by 1000 bytes: the second one no
	// longer fits the SDK's first buffer, and must be applied once.
	for want := uint64(1); want <= 3; want++ {
		doc, rev, err := verge.UpdateCentralDoc("cfg", want-1, verge.Set("mode", "on"), verge.Increment("n", 2))
		if err != nil || rev != want || len(doc) != int(want)*1000+8 || h.rev != want || h.calls["update"] != int(want) {
			t.Fatalf("update %d: %d bytes, revision %d, %v; the host is at %d after %d updates", want, len(doc), rev, err, h.rev, h.calls["update"])
		}
	}
	if want := `[{"op":"set","path":"mode","value":"on"},{"op":"increment","path":"n","value":2}]`; h.lastOps != want {
		t.Fatalf("ops sent %s, want %s", h.lastOps, want)
	}
	doc, rev, err := verge.UpdateCentralDoc("cfg", 1, verge.Remove("mode"))
	if !errors.Is(err, verge.ErrConflict) || rev != 3 || doc != nil || !strings.Contains(err.Error(), "the document moved") {
		t.Fatalf("update of a moved document: %q %d %v, want ErrConflict and the current revision 3", doc, rev, err)
	}
	if doc, rev, err := verge.CentralDoc("cfg"); len(doc) != 3008 || rev != 3 || err != nil {
		t.Fatalf("read: %d bytes, revision %d, %v", len(doc), rev, err)
	}
}

func TestInvoke(t *testing.T) {
	h := newCentralHost()
	defer verge.SetHost(verge.SetHost(h))
	status, resp, err := verge.Invoke("orders", "POST", "/orders?id=7", []byte("pay"))
	if status != 202 || len(resp) != 5000 || err != nil || h.calls["invoke"] != 1 || h.lastCall != "POST /orders?id=7 pay" {
		t.Fatalf("invoke: %d, %d bytes, %v; %d calls, last %q", status, len(resp), err, h.calls["invoke"], h.lastCall)
	}
	_, _, err = verge.Invoke("nope", "GET", "/", nil)
	if !errors.Is(err, verge.ErrNotFound) || !strings.Contains(err.Error(), `no central function "nope"`) {
		t.Fatalf("invoke of an unknown function: %v", err)
	}
}

func TestCentralWithoutHostSupport(t *testing.T) {
	defer verge.SetHost(verge.SetHost(newFakeHost("GET", "/", ""))) // no CentralHost methods
	_, _, err := verge.Take("seats", 1)
	var he *verge.HostError
	if !errors.As(err, &he) || he.Status != 7 {
		t.Fatalf("take on a host without a centre: %v, want status 7 (unsupported)", err)
	}
	if _, _, err := verge.Invoke("orders", "GET", "/", nil); !errors.As(err, &he) || he.Status != 7 {
		t.Fatalf("invoke on a host without a centre: %v", err)
	}
}
