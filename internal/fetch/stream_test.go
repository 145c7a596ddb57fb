package fetch

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"testing"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/cache"
)

// heap samples the heap in use, for bounds on memory that are about bytes,
// not time.
type heap struct{ base, peak uint64 }

func newHeap() *heap {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return &heap{base: ms.HeapInuse}
}

func (h *heap) sample() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	h.peak = max(h.peak, ms.HeapInuse)
}

func (h *heap) grew() uint64 { return h.peak - min(h.base, h.peak) }

// generator yields n bytes of a repeated pattern without holding them,
// sampling the heap every 64 MiB.
type generator struct {
	left, sampled int64
	h             *heap
}

var pattern = bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB

func (g *generator) Read(p []byte) (int, error) {
	if g.left == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(int64(len(p)), g.left)], pattern)
	g.left -= int64(n)
	if g.sampled += int64(n); g.sampled >= 64<<20 && g.h != nil {
		g.sampled = 0
		g.h.sample()
	}
	return n, nil
}

// A gigabyte through fetch and the cache, down (with and without a
// declared length) and up, never held by the host: the heap stays within a
// few MiB of where it started, whatever the object size.
func TestGigabyteStreamsWithFlatMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 3 GiB over loopback")
	}
	const size = 1 << 30
	origin := newServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			n, err := io.Copy(io.Discard, r.Body)
			fmt.Fprint(w, n, err)
			return
		}
		w.Header().Set("Cache-Control", "max-age=600") // cacheable, but too large to keep
		if r.URL.Query().Get("length") != "" {
			w.Header().Set("Content-Length", fmt.Sprint(size))
		}
		io.Copy(w, &generator{left: size})
	})
	const maxObject = 8 << 20
	c := cache.New(cache.Options{MemoryBytes: 64 << 20, MaxObjectBytes: maxObject})
	s := newService(t, []verge.Backend{{Name: "o", URL: origin.URL, AllowPrivate: true}}, Options{Cache: c})
	ss := s.Session()
	defer ss.Close()

	for _, path := range []string{"/big?length=1", "/big"} {
		h := newHeap()
		resp, err := get(t, ss, "o", path)
		if err != nil {
			t.Fatal(err)
		}
		if x := resp.Header.Get(cache.HeaderXCache); x != cache.Miss {
			t.Fatalf("%s: X-Cache %q; want MISS (through the cache)", path, x)
		}
		var n, sampled int64
		buf := make([]byte, 256<<10)
		for {
			k, err := resp.Body.Read(buf)
			n += int64(k)
			if sampled += int64(k); sampled >= 64<<20 {
				sampled = 0
				h.sample()
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: after %d bytes: %v", path, n, err)
			}
		}
		resp.Body.Close()
		// Unknown length: the first 8 MiB are kept as a candidate entry
		// before it turns out too large; then it passes through.
		if bound := uint64(maxObject + 16<<20); n != size || h.grew() > bound {
			t.Fatalf("%s: read %d bytes; the heap grew by %d MiB (bound %d MiB)", path, n, h.grew()>>20, bound>>20)
		}
		t.Logf("%s: 1 GiB down, heap grew by at most %.1f MiB", path, float64(h.grew())/(1<<20))
		if s := c.Stats(); s.Entries != 0 {
			t.Fatalf("%s: stored %d entries", path, s.Entries)
		}
	}

	h := newHeap()
	req, _ := http.NewRequest("POST", "/upload", &generator{left: size, h: h})
	resp, err := ss.Do(context.Background(), req, Params{Backend: "o"})
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, resp); got != fmt.Sprint(size, " <nil>") || h.grew() > 16<<20 {
		t.Fatalf("upload: the origin says %q; the heap grew by %d MiB", got, h.grew()>>20)
	}
	t.Logf("1 GiB up, heap grew by at most %.1f MiB", float64(h.grew())/(1<<20))
}
