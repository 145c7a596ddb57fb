package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// fill writes n documents and returns the store's directory, closed.
func fill(t *testing.T, n int, flush bool) string {
	t.Helper()
	dir := t.TempDir()
	s := openTest(t, dir, Options{})
	ctx := context.Background()
	for i := range n {
		k := Key{"app", "c", fmt.Sprintf("doc%05d", i)}
		if _, err := s.Update(ctx, k, appendFn(strings.Repeat("v", 100))); err != nil {
			t.Fatal(err)
		}
	}
	if flush {
		if err := s.db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func filesWithSuffix(t *testing.T, dir, suffix string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+suffix))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// flip inverts the bytes of path in [off, off+n) (off < 0: from the end).
func flip(t *testing.T, path string, off int64, n int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if off < 0 {
		off += int64(len(b))
	}
	for i := off; i < off+int64(n) && i < int64(len(b)); i++ {
		b[i] ^= 0xff
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func wantCorruptOpen(t *testing.T, dir string, mention string) {
	t.Helper()
	s, err := Open(dir, Options{Origin: "pop-a"})
	if err == nil {
		s.Close()
		t.Fatal("Open succeeded on a damaged store")
	}
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open error does not wrap ErrCorrupt: %v", err)
	}
	t.Logf("Open: %v", err)
	msg := err.Error()
	if !strings.Contains(msg, "store at "+dir+" is corrupt") || !strings.Contains(msg, "refusing to start") {
		t.Fatalf("Open error is not the clear refusal: %v", err)
	}
	if !strings.Contains(msg, mention) {
		t.Fatalf("Open error does not mention %q: %v", mention, err)
	}
}

// rawSet overwrites a key behind the store's back, as a bit flip in memory
// before Pebble checksummed the value would.
func rawSet(t *testing.T, dir string, fn func(db *pebble.DB)) {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietLogger{}, FormatMajorVersion: pebble.FormatNewest})
	if err != nil {
		t.Fatal(err)
	}
	fn(db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptValue(t *testing.T) {
	t.Parallel()
	dir := fill(t, 10, false)
	k := Key{"app", "c", "doc00007"}
	rawSet(t, dir, func(db *pebble.DB) {
		v, closer, err := db.Get(docKey(k))
		if err != nil {
			t.Fatal(err)
		}
		v = append([]byte(nil), v...)
		closer.Close()
		v[len(v)-3] ^= 0x10
		if err := db.Set(docKey(k), v, pebble.Sync); err != nil {
			t.Fatal(err)
		}
	})
	wantCorruptOpen(t, dir, `document "app"/"c"/"doc00007": checksum mismatch`)

	// Without the scan at Open, the read reports it, naming the document.
	s, err := Open(dir, Options{Origin: "pop-a", SkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, _, err := s.Get(k); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), `"doc00007"`) {
		t.Fatalf("Get of the damaged document = %v", err)
	}
	if _, err := s.Update(context.Background(), k, appendFn("x")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Update of the damaged document = %v", err)
	}
	if got := mustGet(t, s, Key{"app", "c", "doc00006"}); !strings.HasPrefix(got, "vvv") {
		t.Fatalf("undamaged neighbour = %q", got)
	}
}

func TestCorruptLogEntryAndValueMovedToAnotherKey(t *testing.T) {
	t.Parallel()
	dir := fill(t, 5, false)
	rawSet(t, dir, func(db *pebble.DB) {
		// A value that is intact but stored under the wrong key.
		v, closer, err := db.Get(docKey(Key{"app", "c", "doc00001"}))
		if err != nil {
			t.Fatal(err)
		}
		v = append([]byte(nil), v...)
		closer.Close()
		if err := db.Set(docKey(Key{"app", "c", "doc00002"}), v, pebble.Sync); err != nil {
			t.Fatal(err)
		}
	})
	wantCorruptOpen(t, dir, `"doc00002": checksum mismatch`)

	dir = fill(t, 5, false)
	rawSet(t, dir, func(db *pebble.DB) {
		if err := db.Set(logKey("pop-a", 3), []byte{frameV1, 0, 0}, pebble.Sync); err != nil {
			t.Fatal(err)
		}
	})
	wantCorruptOpen(t, dir, `log entry (origin "pop-a", seq 3)`)
}

func TestCorruptSSTable(t *testing.T) {
	t.Parallel()
	dir := fill(t, 2000, true)
	ssts := filesWithSuffix(t, dir, ".sst")
	if len(ssts) == 0 {
		t.Fatal("no sstable after Flush")
	}
	for _, f := range ssts {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		flip(t, f, fi.Size()/3, 8) // inside the data blocks
	}
	wantCorruptOpen(t, dir, "checksum")
}

func TestCorruptWAL(t *testing.T) {
	t.Parallel()
	dir := fill(t, 2000, false)
	logs := filesWithSuffix(t, dir, ".log")
	if len(logs) == 0 {
		t.Fatal("no WAL")
	}
	var biggest string
	var size int64
	for _, f := range logs {
		if fi, err := os.Stat(f); err == nil && fi.Size() > size {
			biggest, size = f, fi.Size()
		}
	}
	if size < 64<<10 {
		t.Fatalf("WAL %s is only %d bytes", biggest, size)
	}
	flip(t, biggest, size/2, 4) // mid-log: valid records follow, so this is not a torn tail
	wantCorruptOpen(t, dir, "WAL")
}

func TestCorruptMissingManifestOrFormat(t *testing.T) {
	t.Parallel()
	dir := fill(t, 10, false)
	markers := filesWithSuffix(t, dir, "") // every file
	removed := 0
	for _, f := range markers {
		if strings.Contains(filepath.Base(f), "marker.manifest") || strings.HasPrefix(filepath.Base(f), "MANIFEST") {
			if err := os.Remove(f); err != nil {
				t.Fatal(err)
			}
			removed++
		}
	}
	if removed == 0 {
		t.Fatal("found no manifest to remove")
	}
	wantCorruptOpen(t, dir, "does not exist")

	dir = fill(t, 10, false)
	rawSet(t, dir, func(db *pebble.DB) {
		if err := db.Delete(versionKey, pebble.Sync); err != nil {
			t.Fatal(err)
		}
	})
	wantCorruptOpen(t, dir, "format record is missing")
}

func TestOpenLockedStore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	openTest(t, dir, Options{})
	_, err := Open(dir, Options{Origin: "pop-a"})
	if err == nil || errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("second Open of a store in use = %v", err)
	}
}
