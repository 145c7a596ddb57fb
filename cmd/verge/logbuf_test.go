package main

import (
	"strings"
	"sync"
	"testing"
	"time"
)

type lockedWrites struct {
	mu     sync.Mutex
	writes []string
}

func (w *lockedWrites) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes = append(w.writes, string(p))
	return len(p), nil
}

func (w *lockedWrites) get() (string, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.writes, ""), len(w.writes)
}

// The log's lines go out in batches, in order: info lines shortly, a
// warning at once with the lines before it, everything on flush.
func TestBatchedLog(t *testing.T) {
	t.Parallel()
	out := &lockedWrites{}
	b := &batchedLog{w: out, every: time.Hour} // only a warning or flush writes, until every changes
	log, err := batchedLogger(b, "info", "text")
	if err != nil {
		t.Fatal(err)
	}
	flush := b.flush
	for i := range 100 {
		log.Info("request", "n", i)
	}
	if _, n := out.get(); n != 0 {
		t.Fatalf("100 info lines went out in %d writes, want them kept", n)
	}
	log.Warn("trouble")
	s, n := out.get()
	if n != 1 || strings.Count(s, "\n") != 101 || !strings.Contains(s, "n=99") || !strings.HasSuffix(s, "msg=trouble\n") {
		t.Fatalf("a warning did not go out at once, in one write, after the lines before it (%d writes):\n%s", n, s)
	}
	b.mu.Lock()
	b.every = time.Millisecond
	b.mu.Unlock()
	log.Info("later")
	deadline := time.Now().Add(5 * time.Second)
	for s, _ = out.get(); !strings.Contains(s, "msg=later"); s, _ = out.get() {
		if time.Now().After(deadline) {
			t.Fatal("an info line never went out")
		}
		time.Sleep(time.Millisecond)
	}
	log.Debug("not at this level")
	log.Info("last")
	flush()
	if s, _ = out.get(); !strings.HasSuffix(s, "msg=last\n") || strings.Contains(s, "not at this level") {
		t.Fatalf("flush left a line behind:\n%s", s)
	}
}
