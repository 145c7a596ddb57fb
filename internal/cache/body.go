package cache

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
)

// chunkSize is the unit a body is kept in: every chunk but the last holds
// exactly this many bytes, so an offset finds its chunk by division.
const chunkSize = 32 << 10

// ErrBodyGone is a reader's error when it attached to a body that had
// already dropped its beginning (it passes through uncached, and the other
// readers are ahead): the caller asks the origin again.
var ErrBodyGone = errors.New("cache: the response passed through and its beginning is gone")

// body is a response body shared by every client of one cached (or
// collapsed) response. One goroutine fills it from the origin while any
// number of readers read it, each at its own pace, starting before it is
// complete: the first client does not wait for the whole object, and the
// others do not ask the origin again.
//
// A body within the object limit is kept whole: it becomes the cached
// entry. Past the limit it passes through: chunks every reader has passed
// are freed, and the filler waits while the slowest reader is more than
// window bytes behind, so a 1 GB origin body costs about window bytes
// however many clients share it.
type body struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change
	chunks  [][]byte
	first   int64 // offset of chunks[0]; > 0 once passing through
	n       int64 // bytes received
	length  int64 // the declared length, -1 if unknown
	done    bool
	err     error // why the fill stopped early (nil at a clean end)
	pass    bool  // not kept: past the object limit
	limit   int64 // bytes kept before passing through
	window  int64
	readers []*bodyReader
	free    [][]byte // chunks dropped while passing through, for reuse
	// onEnd is called once, without b.mu, when it is known whether the body
	// is kept: at the end of a complete fill (true), or when it fails or
	// starts passing through (false).
	onEnd func(kept bool, size int64)
}

// newCompleteBody is a body already held in memory (loaded from disk).
func newCompleteBody(chunks [][]byte, n int64) *body {
	return &body{changed: make(chan struct{}), chunks: chunks, n: n, length: n, done: true}
}

// newBody is a body to be filled from an origin by start. length is the
// declared Content-Length (-1 unknown); past limit bytes (or at once when
// the declared length is larger) the body passes through.
func newBody(length, limit, window int64, onEnd func(kept bool, size int64)) *body {
	return &body{changed: make(chan struct{}), length: length, limit: limit, window: window, onEnd: onEnd, pass: length > limit}
}

// start fills the body from src in a goroutine; cancel is called when the
// fill ends, to release the origin's request.
func (b *body) start(src io.ReadCloser, cancel func()) { go b.fill(src, cancel) }

func (b *body) notifyLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// fill copies the origin into chunks until the end, an error, or (when
// passing through) the last reader leaving.
func (b *body) fill(src io.ReadCloser, cancel func()) {
	defer cancel()
	defer src.Close()
	for {
		b.mu.Lock()
		for b.pass && (len(b.readers) == 0 || b.n-b.minOffsetLocked() >= b.window) {
			if len(b.readers) == 0 {
				// Nobody will read it and it is not kept: stop fetching.
				b.finishLocked(errAbandoned)
				b.mu.Unlock()
				return
			}
			ch := b.changed
			b.mu.Unlock()
			<-ch
			b.mu.Lock()
		}
		buf := b.tailLocked()
		b.mu.Unlock()

		n, err := src.Read(buf[len(buf):cap(buf)])

		b.mu.Lock()
		if b.length >= 0 && b.n+int64(n) > b.length {
			b.finishLocked(errTooLong)
			b.mu.Unlock()
			return
		}
		if n > 0 {
			b.chunks[len(b.chunks)-1] = buf[:len(buf)+n]
			b.n += int64(n)
			b.notifyLocked()
			if !b.pass && b.n > b.limit {
				b.pass = true
				b.dropLocked()
				b.settleLocked(false) // no longer a candidate for the cache
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
				if b.length >= 0 && b.n != b.length {
					err = io.ErrUnexpectedEOF
				}
			}
			b.finishLocked(err)
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
	}
}

var (
	errAbandoned = errors.New("cache: every reader left a body that passes through")
	errTooLong   = errors.New("cache: the origin sent more than its Content-Length")
)

// finishLocked ends the fill, telling the cache first: when a reader sees
// the end, the entry is already accounted (or gone).
func (b *body) finishLocked(err error) {
	b.settleLocked(err == nil && !b.pass)
	b.done, b.err = true, err
	b.notifyLocked()
}

// settleLocked tells the cache, once and outside the lock, whether the body
// will be kept: as soon as it passes through, or at its end.
func (b *body) settleLocked(kept bool) {
	if b.onEnd == nil {
		return
	}
	onEnd, n := b.onEnd, b.n
	b.onEnd = nil
	b.mu.Unlock()
	onEnd(kept, n)
	b.mu.Lock()
}

// tailLocked is the chunk to read into: the last one if it has room, else
// a new one, sized for what remains when the length is known so that small
// objects cost their size. Every chunk but the last is chunkSize bytes, or
// short and followed only by an empty probe chunk (fill refuses bytes past
// the declared length), so an offset below n finds its chunk by division.
func (b *body) tailLocked() []byte {
	if k := len(b.chunks); k > 0 {
		if last := b.chunks[k-1]; len(last) < cap(last) {
			return last
		}
	}
	size := int64(chunkSize)
	if b.length >= 0 {
		// At least one byte, to see the end (or a body longer than declared).
		size = min(size, max(b.length-b.n, 1))
	}
	if k := len(b.free); k > 0 && size == chunkSize {
		c := b.free[k-1][:0]
		b.free = b.free[:k-1]
		b.chunks = append(b.chunks, c)
		return c
	}
	c := make([]byte, 0, size)
	b.chunks = append(b.chunks, c)
	return c
}

func (b *body) minOffsetLocked() int64 {
	m := b.n
	for _, r := range b.readers {
		m = min(m, r.off)
	}
	return m
}

// dropLocked frees the chunks every reader has passed (passing through).
func (b *body) dropLocked() {
	m := b.minOffsetLocked()
	k := 0
	for k < len(b.chunks)-1 && b.first+int64(k+1)*chunkSize <= m {
		if c := b.chunks[k]; cap(c) == chunkSize && len(b.free) < 4 {
			b.free = append(b.free, c) // reused by the filler: no garbage per chunk
		}
		b.chunks[k] = nil
		k++
	}
	if k > 0 {
		b.chunks = append(b.chunks[:0:0], b.chunks[k:]...)
		b.first += int64(k) * chunkSize
	}
}

// complete reports whether the body is whole and kept.
func (b *body) complete() (int64, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n, b.done && b.err == nil && !b.pass
}

// knownLength is the body's length if known now (complete, or declared).
func (b *body) knownLength() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done && b.err == nil && !b.pass {
		return b.n
	}
	return b.length
}

// reader attaches a reader at offset 0; ErrBodyGone if the beginning was
// already dropped.
func (b *body) reader(ctx context.Context) (*bodyReader, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.first > 0 {
		return nil, ErrBodyGone
	}
	r := &bodyReader{b: b, ctx: ctx}
	if b.done && b.err == nil && !b.pass {
		// A complete body: nobody needs to know where this reader is.
		return r, nil
	}
	r.registered = true
	b.readers = append(b.readers, r)
	return r, nil
}

// bodyReader is one client's position in a body; it is an io.ReadCloser.
type bodyReader struct {
	b          *body
	ctx        context.Context
	off        int64
	closed     atomic.Bool // Close may come from another goroutine than Read's
	registered bool        // in b.readers: the body was still filling
}

func (r *bodyReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	b := r.b
	b.mu.Lock()
	for {
		if r.closed.Load() {
			b.mu.Unlock()
			return 0, errors.New("cache: read from a closed body")
		}
		if r.off < b.n {
			rel := r.off - b.first
			c := b.chunks[rel/chunkSize]
			k := copy(p, c[rel%chunkSize:])
			r.off += int64(k)
			if b.pass {
				b.dropLocked()
				b.notifyLocked() // the filler may be waiting for us
			}
			b.mu.Unlock()
			return k, nil
		}
		if b.done {
			err := b.err
			b.mu.Unlock()
			if err == nil {
				return 0, io.EOF
			}
			return 0, err
		}
		ch := b.changed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		}
		b.mu.Lock()
	}
}

// WriteTo copies without an intermediate buffer: straight from the chunks.
func (r *bodyReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	b := r.b
	for {
		b.mu.Lock()
		if r.off < b.n {
			rel := r.off - b.first
			c := b.chunks[rel/chunkSize][rel%chunkSize:]
			b.mu.Unlock()
			// Bytes below b.n never change, so writing them unlocked is safe.
			k, err := w.Write(c)
			b.mu.Lock()
			r.off += int64(k)
			total += int64(k)
			if b.pass {
				b.dropLocked()
				b.notifyLocked()
			}
			b.mu.Unlock()
			if err != nil {
				return total, err
			}
			continue
		}
		if b.done {
			err := b.err
			b.mu.Unlock()
			return total, err
		}
		ch := b.changed
		b.mu.Unlock()
		if f, ok := w.(interface{ Flush() }); ok {
			f.Flush() // what has arrived reaches the client before we wait
		}
		select {
		case <-ch:
		case <-r.ctx.Done():
			return total, r.ctx.Err()
		}
	}
}

func (r *bodyReader) Close() error {
	if !r.registered {
		r.closed.Store(true)
		return nil
	}
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if r.closed.Swap(true) {
		return nil
	}
	for i, o := range b.readers {
		if o == r {
			b.readers = append(b.readers[:i], b.readers[i+1:]...)
			break
		}
	}
	if b.pass {
		b.dropLocked()
	}
	b.notifyLocked()
	return nil
}
