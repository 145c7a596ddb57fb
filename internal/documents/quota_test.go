package documents

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/verge-edge/verge/internal/store"
)

// A write that would take an app past its stored-bytes quota is refused
// with ErrQuota naming the quota, and nothing of it is stored; other apps
// and shrinking writes are unaffected; the count survives a reopen (a scan).
func TestStoredBytesQuota(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{Origin: "test", NoSync: true, MaxValueBytes: StoreValueBytes(DefaultMaxDocBytes)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const quota = 4000
	s := New(st, Options{Replica: 1, Quota: func(app string) int64 {
		if app == "small" {
			return quota
		}
		return 0
	}})
	s.SetApp(manifest("small", "c"))
	s.SetApp(manifest("big", "c"))
	ctx := context.Background()
	doc := `{"v":"` + strings.Repeat("x", 900) + `"}`
	var written int
	var qerr error
	for i := 0; i < 20 && qerr == nil; i++ {
		if _, err := s.Put(ctx, "small", "c", string(rune('a'+i)), []byte(doc)); err != nil {
			qerr = err
		} else {
			written++
		}
	}
	var qe *QuotaError
	if !errors.Is(qerr, ErrQuota) || !errors.As(qerr, &qe) || qe.Quota != quota || !strings.Contains(qerr.Error(), "stored_bytes") {
		t.Fatalf("after %d documents: %v, want a QuotaError naming stored_bytes", written, qerr)
	}
	if written == 0 || s.StoredBytes("small") > quota {
		t.Fatalf("%d documents written, %d bytes counted (quota %d)", written, s.StoredBytes("small"), quota)
	}
	refused := string(rune('a' + written))
	if _, found, _ := s.Get("small", "c", refused); found {
		t.Fatal("the refused document was stored")
	}
	if _, found, _ := s.Get("small", "c", "a"); !found {
		t.Fatal("an earlier document was lost")
	}
	// Shrinking a document is allowed; then there is room again.
	if _, err := s.Put(ctx, "small", "c", "a", []byte(`{"v":1}`)); err != nil {
		t.Fatalf("shrinking: %v", err)
	}
	if _, err := s.Put(ctx, "small", "c", refused, []byte(doc)); err != nil {
		t.Fatalf("after shrinking: %v", err)
	}
	for i := 0; i < 10; i++ {
		if _, err := s.Put(ctx, "big", "c", string(rune('a'+i)), []byte(doc)); err != nil {
			t.Fatalf("an app without quota: %v", err)
		}
	}
	// A fresh service counts what is stored by a scan.
	s2 := New(st, Options{Replica: 1, Quota: s.quota})
	s2.SetApp(manifest("small", "c"))
	if got, want := s2.StoredBytes("small"), s.StoredBytes("small"); got != want {
		t.Fatalf("counted %d bytes after a reopen, %d before", got, want)
	}
}
