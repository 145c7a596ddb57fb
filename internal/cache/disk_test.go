package cache

import (
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func diskFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// drain waits until the disk writer has written what it was given.
func (c *Cache) drain(t *testing.T) {
	waitFor(t, "the disk writer", func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.disk.pending == 0 })
}

// fiveK answers 5 KiB of the path's first letter, tagged with the path.
func fiveK(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "max-age=600")
	w.Header().Set("Surrogate-Key", "tag"+r.URL.Path)
	w.Write([]byte(strings.Repeat(r.URL.Path[1:2], 5<<10)))
}

func TestDiskTier(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	o := newOrigin(t, clk)
	opts := Options{MemoryBytes: 24 << 10, MaxObjectBytes: 6 << 10, Dir: dir, DiskBytes: 1 << 20}
	c := newCache(t, clk, opts)
	o.set(fiveK)
	paths := []string{"/a", "/b", "/c", "/d", "/e", "/f", "/g", "/h"}
	for _, p := range paths {
		do(t, c, o, p)
		c.drain(t) // a disk that keeps up: every evicted entry is written
	}
	s := c.Stats()
	if s.Entries != 8 || s.Evictions < 4 || s.MemoryBytes > opts.MemoryBytes {
		t.Fatalf("after 8 objects of 5 KiB in 24 KiB: %+v", s)
	}
	// Every object is still a hit: from memory, or read back from disk.
	for _, p := range paths {
		if r := do(t, c, o, p); r.label() != Hit || r.body != strings.Repeat(p[1:], 5<<10) {
			t.Fatalf("%s: %s with %d bytes", p, r.label(), len(r.body))
		}
		c.drain(t)
	}
	if s := c.Stats(); s.DiskReads == 0 || o.count() != 8 {
		t.Fatalf("no disk reads, or origin requests (%d): %+v", o.count(), s)
	}

	// A restart finds them all: Close wrote what only memory held.
	c.Close()
	c2 := newCache(t, clk, opts)
	if s := c2.Stats(); s.Entries != 8 || s.DiskBytes == 0 {
		t.Fatalf("after reopening: %+v", s)
	}
	for _, p := range paths {
		if r := do(t, c2, o, p); r.label() != Hit || len(r.body) != 5<<10 || r.age() != 0 {
			t.Fatalf("%s after a restart: %s, %d bytes, Age %d", p, r.label(), len(r.body), r.age())
		}
	}
	if o.count() != 8 {
		t.Fatalf("%d origin requests after the restart", o.count())
	}
	// Purges reach the disk copies.
	if n := c2.Purge("app", Purge{Keys: []string{"tag/a"}}); n != 1 {
		t.Fatalf("purged %d", n)
	}
	c2.Purge("app", Purge{URLs: []string{"/b"}})
	expect(t, do(t, c2, o, "/a"), Miss, strings.Repeat("a", 5<<10), o, 9)
	c2.Close()
	c3 := newCache(t, clk, opts)
	if r := do(t, c3, o, "/b"); r.label() != Miss {
		t.Fatalf("/b purged before the restart: %s", r.label())
	}
}

func TestDiskTierCorruptFiles(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	o := newOrigin(t, clk)
	opts := Options{MemoryBytes: 64 << 10, Dir: dir}
	c := newCache(t, clk, opts)
	o.set(fiveK)
	for _, p := range []string{"/a", "/b", "/c"} {
		do(t, c, o, p)
	}
	c.Close()
	files := diskFiles(t, dir)
	if len(files) != 3 {
		t.Fatalf("%d files, want 3", len(files))
	}
	// One with a damaged body (found at read time), one truncated and one
	// with a damaged header (found at Open), and debris.
	damage := func(path string, f func([]byte) []byte) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, f(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	damage(files[0], func(b []byte) []byte { b[len(b)-100] ^= 0xff; return b })
	damage(files[1], func(b []byte) []byte { return b[:len(b)-1] })
	damage(files[2], func(b []byte) []byte { b[20] ^= 0xff; return b })
	os.WriteFile(filepath.Join(dir, "junk.vc"), []byte("not a cache file"), 0o644)
	os.WriteFile(filepath.Join(dir, "half.vc.tmp"), []byte("VRGC"), 0o644)
	os.WriteFile(filepath.Join(dir, "README"), []byte("not ours"), 0o644)

	c2 := newCache(t, clk, opts)
	s := c2.Stats()
	if s.Entries != 1 || s.DiskCorrupt != 3 {
		t.Fatalf("after opening damaged files: %+v", s)
	}
	left := diskFiles(t, dir)
	if len(left) != 2 { // the one with a damaged body, and README
		t.Fatalf("files left: %v", left)
	}
	// The damaged body is refused when read: a miss, not bad bytes.
	for _, p := range []string{"/a", "/b", "/c"} {
		if r := do(t, c2, o, p); r.label() != Miss || r.body != strings.Repeat(p[1:], 5<<10) {
			t.Fatalf("%s: %s with %d bytes", p, r.label(), len(r.body))
		}
	}
	if s := c2.Stats(); s.DiskCorrupt != 4 {
		t.Fatalf("DiskCorrupt %d, want 4", s.DiskCorrupt)
	}
	if _, err := os.Stat(filepath.Join(dir, "README")); err != nil {
		t.Fatal("a file that is not the cache's was removed")
	}
}

func TestDiskBudget(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	o := newOrigin(t, clk)
	opts := Options{MemoryBytes: 12 << 10, MaxObjectBytes: 3 << 10, Dir: dir, DiskBytes: 20 << 10}
	c := newCache(t, clk, opts)
	o.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Write([]byte(strings.Repeat("x", 2<<10)))
	})
	for i := range 40 {
		do(t, c, o, "/"+strings.Repeat("k", i+1))
		c.drain(t)
	}
	s := c.Stats()
	if s.DiskBytes > opts.DiskBytes || s.MemoryBytes > opts.MemoryBytes {
		t.Fatalf("over budget: %+v", s)
	}
	if s.Entries >= 40 || s.Entries < 8 {
		t.Fatalf("%d entries kept of 40", s.Entries)
	}
	c.Close()
	var total int64
	for _, f := range diskFiles(t, dir) {
		fi, _ := os.Stat(f)
		total += fi.Size()
	}
	if total > opts.DiskBytes {
		t.Fatalf("%d bytes of files, budget %d", total, opts.DiskBytes)
	}
}

func TestStaleOnOpen(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	o := newOrigin(t, clk)
	c := newCache(t, clk, Options{Dir: dir})
	o.set(static("v", "Cache-Control", "max-age=600", "ETag", `"1"`))
	do(t, c, o, "/s")
	c.Close()
	c2 := newCache(t, clk, Options{Dir: dir, StaleOnOpen: true})
	o.set(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNotModified) })
	expect(t, do(t, c2, o, "/s"), Revalidated, "v", o, 2)
	expect(t, do(t, c2, o, "/s"), Hit, "v", o, 2)
}
