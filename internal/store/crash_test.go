package store

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The crash test runs writers in a child process (this test binary,
// re-executed), kills it with SIGKILL at a random moment, reopens the store
// and checks that every write the child saw acknowledged survived, and that
// the log is consistent: one contiguous sequence, and every document's state
// equal to replaying its log entries.

const crashChildEnv = "VERGE_STORE_CRASH_CHILD"

func TestCrashRecovery(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const rounds = 4
	for round := range rounds {
		acks := runCrashChild(t, dir, round)
		s, err := Open(dir, Options{Origin: "pop-a"})
		if err != nil {
			t.Fatalf("round %d: reopening after kill -9: %v", round, err)
		}
		checkCrashState(t, s, acks)
		seqs := s.Seqs()
		t.Logf("round %d: %d acknowledged writes (local and batch items) survived; watermarks: pop-a %d (local log), pop-b %d, pop-c %d",
			round, len(acks), seqs["pop-a"], seqs["pop-b"], seqs["pop-c"])
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

type ack struct {
	origin string // "" for a local Update, else the origin of an ApplyBatch item
	doc    string
	seq    uint64 // the Update's seq, or the item's seq in its origin's log
	tok    string
}

func runCrashChild(t *testing.T, dir string, round int) []ack {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir, fmt.Sprintf("VERGE_STORE_CRASH_ROUND=%d", round))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	var once sync.Once
	kill := func() { once.Do(func() { killed = cmd.Process.Kill() == nil }) }
	t.Cleanup(kill) // never leave the child behind, whatever fails below

	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var acks []ack
	read := func(line string) {
		var a ack
		if n, _ := fmt.Sscanf(line, "ack %s %d %s", &a.doc, &a.seq, &a.tok); n == 3 {
			acks = append(acks, a)
		} else if n, _ := fmt.Sscanf(line, "back %s %s %d %s", &a.origin, &a.doc, &a.seq, &a.tok); n == 4 {
			acks = append(acks, a)
		}
	}
	// Kill at a random moment after the child's first acknowledged write:
	// counted from "ready" instead, a loaded machine sometimes killed it
	// before it had acknowledged anything, and the round checked nothing.
	deadline := time.After(30 * time.Second)
	var timer <-chan time.Time
	armed := false
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				cmd.Wait()
				if !killed {
					t.Fatalf("round %d: child exited on its own: %s", round, stderr.String())
				}
				if len(acks) == 0 {
					t.Fatalf("round %d: no update was acknowledged before the kill", round)
				}
				return acks
			}
			read(line)
			if !armed && len(acks) > 0 {
				armed = true
				timer = time.After(time.Duration(rand.IntN(300)) * time.Millisecond)
			}
		case <-timer:
			kill()
			timer = nil
		case <-deadline:
			t.Fatalf("round %d: child output never ended (acknowledged: %d): %s", round, len(acks), stderr.String())
		}
	}
}

func checkCrashState(t *testing.T, s *Store, acks []ack) {
	t.Helper()
	last := s.Seqs()["pop-a"]
	log, err := s.LogSince("pop-a", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(log)) != last {
		t.Fatalf("log has %d entries, Seqs says %d", len(log), last)
	}
	bySeq := make(map[uint64]Entry, len(log))
	replay := map[string]string{}
	for i, e := range log {
		if e.Seq != uint64(i+1) {
			t.Fatalf("log not contiguous: entry %d has seq %d", i, e.Seq)
		}
		bySeq[e.Seq] = e
		replay[e.Key.Doc] += string(e.Delta)
	}
	checkBatchCrashState(t, s, acks, "pop-b", "r", "b")
	checkBatchCrashState(t, s, acks, "pop-c", "bt", "c")
	for _, a := range acks {
		if a.origin != "" {
			continue
		}
		e, ok := bySeq[a.seq]
		if !ok {
			t.Fatalf("acknowledged update (%s, seq %d) is missing from the log (last seq %d)", a.doc, a.seq, last)
		}
		if e.Key.Doc != a.doc || string(e.Delta) != a.tok+";" {
			t.Fatalf("seq %d: log has (%s, %q), the child acknowledged (%s, %q)", a.seq, e.Key.Doc, e.Delta, a.doc, a.tok)
		}
	}
	docs, _, err := s.List("app", "c", "", MaxListLimit)
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != len(replay) {
		t.Fatalf("%d documents, the log touches %d", len(docs), len(replay))
	}
	for doc, want := range replay {
		if got := mustGet(t, s, Key{"app", "c", doc}); got != want {
			t.Fatalf("document %s: state %q, replaying the log gives %q", doc, got, want)
		}
	}
}

// checkBatchCrashState checks what the batches of origin left (items in
// collection coll, the item of seq being token prefix+seq in document
// seq%10): the watermark is at or above every acknowledged item, which is
// merged into its document; the watermark is never durable before the items
// it covers (every seq up to it is there); the documents hold nothing no
// batch carried; and the receiver logged nothing under origin.
func checkBatchCrashState(t *testing.T, s *Store, acks []ack, origin, coll, prefix string) {
	t.Helper()
	wm := s.Seqs()[origin]
	has := map[string]map[string]bool{} // doc -> tokens
	for d := range 10 {
		doc := fmt.Sprintf("doc%02d", d)
		has[doc] = map[string]bool{}
		state := mustGet(t, s, Key{"app", coll, doc})
		if state == "<absent>" {
			continue
		}
		for _, tok := range strings.Split(strings.TrimSuffix(state, ";"), ";") {
			seq, err := strconv.ParseUint(strings.TrimPrefix(tok, prefix), 10, 64)
			if !strings.HasPrefix(tok, prefix) || err != nil || seq%10 != uint64(d) {
				t.Fatalf("document %s of origin %s holds %q, which no batch carried", doc, origin, tok)
			}
			has[doc][tok] = true
		}
	}
	for seq := uint64(1); seq <= wm; seq++ {
		if doc, tok := fmt.Sprintf("doc%02d", seq%10), fmt.Sprintf("%s%d", prefix, seq); !has[doc][tok] {
			t.Fatalf("the watermark of %s is %d, but the item of seq %d (%s in %s) is missing", origin, wm, seq, tok, doc)
		}
	}
	for _, a := range acks {
		if a.origin != origin {
			continue
		}
		if a.seq > wm {
			t.Fatalf("a batch holding %s %d was acknowledged, the watermark after the crash is %d", origin, a.seq, wm)
		}
		if !has[a.doc][a.tok] {
			t.Fatalf("acknowledged batch item %s is missing from %s", a.tok, a.doc)
		}
	}
	if log, err := s.LogSince(origin, 0, 1); err != nil || len(log) != 0 {
		t.Fatalf("LogSince(%s) = %+v, %v; a receiver logs nothing", origin, log, err)
	}
}

// TestCrashChild is the child half of TestCrashRecovery; it does nothing
// unless started by it.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildEnv)
	if dir == "" {
		t.Skip("child process of TestCrashRecovery")
	}
	s, err := Open(dir, Options{Origin: "pop-a"})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("ready")
	var mu sync.Mutex
	round, _ := strconv.ParseUint(os.Getenv("VERGE_STORE_CRASH_ROUND"), 10, 64)
	// The parent kills us long before the 8 s are up.
	err = crashWorkload(s, round, time.Now().Add(8*time.Second), func(a ack) {
		line := fmt.Sprintf("ack %s %d %s\n", a.doc, a.seq, a.tok)
		if a.origin != "" {
			line = fmt.Sprintf("back %s %s %d %s\n", a.origin, a.doc, a.seq, a.tok)
		}
		mu.Lock()
		os.Stdout.WriteString(line) // one write per line: a kill never splits it
		mu.Unlock()
	})
	if err != nil {
		t.Error(err)
	}
	s.Close()
}

// crashWorkload writes to s until stop, calling acked (concurrently) for
// every write the store acknowledged: 16 writers update 40 local documents;
// 4 workers apply replication batches of origin pop-b (1 to 4 sequence
// numbers each) as a link with several batches in flight delivers them: out
// of order, refused after a gap and retried, and now and then resent once
// applied; and one worker applies batches of origin pop-c in order, one
// sequence number each. Both origins resume after their watermark, as a
// link does after a restart.
func crashWorkload(s *Store, round uint64, stop time.Time, acked func(ack)) error {
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 21)
	for w := range 16 {
		wg.Go(func() {
			for i := 0; time.Now().Before(stop); i++ {
				doc := fmt.Sprintf("doc%02d", rand.IntN(40))
				tok := fmt.Sprintf("r%d-w%d-%d", round, w, i)
				e, err := s.Update(ctx, Key{"app", "c", doc}, appendFn(tok))
				if err != nil {
					errs <- err
					return
				}
				acked(ack{doc: doc, seq: e.Seq, tok: tok})
			}
		})
	}
	merge := func(_ Key, state, delta []byte) ([]byte, error) { return setMerge(state, delta) }
	item := func(origin, coll, prefix string, seq uint64) (BatchItem, ack) {
		doc := fmt.Sprintf("doc%02d", seq%10)
		tok := fmt.Sprintf("%s%d", prefix, seq)
		return BatchItem{Key: Key{"app", coll, doc}, Delta: []byte(tok + ";")}, ack{origin: origin, doc: doc, seq: seq, tok: tok}
	}
	var takeMu sync.Mutex
	next := s.Seqs()["pop-b"] + 1
	take := func() (from, to uint64) {
		takeMu.Lock()
		defer takeMu.Unlock()
		from, to = next, next+uint64(rand.IntN(4))
		next = to + 1
		return from, to
	}
	for range 4 {
		wg.Go(func() {
			for time.Now().Before(stop) {
				from, to := take()
				var items []BatchItem
				var acks []ack
				for seq := from; seq <= to; seq++ {
					it, a := item("pop-b", "r", "b", seq)
					items, acks = append(items, it), append(acks, a)
				}
				for sends := 0; ; {
					_, err := s.ApplyBatch(ctx, "pop-b", from, to, items, merge)
					if errors.Is(err, ErrGap) { // an earlier batch is still on its way
						if time.Now().After(stop) {
							return
						}
						time.Sleep(50 * time.Microsecond)
						continue
					}
					if err != nil {
						errs <- err
						return
					}
					if sends++; sends == 1 {
						for _, a := range acks {
							acked(a)
						}
					}
					if sends == 2 || rand.IntN(4) != 0 {
						break
					}
					// Resend it: a duplicate, as after a lost ack.
				}
			}
		})
	}
	wg.Go(func() {
		for seq := s.Seqs()["pop-c"] + 1; time.Now().Before(stop); seq++ {
			it, a := item("pop-c", "bt", "c", seq)
			if _, err := s.ApplyBatch(ctx, "pop-c", seq, seq, []BatchItem{it}, merge); err != nil {
				errs <- err
				return
			}
			acked(a)
		}
	})
	wg.Wait()
	close(errs)
	return <-errs
}
