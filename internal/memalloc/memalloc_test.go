package memalloc

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
)

const wasmPage = 64 << 10

// configs runs a test against the mmap allocator (where supported) and the
// Go heap one.
func configs(t *testing.T, f func(t *testing.T, cfg Config)) {
	t.Helper()
	for _, noMmap := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoMmap=%v", noMmap), func(t *testing.T) {
			t.Parallel()
			f(t, Config{NoMmap: noMmap})
		})
	}
}

func fill(b []byte, v byte) {
	for i := range b {
		b[i] = v
	}
}

func requireZero(t *testing.T, b []byte) {
	t.Helper()
	for i, c := range b {
		if c != 0 {
			t.Fatalf("byte %d of %d is %#x, want 0", i, len(b), c)
		}
	}
}

func TestReusedMemoryIsZero(t *testing.T) {
	configs(t, func(t *testing.T, cfg Config) {
		for _, zeroLimit := range []uint64{0, wasmPage} { // default, and mostly MADV_DONTNEED
			cfg.ZeroLimit = zeroLimit
			a := New(cfg)
			defer a.Close()
			m := a.Allocate(wasmPage, 16*wasmPage)
			b := m.Reallocate(8 * wasmPage)
			fill(b, 0xa5)
			// Touch only some pages of a larger size, leaving holes.
			b = m.Reallocate(12 * wasmPage)
			fill(b[10*wasmPage:11*wasmPage], 0x5a)
			m.Free()

			m2 := a.Allocate(wasmPage, 16*wasmPage)
			// A heap memory dirtier than ZeroLimit is dropped, not zeroed.
			wantReuses := uint64(1)
			if zeroLimit != 0 && (cfg.NoMmap || !mmapSupported) {
				wantReuses = 0
			}
			if st := a.Stats(); st.Reuses != wantReuses {
				t.Fatalf("ZeroLimit %d: stats %+v, want %d reuses", zeroLimit, st, wantReuses)
			}
			requireZero(t, m2.Reallocate(16*wasmPage))
			m2.Free()
		}
	})
}

func TestGrowthKeepsContents(t *testing.T) {
	configs(t, func(t *testing.T, cfg Config) {
		a := New(cfg)
		defer a.Close()
		m := a.Allocate(wasmPage, 64*wasmPage).(*Memory)
		b := m.Reallocate(wasmPage)
		if len(b) != wasmPage {
			t.Fatalf("len %d", len(b))
		}
		for i := range b {
			b[i] = byte(i * 7)
		}
		b2 := m.Reallocate(40 * wasmPage)
		if len(b2) != 40*wasmPage {
			t.Fatalf("len %d", len(b2))
		}
		for i := 0; i < wasmPage; i++ {
			if b2[i] != byte(i*7) {
				t.Fatalf("byte %d lost on growth", i)
			}
		}
		requireZero(t, b2[wasmPage:])
		if !cfg.NoMmap && mmapSupported && unsafe.SliceData(b) != unsafe.SliceData(b2) {
			t.Fatal("mapped memory moved on growth")
		}
		if got := m.HighWater(); got != 40*wasmPage {
			t.Fatalf("HighWater = %d, want %d", got, 40*wasmPage)
		}
		if m.Reallocate(64*wasmPage+1) != nil {
			t.Fatal("Reallocate beyond max must fail")
		}
		if got := m.HighWater(); got != 40*wasmPage {
			t.Fatalf("failed growth changed HighWater to %d", got)
		}
		// A failed growth leaves the memory usable.
		if b3 := m.Reallocate(64 * wasmPage); len(b3) != 64*wasmPage || b3[5] != 35 {
			t.Fatal("growth to max failed or lost contents")
		}
		m.Free()
		if m.Reallocate(wasmPage) != nil {
			t.Fatal("Reallocate after Free must fail")
		}
	})
}

func TestFreeTwiceIsHarmless(t *testing.T) {
	configs(t, func(t *testing.T, cfg Config) {
		a := New(cfg)
		defer a.Close()
		m := a.Allocate(wasmPage, 4*wasmPage)
		m.Reallocate(wasmPage)
		m.Free()
		m.Free()
		if st := a.Stats(); st.Frees != 1 || st.Idle != 1 || st.Live != 0 {
			t.Fatalf("stats after double free: %+v", st)
		}
		// The region now belongs to m2: a third Free of m must not touch it.
		m2 := a.Allocate(wasmPage, 4*wasmPage)
		b := m2.Reallocate(wasmPage)
		fill(b, 1)
		m.Free()
		if st := a.Stats(); st.Idle != 0 || st.Live != 1 {
			t.Fatalf("stale Free returned a live memory to the pool: %+v", st)
		}
		if b[100] != 1 {
			t.Fatal("stale Free zeroed a live memory")
		}
		m2.Free()
	})
}

func TestPoolBounds(t *testing.T) {
	configs(t, func(t *testing.T, cfg Config) {
		cfg.MaxIdle = 2
		a := New(cfg)
		var ms []experimental.LinearMemory
		for i := 0; i < 5; i++ {
			m := a.Allocate(wasmPage, 2*wasmPage)
			m.Reallocate(wasmPage)[0] = 1
			ms = append(ms, m)
		}
		// A different maximum is a different class.
		other := a.Allocate(wasmPage, 3*wasmPage)
		other.Reallocate(wasmPage)
		for _, m := range ms {
			m.Free()
		}
		other.Free()
		st := a.Stats()
		if st.Idle != 3 || st.Released != 3 || st.Frees != 6 || st.Live != 0 || st.Allocs != 6 {
			t.Fatalf("stats %+v, want 3 idle (2+1) and 3 released", st)
		}
		a.Close()
		if st := a.Stats(); st.Idle != 0 || st.Released != 6 {
			t.Fatalf("after Close: %+v", st)
		}
		// After Close memories still work, and are released when freed.
		m := a.Allocate(wasmPage, 2*wasmPage)
		requireZero(t, m.Reallocate(2*wasmPage))
		m.Free()
		if st := a.Stats(); st.Idle != 0 || st.Released != 7 {
			t.Fatalf("free after Close: %+v", st)
		}
	})
}

func TestNoPooling(t *testing.T) {
	t.Parallel()
	a := New(Config{MaxIdle: -1})
	m := a.Allocate(wasmPage, wasmPage)
	m.Reallocate(wasmPage)
	m.Free()
	if st := a.Stats(); st.Idle != 0 || st.Released != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestZeroMaxAndHugeMax(t *testing.T) {
	configs(t, func(t *testing.T, cfg Config) {
		a := New(cfg)
		defer a.Close()
		m := a.Allocate(0, 0)
		if b := m.Reallocate(0); b == nil || len(b) != 0 {
			t.Fatalf("Reallocate(0) = %v", b)
		}
		if m.Reallocate(1) != nil {
			t.Fatal("growth past a zero max must fail")
		}
		m.Free()
		// 4 GiB is what wazero asks for when a module declares no maximum.
		m = a.Allocate(wasmPage, 1<<32)
		b := m.Reallocate(2 * wasmPage)
		fill(b, 3)
		m.Free()
	})
}

func TestConcurrent(t *testing.T) {
	configs(t, func(t *testing.T, cfg Config) {
		cfg.MaxIdle = 4
		a := New(cfg)
		defer a.Close()
		var wg sync.WaitGroup
		deadline := time.Now().Add(2 * time.Second)
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 200 && time.Now().Before(deadline); i++ {
					maxPages := uint64(4 + g%2) // two classes
					m := a.Allocate(wasmPage, maxPages*wasmPage).(*Memory)
					b := m.Reallocate(wasmPage)
					for _, c := range b {
						if c != 0 {
							t.Errorf("goroutine %d: reused memory not zero", g)
							return
						}
					}
					b = m.Reallocate(uint64(1+i%3) * wasmPage)
					fill(b, byte(g+1))
					_ = m.HighWater()
					m.Free()
				}
			}()
		}
		wg.Wait()
		st := a.Stats()
		if st.Live != 0 || st.Allocs != st.Frees || st.Idle > 8 || st.Reuses == 0 {
			t.Fatalf("stats %+v", st)
		}
	})
}

func TestUnfreedMemoryIsCollected(t *testing.T) {
	t.Parallel()
	a := New(Config{})
	defer a.Close()
	func() {
		m := a.Allocate(wasmPage, 2*wasmPage)
		fill(m.Reallocate(wasmPage), 9)
	}()
	for i := 0; i < 200 && a.Stats().Leaked == 0; i++ {
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
	}
	st := a.Stats()
	if st.Leaked != 1 || st.Idle != 1 || st.Live != 0 {
		t.Fatalf("stats %+v: want the unfreed memory recovered", st)
	}
	m := a.Allocate(wasmPage, 2*wasmPage)
	requireZero(t, m.Reallocate(2*wasmPage))
	m.Free()
}

func TestWithWazero(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]wazero.RuntimeConfig{
		"interpreter": wazero.NewRuntimeConfigInterpreter(),
		"compiler":    wazero.NewRuntimeConfigCompiler(),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			a := New(Config{})
			defer a.Close()
			r := wazero.NewRuntimeWithConfig(ctx, cfg)
			defer r.Close(ctx)
			bin, err := os.ReadFile("testdata/grow.wasm")
			if err != nil {
				t.Fatal(err)
			}
			cm, err := r.CompileModule(ctx, bin)
			if err != nil {
				t.Fatal(err)
			}
			actx := experimental.WithMemoryAllocator(ctx, a)
			for i := 0; i < 5; i++ {
				mod, err := r.InstantiateModule(actx, cm, wazero.NewModuleConfig().WithName(""))
				if err != nil {
					t.Fatal(err)
				}
				mem := mod.Memory()
				b, _ := mem.Read(0, mem.Size())
				requireZero(t, b)
				res, err := mod.ExportedFunction("grow_fill").Call(ctx, uint64(3+i), uint64(0x77))
				if err != nil {
					t.Fatal(err)
				}
				if res[0] != 1 || mem.Size() != uint32(4+i)*wasmPage {
					t.Fatalf("grow returned %d, size %d", res[0], mem.Size())
				}
				b, _ = mem.Read(0, mem.Size())
				if b[0] != 0x77 || b[len(b)-4096] != 0x77 {
					t.Fatal("guest writes not visible")
				}
				// Growing past the module's maximum (64 pages) fails in the guest.
				if res, err := mod.ExportedFunction("grow_fill").Call(ctx, 100, 1); err != nil || int32(res[0]) != -1 {
					t.Fatalf("grow past max: %v, %v", res, err)
				}
				mod.Close(ctx)
			}
			if st := a.Stats(); st.Allocs != 5 || st.Reuses != 4 || st.Live != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestWazeroFailedInstantiationIsCollected(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := New(Config{})
	defer a.Close()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer r.Close(ctx)
	bin, err := os.ReadFile("testdata/trapstart.wasm")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Instantiate(experimental.WithMemoryAllocator(ctx, a), bin); err == nil {
		t.Fatal("start function should trap")
	}
	if st := a.Stats(); st.Allocs != 1 || st.Frees != 0 {
		t.Fatalf("stats %+v: expected wazero to leave the memory unfreed", st)
	}
	for i := 0; i < 200 && a.Stats().Leaked == 0; i++ {
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
	}
	if st := a.Stats(); st.Leaked != 1 || st.Live != 0 || st.Idle != 1 {
		t.Fatalf("stats %+v: want the memory recovered by the cleanup", st)
	}
}

// BenchmarkAllocateFree is the allocator's share of a fresh instance: get a
// memory of the given size, touch it like a guest would, give it back.
//
//	go test ./internal/memalloc -run '^$' -bench . -benchmem
func BenchmarkAllocateFree(b *testing.B) {
	cases := []struct {
		name         string
		pages, touch uint64 // memory size in Wasm pages, bytes written
	}{
		{"tiny-1page", 1, 1024},
		{"go-38pages-1.3MB", 38, 1300 << 10},
	}
	for _, c := range cases {
		for _, v := range []struct {
			name string
			a    experimental.MemoryAllocator
		}{
			{"pooled", New(Config{})},
			{"pooled-heap", New(Config{NoMmap: true})},
			{"go-heap", experimental.MemoryAllocatorFunc(func(capacity, maxBytes uint64) experimental.LinearMemory {
				return &heapMemory{buf: make([]byte, 0, capacity)}
			})},
		} {
			b.Run(c.name+"/"+v.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					m := v.a.Allocate(c.pages*wasmPage, 1024*wasmPage)
					buf := m.Reallocate(c.pages * wasmPage)
					for i := uint64(0); i < c.touch; i += 4096 {
						buf[i] = 1
					}
					m.Free()
				}
			})
		}
	}
}

// heapMemory is what wazero does without an allocator: a Go slice.
type heapMemory struct{ buf []byte }

func (m *heapMemory) Reallocate(size uint64) []byte {
	if size > uint64(cap(m.buf)) {
		nb := make([]byte, size)
		copy(nb, m.buf)
		m.buf = nb
	}
	m.buf = m.buf[:size]
	return m.buf
}

func (m *heapMemory) Free() {}

func TestMaxIdleBytes(t *testing.T) {
	configs(t, func(t *testing.T, cfg Config) {
		cfg.MaxIdleBytes = 3 * wasmPage
		a := New(cfg)
		defer a.Close()
		m1 := a.Allocate(wasmPage, 4*wasmPage)
		m2 := a.Allocate(wasmPage, 8*wasmPage) // another class: the byte bound is global
		fill(m1.Reallocate(2*wasmPage), 1)
		fill(m2.Reallocate(2*wasmPage), 1)
		m1.Free()
		m2.Free()
		if st := a.Stats(); st.Idle != 1 || st.Released != 1 || st.IdleBytes != 2*wasmPage {
			t.Fatalf("stats %+v: want one memory of 128 KiB kept", st)
		}
		m3 := a.Allocate(wasmPage, 4*wasmPage)
		if st := a.Stats(); st.Reuses != 1 || st.IdleBytes != 0 {
			t.Fatalf("stats %+v", st)
		}
		m3.Free()
	})
}

// Memories idle for longer than the idle timeout go back to the system.
func TestIdleMemoriesExpire(t *testing.T) {
	configs(t, func(t *testing.T, cfg Config) {
		cfg.IdleTimeout = 50 * time.Millisecond
		a := New(cfg)
		defer a.Close()
		var ms []experimental.LinearMemory
		for i := 0; i < 3; i++ {
			m := a.Allocate(wasmPage, 16*wasmPage)
			m.Reallocate(2 * wasmPage)
			ms = append(ms, m)
		}
		for _, m := range ms {
			m.Free()
		}
		if st := a.Stats(); st.Idle != 3 {
			t.Fatalf("%d idle memories, want 3", st.Idle)
		}
		for deadline := time.Now().Add(10 * time.Second); a.Stats().Idle > 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("still %d idle memories 10 s later; the idle timeout is 50 ms", a.Stats().Idle)
			}
		}
		if st := a.Stats(); st.IdleBytes != 0 || st.Released != 3 {
			t.Fatalf("after expiry: %+v", st)
		}
	})
}
