package store

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
		t.Logf("round %d: %d acknowledged writes (local and remote) survived; local log has %d entries", round, len(acks), s.Seqs()["pop-a"])
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

type ack struct {
	remote bool // an ApplyRemote of origin pop-b, in collection "r"
	batch  bool // an ApplyBatch of origin pop-c, in collection "bt"; seq is its watermark
	doc    string
	seq    uint64
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
		} else if n, _ := fmt.Sscanf(line, "rack %s %d %s", &a.doc, &a.seq, &a.tok); n == 3 {
			a.remote = true
			acks = append(acks, a)
		} else if n, _ := fmt.Sscanf(line, "back %s %d %s", &a.doc, &a.seq, &a.tok); n == 3 {
			a.batch = true
			acks = append(acks, a)
		}
	}
	// Kill at a random moment after the child has started writing.
	deadline := time.After(10 * time.Second)
	var timer <-chan time.Time
	for timer == nil {
		select {
		case line, ok := <-lines:
			if !ok {
				cmd.Wait()
				t.Fatalf("round %d: child exited before writing: %s", round, stderr.String())
			}
			if line == "ready" {
				timer = time.After(time.Duration(20+rand.IntN(300)) * time.Millisecond)
			}
		case <-deadline:
			t.Fatalf("round %d: child never became ready: %s", round, stderr.String())
		}
	}
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
		case <-timer:
			kill()
			timer = nil
		case <-deadline:
			t.Fatalf("round %d: child output never ended", round)
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
	checkRemoteCrashState(t, s, acks)
	checkBatchCrashState(t, s, acks)
	for _, a := range acks {
		if a.remote || a.batch {
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

// Remote deltas arrive out of order: every acknowledged one must be in the
// log, Seqs must be a gap-free durable prefix, and each document must equal
// the merge of its logged deltas.
func checkRemoteCrashState(t *testing.T, s *Store, acks []ack) {
	t.Helper()
	log, err := s.LogSince("pop-b", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	have := make(map[uint64]Entry, len(log))
	states := map[string][]byte{}
	for _, e := range log {
		have[e.Seq] = e
		if states[e.Key.Doc], err = setMerge(states[e.Key.Doc], e.Delta); err != nil {
			t.Fatal(err)
		}
	}
	contig := s.Seqs()["pop-b"]
	for seq := uint64(1); seq <= contig; seq++ {
		if _, ok := have[seq]; !ok {
			t.Fatalf("Seqs says pop-b is complete up to %d, but seq %d is missing", contig, seq)
		}
	}
	if _, ok := have[contig+1]; ok && len(log) > 0 {
		t.Fatalf("Seqs says pop-b is complete up to %d, but %d is there too", contig, contig+1)
	}
	for _, a := range acks {
		if !a.remote {
			continue
		}
		e, ok := have[a.seq]
		if !ok || e.Key.Doc != a.doc || string(e.Delta) != a.tok+";" {
			t.Fatalf("acknowledged remote delta (pop-b, %d) for %s: log has %+v, %v", a.seq, a.doc, e, ok)
		}
	}
	for doc, want := range states {
		if got := mustGet(t, s, Key{"app", "r", doc}); got != string(want) {
			t.Fatalf("remote document %s: state %q, merging its log gives %q", doc, got, want)
		}
	}
}

// Batches of origin pop-c: the watermark never falls below an acknowledged
// batch, and every acknowledged batch's item is merged into its document.
func checkBatchCrashState(t *testing.T, s *Store, acks []ack) {
	t.Helper()
	wm := s.Seqs()["pop-c"]
	for _, a := range acks {
		if !a.batch {
			continue
		}
		if a.seq > wm {
			t.Fatalf("batch up to pop-c %d was acknowledged, the watermark after the crash is %d", a.seq, wm)
		}
		state := mustGet(t, s, Key{"app", "bt", a.doc})
		if !slices.Contains(strings.Split(state, ";"), a.tok) {
			t.Fatalf("acknowledged batch item %s is missing from %s: %q", a.tok, a.doc, state)
		}
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
		kind := "ack"
		switch {
		case a.remote:
			kind = "rack"
		case a.batch:
			kind = "back"
		}
		line := fmt.Sprintf("%s %s %d %s\n", kind, a.doc, a.seq, a.tok)
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
// every write the store acknowledged: 16 writers update 40 local documents,
// 4 workers apply remote deltas of origin pop-b out of order (a shuffled
// block of 100,000 sequence numbers per round), and one applies
// replication batches of origin pop-c in order, as a peer's link does.
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
	base := round * 100_000
	perm := rand.Perm(100_000)
	var nextRemote atomic.Int64
	for range 4 {
		wg.Go(func() {
			for time.Now().Before(stop) {
				i := nextRemote.Add(1) - 1
				if i >= int64(len(perm)) {
					return
				}
				seq := base + uint64(perm[i]) + 1
				doc := fmt.Sprintf("doc%02d", seq%10)
				tok := fmt.Sprintf("b%d", seq)
				if _, err := s.ApplyRemote(ctx, Key{"app", "r", doc}, "pop-b", seq, []byte(tok+";"), setMerge); err != nil {
					errs <- err
					return
				}
				acked(ack{remote: true, doc: doc, seq: seq, tok: tok})
			}
		})
	}
	wg.Go(func() {
		merge := func(_ Key, state, delta []byte) ([]byte, error) { return setMerge(state, delta) }
		// Resume after the watermark, as a link does after a restart.
		for seq := s.Seqs()["pop-c"] + 1; time.Now().Before(stop); seq++ {
			doc := fmt.Sprintf("doc%02d", seq%10)
			tok := fmt.Sprintf("c%d", seq)
			items := []BatchItem{{Key: Key{"app", "bt", doc}, Delta: []byte(tok + ";")}}
			if _, err := s.ApplyBatch(ctx, "pop-c", seq, seq, items, merge); err != nil {
				errs <- err
				return
			}
			acked(ack{batch: true, doc: doc, seq: seq, tok: tok})
		}
	})
	wg.Wait()
	close(errs)
	return <-errs
}
