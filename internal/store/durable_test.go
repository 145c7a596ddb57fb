package store

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// gateFS stalls WAL syncs while armed, to observe what the store does
// between a batch reaching the WAL and the WAL reaching the disk.
type gateFS struct {
	vfs.FS
	mu      sync.Mutex
	armed   bool
	blocked chan struct{} // receives when a sync is being held
	release chan struct{} // closed to let held syncs through
}

func newGateFS() *gateFS {
	return &gateFS{FS: vfs.Default, blocked: make(chan struct{}, 16), release: make(chan struct{})}
}

func (fs *gateFS) arm() {
	fs.mu.Lock()
	fs.armed = true
	fs.mu.Unlock()
}

func (fs *gateFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return &gateFile{File: f, fs: fs}, nil
}

func (fs *gateFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	return fs.wrap(name, f, err)
}

func (fs *gateFS) ReuseForWrite(old, name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(old, name, c)
	return fs.wrap(name, f, err)
}

func (fs *gateFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, o ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, c, o...)
	return fs.wrap(name, f, err)
}

type gateFile struct {
	vfs.File
	fs *gateFS
}

func (f *gateFile) hold() {
	f.fs.mu.Lock()
	armed := f.fs.armed
	f.fs.mu.Unlock()
	if armed {
		f.fs.blocked <- struct{}{}
		<-f.fs.release
	}
}

func (f *gateFile) Sync() error                  { f.hold(); return f.File.Sync() }
func (f *gateFile) SyncData() error              { f.hold(); return f.File.SyncData() }
func (f *gateFile) SyncTo(n int64) (bool, error) { f.hold(); return f.File.SyncTo(n) }

// An Update is acknowledged only after its WAL sync, readers do not see it
// before, and a concurrent Update of the same document chains behind it.
func TestUpdateWaitsForSyncAndReadersSeeOnlyDurable(t *testing.T) {
	t.Parallel()
	fs := newGateFS()
	s := openTest(t, t.TempDir(), Options{fs: fs})
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(fs.release) }) }
	t.Cleanup(release) // runs before the store's Close, which would wait for the held sync
	ctx := context.Background()
	k := Key{"app", "c", "doc"}
	if _, err := s.Update(ctx, k, appendFn("a")); err != nil {
		t.Fatal(err)
	}
	fs.arm()
	first := make(chan error, 1)
	go func() { _, err := s.Update(ctx, k, appendFn("b")); first <- err }()
	select {
	case <-fs.blocked:
	case <-time.After(10 * time.Second):
		t.Fatal("the WAL was never synced")
	}
	// The batch is in the WAL and visible in Pebble, but not yet durable.
	select {
	case err := <-first:
		t.Fatalf("Update returned before its fsync completed (err %v)", err)
	case <-time.After(20 * time.Millisecond):
	}
	if got := mustGet(t, s, k); got != "a;" {
		t.Fatalf("Get during the fsync = %q, want only the durable %q", got, "a;")
	}
	if log, _ := s.LogSince("pop-a", 0, 0); len(log) != 1 {
		t.Fatalf("LogSince during the fsync shows %d entries, want 1", len(log))
	}
	if got := s.Seqs()["pop-a"]; got != 1 {
		t.Fatalf("Seqs during the fsync = %d, want the durable 1", got)
	}
	if docs, _, _ := s.List("app", "c", "", 10); len(docs) != 1 {
		t.Fatalf("List = %q", docs)
	}
	// A second writer sees the pending state and queues behind it.
	second := make(chan error, 1)
	go func() { _, err := s.Update(ctx, k, appendFn("c")); second <- err }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		queued := s.open.n
		s.mu.Unlock()
		if queued == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the second Update never queued")
		}
		time.Sleep(time.Millisecond)
	}
	release()
	for _, ch := range []chan error{first, second} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	if got := mustGet(t, s, k); got != "a;b;c;" {
		t.Fatalf("state after both = %q", got)
	}
}

// Writers that arrive while a group's fsync is in flight share the next
// fsync: one commit for all of them, not one each.
func TestConcurrentWritersShareOneFsync(t *testing.T) {
	t.Parallel()
	fs := newGateFS()
	s := openTest(t, t.TempDir(), Options{fs: fs})
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(fs.release) }) }
	t.Cleanup(release)
	ctx := context.Background()
	fs.arm()
	before := s.Stats()
	errs := make(chan error, 16)
	go func() { _, err := s.Update(ctx, Key{"app", "c", "first"}, appendFn("x")); errs <- err }()
	select {
	case <-fs.blocked:
	case <-time.After(10 * time.Second):
		t.Fatal("the WAL was never synced")
	}
	const others = 15
	for i := range others {
		go func() {
			_, err := s.Update(ctx, Key{"app", "c", string(rune('a' + i))}, appendFn("x"))
			errs <- err
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		queued := s.open.n
		s.mu.Unlock()
		if queued == others {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d writers queued", queued, others)
		}
		time.Sleep(time.Millisecond)
	}
	release()
	for range others + 1 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	st := s.Stats()
	if commits, writes := st.Commits-before.Commits, st.Writes-before.Writes; commits != 2 || writes != others+1 {
		t.Fatalf("%d writes took %d commits, want 2 (the held one, then all the others together)", writes, commits)
	}
}

// A long read (an open iterator on the durable view) neither stalls the
// committer nor sees later writes.
func TestLongReadDoesNotStallCommits(t *testing.T) {
	t.Parallel()
	s := openTest(t, t.TempDir(), Options{})
	ctx := context.Background()
	k := Key{"app", "c", "doc"}
	if _, err := s.Update(ctx, k, appendFn("a")); err != nil {
		t.Fatal(err)
	}
	s.life.RLock() // as Get, List and LogSince do for their whole read
	r, done := s.readView()
	finished := make(chan error, 1)
	go func() {
		for i := range 5 {
			if _, err := s.Update(ctx, k, appendFn(string(rune('b'+i)))); err != nil {
				finished <- err
				return
			}
		}
		finished <- nil
	}()
	select {
	case err := <-finished:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("commits stalled behind an open read")
	}
	v, closer, err := r.Get(docKey(k))
	if err != nil {
		t.Fatal(err)
	}
	p, err := unframe(docKey(k), v)
	if err != nil || string(p) != "a;" {
		t.Fatalf("the open read sees %q, %v; want its snapshot %q", p, err, "a;")
	}
	closer.Close()
	done()
	s.life.RUnlock()
	if got := mustGet(t, s, k); got != "a;b;c;d;e;f;" {
		t.Fatalf("a new read sees %q", got)
	}
}
