package main

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// The process's log is written in batches: a write to stderr is a system
// call (3–5 µs on this VM, more under load), and a WAGI program's stderr
// line, logged for every request, made that write cost as much as the
// program. Lines wait at most logFlushEvery; a line at warning level or
// above goes out at once with the lines before it, and so does everything
// when the command returns (flush).
const (
	logFlushEvery = 10 * time.Millisecond
	logBatchMax   = 64 << 10
)

// batchedLog is an io.Writer that keeps what it is given until it is
// flushed, at most logFlushEvery after the first write kept.
type batchedLog struct {
	w       io.Writer
	every   time.Duration // logFlushEvery; tests set others
	mu      sync.Mutex
	buf     []byte
	pending bool // a flush is scheduled
}

func (b *batchedLog) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) >= logBatchMax {
		return len(p), b.flushLocked()
	}
	if !b.pending {
		b.pending = true
		time.AfterFunc(b.every, b.flush)
	}
	return len(p), nil
}

func (b *batchedLog) flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pending = false
	b.flushLocked()
}

func (b *batchedLog) flushLocked() error {
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.w.Write(b.buf)
	b.buf = b.buf[:0]
	return err
}

// flushingHandler flushes the batch after every record at warning level or
// above: what goes wrong is not held back.
type flushingHandler struct {
	slog.Handler
	b *batchedLog
}

func (h flushingHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		h.b.flush()
	}
	return err
}

func (h flushingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return flushingHandler{h.Handler.WithAttrs(as), h.b}
}

func (h flushingHandler) WithGroup(name string) slog.Handler {
	return flushingHandler{h.Handler.WithGroup(name), h.b}
}
