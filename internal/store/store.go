// Package store is a PoP's durable replica: document states and the delta log
// that replication and repair read from, in one embedded Pebble LSM.
//
// The store does not interpret documents. A state and a delta are opaque
// bytes; the caller supplies the logic that produces them (Update's fn) and
// that folds a peer's delta or state into a state (the merge of ApplyBatch
// and Merge).
//
// # Durability
//
// A write (Update, ApplyBatch, Merge, TruncateLog) is durable when the call
// returns nil: what it wrote is in Pebble's WAL and the WAL was fsynced. An
// Update's document state, its delta-log entry and its sequence record are
// written in one atomic batch. A crash (kill -9, power loss on a disk that
// honours fsync) after that point cannot lose the write, and no crash at any
// point can leave a state without its log entry or the reverse, or a batch's
// watermark without its items. Writers that arrive while a
// batch is being synced are gathered into the next batch, which one committer
// goroutine writes with a single fsync (group commit), so concurrent writers
// share fsyncs instead of queueing behind each other's.
//
// A write that returns an error was not acknowledged. If the WAL write or
// fsync itself fails, Pebble terminates the process (log.Fatalf): after a
// failed fsync the page cache can no longer be trusted to reflect the disk,
// so the only safe continuation is a restart whose recovery decides what
// survived. Should a commit fail any other way, the store refuses every later
// write with that error. Options.NoSync (tests and benchmarks only)
// acknowledges writes before fsync; a crash may then lose acknowledged
// writes, though never atomicity.
//
// # Visibility
//
// Get, List, LogSince and Seqs see only durable writes, so a reader never
// observes a value that a crash could take back, and a peer is never told a
// delta is here before it is durable. A write is visible to them when its
// writer is acknowledged (read-your-writes). Update's fn sees the latest
// state, including writes still waiting for their fsync: a write to a busy
// document chains behind the pending one it read instead of waiting for its
// fsync, goes into the same or the next group, and is acknowledged after it.
//
// # Delta log
//
// Every local write (Update) appends one entry (origin, seq, key, delta)
// under Options.Origin and the next sequence number of that origin, with no
// gaps. Entries stay until the caller truncates them with TruncateLog, which
// replication calls once every peer has acknowledged them. What arrives from
// other origins (ApplyBatch, Merge) is not logged: each PoP ships only its
// own log, so receivers never relay; for an origin's batches the store keeps
// only a watermark.
//
// # Corruption
//
// Every value is framed with a version byte and a CRC-32C that covers the key
// (see frame.go). Open refuses to start on a damaged store (Pebble's own
// checksums on the WAL, MANIFEST and sstables, plus a scan of every frame
// unless Options.SkipVerify), and reads report damage with the key concerned;
// errors for damaged data wrap ErrCorrupt.
package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// formatVersion is the layout of keys and values described in keys.go and
// frame.go. Open refuses stores written with another version.
const formatVersion = 1

// Defaults for Options.
const (
	DefaultMaxValueBytes = 4 << 20
	DefaultCacheBytes    = 64 << 20
	DefaultListLimit     = 100
	MaxListLimit         = 10_000
	MaxLogLimit          = 10_000
	// MaxLogBytes bounds the deltas one LogSince call returns (it always
	// returns at least one entry if there is one).
	MaxLogBytes = 16 << 20
)

var (
	// ErrClosed is returned by calls on a closed store.
	ErrClosed = errors.New("store: closed")
	// ErrTooLarge is returned (wrapped) when a state or delta exceeds Options.MaxValueBytes.
	ErrTooLarge = errors.New("store: value too large")
	// ErrTruncated is returned (wrapped) by LogSince when entries the caller
	// asked for were already removed by TruncateLog; the caller must repair
	// from document states instead.
	ErrTruncated = errors.New("store: log truncated")
)

// Options configures a Store.
type Options struct {
	// Origin names this PoP in the delta log (1..MaxNameLen bytes). Local
	// writes are logged under it. A PoP that lost its data directory must
	// come back with a new Origin (e.g. its id plus an incarnation number):
	// reusing the old one would reissue sequence numbers its peers already
	// hold for other deltas.
	Origin string
	// NoSync acknowledges writes without waiting for fsync. For tests and
	// benchmarks only: a crash may lose acknowledged writes.
	NoSync bool
	// SkipVerify skips Open's scan of every value's checksum. Damage is then
	// still reported when the damaged value is read.
	SkipVerify bool
	// MaxValueBytes bounds each state and delta (default DefaultMaxValueBytes).
	MaxValueBytes int
	// CacheBytes is the size of Pebble's block cache (default DefaultCacheBytes).
	CacheBytes int64

	fs vfs.FS // tests: wraps the OS filesystem to observe or stall syncs
}

// Entry is one delta-log entry.
type Entry struct {
	Origin string
	Seq    uint64
	Key    Key
	Delta  []byte
}

// Store is a PoP's durable document store. Its methods are safe for
// concurrent use.
type Store struct {
	dir    string
	origin string
	opts   Options
	wo     *pebble.WriteOptions

	db *pebble.DB
	// life guards db against use after Close: readers hold it shared.
	life     sync.RWMutex
	dbClosed bool
	// view is what Get, List and LogSince read: a snapshot taken right
	// after the latest group's fsync, when it held exactly the durable
	// writes (Pebble makes a batch visible before its WAL sync completes).
	// nil with NoSync, where readers read the latest state. It is
	// reference-counted so that the committer never waits for a long read.
	view atomic.Pointer[view]

	lockMu sync.Mutex
	locks  map[string]*docLock

	mu   sync.Mutex
	kick chan struct{} // capacity 1: there is work for the committer
	open *group        // the group accepting writes
	last *group        // the latest group holding writes, until it is committed
	// overlay holds states written by groups not yet committed, so that an
	// Update can chain behind a pending one instead of waiting for its fsync.
	overlay map[string]pendingState
	contig  map[string]uint64 // per origin: every seq ≤ contig is applied (maybe not yet durable)
	durable map[string]uint64 // per origin: every seq ≤ durable is applied and durable
	trunc   map[string]uint64 // per origin: log entries ≤ trunc were removed
	failed  error             // sticky: set when a commit fails
	closed  bool

	committerDone chan struct{}

	commits, writes, commitNanos atomic.Uint64
}

// Stats are cumulative counters since Open, for metrics.
type Stats struct {
	Commits    uint64        // groups committed (one fsync each unless NoSync)
	Writes     uint64        // writes in those groups
	CommitTime time.Duration // total time spent writing and syncing groups
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	return Stats{Commits: s.commits.Load(), Writes: s.writes.Load(), CommitTime: time.Duration(s.commitNanos.Load())}
}

type pendingState struct {
	state []byte // nil: the document was deleted
	g     *group
}

// group is one batch of writes committed with a single fsync.
type group struct {
	b       *pebble.Batch
	n       int
	docs    []string          // overlay keys this group set
	origins map[string]uint64 // origins written; at commit, their contiguous seq
	done    chan struct{}
	err     error
}

type docLock struct {
	ch   chan struct{}
	refs int
}

// Open opens the store in dir, creating it if dir is missing or empty. It
// refuses a damaged store with an error wrapping ErrCorrupt that says so.
func Open(dir string, opts Options) (*Store, error) {
	if err := validOrigin(opts.Origin); err != nil {
		return nil, fmt.Errorf("store: Options.Origin: %w", err)
	}
	if opts.MaxValueBytes <= 0 {
		opts.MaxValueBytes = DefaultMaxValueBytes
	}
	if opts.CacheBytes <= 0 {
		opts.CacheBytes = DefaultCacheBytes
	}
	fresh, err := isEmptyDir(dir)
	if err != nil {
		return nil, fmt.Errorf("store at %s: %w", dir, err)
	}
	cache := pebble.NewCache(opts.CacheBytes)
	defer cache.Unref()
	popts := &pebble.Options{
		Cache:              cache,
		FormatMajorVersion: pebble.FormatNewest,
		MemTableSize:       64 << 20,
		Logger:             quietLogger{},
		// Pebble's default reaction to a damaged block is log.Fatalf; we want
		// the error returned, so that Open and reads can name what is damaged.
		EventListener: &pebble.EventListener{DataCorruption: func(pebble.DataCorruptionInfo) {}},
		// A directory with files but no database is not a new store: Pebble
		// would otherwise create an empty database next to the remains of
		// the old one.
		ErrorIfNotExists: !fresh,
	}
	if opts.fs != nil {
		popts.FS = opts.fs
	}
	db, err := pebble.Open(dir, popts)
	if err != nil {
		if errors.Is(err, pebble.ErrDBDoesNotExist) {
			return nil, corruptStore(dir, fmt.Errorf("the directory is not empty but holds no database (its MANIFEST is gone): %w", err))
		}
		if pebble.IsCorruptionError(err) {
			return nil, corruptStore(dir, err)
		}
		return nil, fmt.Errorf("store at %s: cannot open (is another process using it?): %w", dir, err)
	}
	s := &Store{
		dir:           dir,
		origin:        opts.Origin,
		opts:          opts,
		wo:            pebble.Sync,
		db:            db,
		locks:         make(map[string]*docLock),
		overlay:       make(map[string]pendingState),
		contig:        make(map[string]uint64),
		durable:       make(map[string]uint64),
		trunc:         make(map[string]uint64),
		committerDone: make(chan struct{}),
	}
	if opts.NoSync {
		s.wo = pebble.NoSync
	}
	if err := s.load(fresh); err != nil {
		db.Close()
		if errors.Is(err, ErrCorrupt) || pebble.IsCorruptionError(err) {
			return nil, corruptStore(dir, err)
		}
		return nil, fmt.Errorf("store at %s: %w", dir, err)
	}
	if !opts.NoSync {
		s.view.Store(newView(db.NewSnapshot()))
	}
	s.kick = make(chan struct{}, 1)
	s.open = s.newGroup()
	go s.commitLoop()
	return s, nil
}

func corruptStore(dir string, err error) error {
	return fmt.Errorf("store at %s is corrupt: %w; refusing to start (restore the directory from a backup, or move it aside and let the PoP rebuild from its peers)",
		dir, &corruptionError{err})
}

// isEmptyDir reports whether dir is missing, empty, or holds only what a
// crash during the very first Open can leave behind before Pebble wrote its
// MANIFEST (no data can have been acknowledged then).
func isEmptyDir(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		n := e.Name()
		if n != "LOCK" && !strings.HasPrefix(n, "OPTIONS-") && !strings.HasSuffix(n, ".dbtmp") &&
			!strings.HasPrefix(n, "marker.format-version.") {
			return false, nil
		}
	}
	return true, nil
}

// load checks the format version, loads the per-origin sequence state and,
// unless SkipVerify, verifies every value in the store.
func (s *Store) load(fresh bool) error {
	v, closer, err := s.db.Get(versionKey)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		if !fresh {
			// A crash during the first Open can leave a database without
			// the record; it is corrupt only if it holds anything else.
			empty := true
			if err := s.scanRaw(nil, nil, func([]byte) bool { empty = false; return false }); err != nil {
				return err
			}
			if !empty {
				return corruptf(versionKey, "the store's format record is missing")
			}
		}
		if err := s.db.Set(versionKey, appendFrame(nil, versionKey, []byte{formatVersion}), pebble.Sync); err != nil {
			return fmt.Errorf("writing the format record: %w", err)
		}
	case err != nil:
		return err
	default:
		p, err := unframe(versionKey, v)
		if err == nil && (len(p) != 1 || p[0] != formatVersion) {
			err = fmt.Errorf("store format %v is not the one this build reads (%d); use a matching build", p, formatVersion)
		}
		closer.Close()
		if err != nil {
			return err
		}
	}

	if err := s.scan([]byte{tagSeq}, []byte{tagSeq + 1}, func(k, p []byte) error {
		origin, rest, ok := parseOriginKey(k, tagSeq)
		if !ok || len(rest) != 0 || len(p) != 16 {
			return corruptf(k, "malformed sequence record")
		}
		s.contig[origin] = getUint64(p)
		s.durable[origin] = s.contig[origin]
		s.trunc[origin] = getUint64(p[8:])
		return nil
	}); err != nil {
		return err
	}
	if s.opts.SkipVerify {
		return nil
	}
	return s.scan(nil, nil, func(k, p []byte) error {
		if len(k) == 0 {
			return corruptf(k, "empty key")
		}
		switch k[0] {
		case tagDoc:
			if _, ok := parseDocKey(k); !ok {
				return corruptf(k, "malformed document key")
			}
		case tagLog:
			origin, seq, ok := parseLogKey(k)
			if !ok {
				return corruptf(k, "malformed log key")
			}
			if _, ok := s.contig[origin]; !ok {
				return corruptf(k, "log entry of an origin with no sequence record")
			}
			if seq <= s.trunc[origin] {
				return corruptf(k, "log entry survived truncation up to %d", s.trunc[origin])
			}
			if _, _, err := parseEntryPayload(k, p); err != nil {
				return err
			}
		case tagSeq, tagVersion:
		default:
			return corruptf(k, "key outside the store's keyspaces")
		}
		return nil
	})
}

// scanRaw calls fn with each key in [lo, hi) until fn returns false.
func (s *Store) scanRaw(lo, hi []byte, fn func(k []byte) bool) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	for ok := it.First(); ok && fn(it.Key()); ok = it.Next() {
	}
	return it.Close()
}

// scan calls fn with each key in [lo, hi) and its verified payload. Both
// alias Pebble's buffers and are valid only during the call.
func (s *Store) scan(lo, hi []byte, fn func(k, payload []byte) error) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return err
		}
		p, err := unframe(it.Key(), v)
		if err == nil {
			err = fn(it.Key(), p)
		}
		if err != nil {
			it.Close()
			return err
		}
	}
	return it.Close()
}

func getUint64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
		uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
}

func appendUint64(b []byte, v uint64) []byte {
	return append(b, byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32),
		byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// Close waits for pending writes to commit and closes the store.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.kickCommitter()
	<-s.committerDone
	s.life.Lock()
	defer s.life.Unlock()
	s.dbClosed = true
	if v := s.view.Swap(nil); v != nil {
		v.release() // readers are gone: they hold s.life
	}
	return s.db.Close()
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// Origin returns the origin local writes are logged under.
func (s *Store) Origin() string { return s.origin }

// Update reads the document's latest state (nil if absent), calls fn with it
// under the document's lock, and durably writes what fn returns: newState
// becomes the document's state (nil deletes the document) and delta is
// appended to the log under this store's origin and its next sequence
// number. It returns once the write is durable (see the package comment).
//
// fn runs with the document locked: it must not call the store for the same
// document. It must not modify or retain state (appending to it is fine), and
// must not modify newState or delta after returning them. If fn returns a nil delta, nothing is written and
// Update returns a zero Entry. If fn returns an error, nothing is written and
// Update returns that error. ctx bounds the wait for the document's lock;
// once the write is queued, Update waits for its commit (one fsync).
func (s *Store) Update(ctx context.Context, k Key, fn func(state []byte) (newState, delta []byte, err error)) (Entry, error) {
	if err := k.validate(); err != nil {
		return Entry{}, err
	}
	if err := ctx.Err(); err != nil {
		return Entry{}, err
	}
	dk := string(docKey(k))
	l, err := s.lockDoc(ctx, dk)
	if err != nil {
		return Entry{}, err
	}
	locked := true
	defer func() {
		if locked { // fn panicked or we returned early
			s.unlockDoc(dk, l)
		}
	}()
	cur, err := s.current(dk)
	if err != nil {
		return Entry{}, err
	}
	newState, delta, err := fn(cur)
	if err != nil || delta == nil {
		return Entry{}, err
	}
	if err := s.checkSize(newState, delta); err != nil {
		return Entry{}, err
	}
	s.mu.Lock()
	if err := s.writable(); err != nil {
		s.mu.Unlock()
		return Entry{}, err
	}
	seq := s.contig[s.origin] + 1
	s.contig[s.origin] = seq
	g := s.stage(dk, k, newState, s.origin, seq, delta)
	s.mu.Unlock()
	s.unlockDoc(dk, l)
	locked = false
	<-g.done
	if g.err != nil {
		return Entry{}, g.err
	}
	return Entry{Origin: s.origin, Seq: seq, Key: k, Delta: delta}, nil
}

// ErrGap is returned by ApplyBatch for a batch that starts beyond the
// origin's contiguous watermark: an earlier batch is missing. The caller asks
// the origin to resend from Seqs()[origin]+1.
var ErrGap = errors.New("store: batch starts after a gap")

// BatchItem is one document's delta (or whole state) in a replication batch.
type BatchItem struct {
	Key   Key
	Delta []byte
}

// ApplyBatch applies a batch that covers origin's log entries from..to
// (inclusive) and advances origin's watermark to to. The batch holds only
// the items this PoP is meant to receive (possibly none, possibly coalesced
// per document), so the watermark means "everything of origin up to `to`
// that concerns this PoP", not that every seq was seen. Items are merged
// one by one and are not logged: the origin ships its own log to every PoP,
// so receivers never relay. merge folds an item's delta into the document's
// latest state (nil if absent; a nil result deletes the document); it must
// not modify or retain state.
//
// A batch with from > Seqs()[origin]+1 is refused with ErrGap and nothing is
// applied. A batch wholly at or below the watermark is a duplicate and is
// not merged again. Otherwise every item is merged (merges are idempotent,
// so overlap with earlier batches is harmless) and ApplyBatch returns once
// the items and the new watermark are durable. A crash part-way leaves the
// watermark where it was: the origin resends and the merges repeat.
func (s *Store) ApplyBatch(ctx context.Context, origin string, from, to uint64, items []BatchItem,
	merge func(k Key, state, delta []byte) ([]byte, error)) (watermark uint64, err error) {
	if err := validOrigin(origin); err != nil {
		return 0, err
	}
	if origin == s.origin {
		return 0, fmt.Errorf("store: ApplyBatch: origin %q is this store's own origin; a PoP rebuilding its data must use a new origin", origin)
	}
	if from == 0 || to < from {
		return 0, fmt.Errorf("store: ApplyBatch: invalid range %d..%d (sequence numbers start at 1)", from, to)
	}
	for _, it := range items {
		if err := it.Key.validate(); err != nil {
			return 0, err
		}
		if err := s.checkSize(nil, it.Delta); err != nil {
			return 0, err
		}
	}
	s.mu.Lock()
	c := s.contig[origin]
	s.mu.Unlock()
	if from > c+1 {
		return s.durableSeq(origin), fmt.Errorf("%w: origin %q batch %d..%d, have up to %d", ErrGap, origin, from, to, c)
	}
	if to <= c {
		// A duplicate: wait until the earlier application is durable.
		if _, err := s.duplicate(origin, to); err != nil {
			return 0, err
		}
		return s.durableSeq(origin), nil
	}
	// Items go into the open group or earlier ones; the watermark below goes
	// into the open group at that time, and groups commit in order, so the
	// watermark is never durable before the items.
	if err := s.mergeItems(ctx, items, merge); err != nil {
		return 0, err
	}
	s.mu.Lock()
	if err := s.writable(); err != nil {
		s.mu.Unlock()
		return 0, err
	}
	if to > s.contig[origin] {
		s.contig[origin] = to
	}
	g := s.open
	g.n++
	g.origins[origin] = 0
	s.last = g
	s.kickCommitter()
	s.mu.Unlock()
	<-g.done
	if g.err != nil {
		return 0, g.err
	}
	return s.durableSeq(origin), nil
}

// Merge merges items into their documents, durably, without logging them
// and without any watermark: anti-entropy repair and documents that follow
// their user, whose bytes come from a peer's state rather than its log.
func (s *Store) Merge(ctx context.Context, items []BatchItem, merge func(k Key, state, delta []byte) ([]byte, error)) error {
	for _, it := range items {
		if err := it.Key.validate(); err != nil {
			return err
		}
		if err := s.checkSize(nil, it.Delta); err != nil {
			return err
		}
	}
	if err := s.mergeItems(ctx, items, merge); err != nil {
		return err
	}
	s.mu.Lock()
	g := s.last
	s.mu.Unlock()
	if g != nil {
		<-g.done
		return g.err
	}
	return nil
}

func (s *Store) mergeItems(ctx context.Context, items []BatchItem, merge func(k Key, state, delta []byte) ([]byte, error)) error {
	for _, it := range items {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.mergeItem(ctx, it, merge); err != nil {
			return err
		}
	}
	return nil
}

// mergeItem merges one batch item into its document and stages the new
// state without a log entry.
func (s *Store) mergeItem(ctx context.Context, it BatchItem, merge func(k Key, state, delta []byte) ([]byte, error)) error {
	dk := string(docKey(it.Key))
	l, err := s.lockDoc(ctx, dk)
	if err != nil {
		return err
	}
	defer s.unlockDoc(dk, l)
	cur, err := s.current(dk)
	if err != nil {
		return err
	}
	newState, err := merge(it.Key, cur, it.Delta)
	if err != nil {
		return fmt.Errorf("document %s: %w", it.Key, err)
	}
	if err := s.checkSize(newState, nil); err != nil {
		return err
	}
	if newState != nil && cur != nil && bytes.Equal(newState, cur) {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	g := s.open
	if newState == nil {
		g.b.Delete([]byte(dk), nil)
	} else {
		s.setFramed(g.b, []byte(dk), newState)
	}
	g.n++
	g.docs = append(g.docs, dk)
	s.overlay[dk] = pendingState{state: newState, g: g}
	s.last = g
	s.kickCommitter()
	return nil
}

// Truncated returns how far origin's log entries were removed by TruncateLog.
func (s *Store) Truncated(origin string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.trunc[origin]
}

func (s *Store) durableSeq(origin string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.durable[origin]
}

// duplicate reports whether (origin, seq) was already applied and, if so,
// waits until that application is durable.
func (s *Store) duplicate(origin string, seq uint64) (bool, error) {
	s.mu.Lock()
	if seq > s.contig[origin] {
		s.mu.Unlock()
		return false, nil
	}
	g, failed := s.last, s.failed
	s.mu.Unlock()
	if g != nil {
		<-g.done
		return true, g.err
	}
	return true, failed
}

func (s *Store) checkSize(state, delta []byte) error {
	if len(state) > s.opts.MaxValueBytes || len(delta) > s.opts.MaxValueBytes {
		return fmt.Errorf("%w: state %d bytes, delta %d bytes, the limit is %d", ErrTooLarge, len(state), len(delta), s.opts.MaxValueBytes)
	}
	return nil
}

// writable reports why writes are refused, if they are. s.mu is held.
func (s *Store) writable() error {
	if s.failed != nil {
		return s.failed
	}
	if s.closed {
		return ErrClosed
	}
	return nil
}

// stage adds one write to the open group and returns the group. s.mu is held.
func (s *Store) stage(dk string, k Key, state []byte, origin string, seq uint64, delta []byte) *group {
	g := s.open
	lk := logKey(origin, seq)
	if state == nil {
		g.b.Delete([]byte(dk), nil)
	} else {
		s.setFramed(g.b, []byte(dk), state)
	}
	s.setFramed(g.b, lk, appendEntryPayload(make([]byte, 0, 8+len(k.App)+len(k.Collection)+len(k.Doc)+len(delta)), k, delta))
	g.n++
	g.docs = append(g.docs, dk)
	g.origins[origin] = 0
	s.overlay[dk] = pendingState{state: state, g: g}
	s.last = g
	s.kickCommitter()
	return g
}

func (s *Store) kickCommitter() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// setFramed writes key → frame(payload) into b without an intermediate copy.
func (s *Store) setFramed(b *pebble.Batch, key, payload []byte) {
	op := b.SetDeferred(len(key), frameHeader+len(payload))
	copy(op.Key, key)
	putFrame(op.Value, key, payload)
	op.Finish()
}

func (s *Store) newGroup() *group {
	return &group{b: s.db.NewBatch(), origins: make(map[string]uint64, 1), done: make(chan struct{})}
}

// commitLoop is the single committer: it takes whatever writes are pending,
// commits them as one batch with one fsync, and wakes their writers. Writes
// that arrive meanwhile gather in the next group.
//
// Writers just acknowledged usually write again at once (a client loop, the
// next request on a connection). Committing the next group the instant the
// previous one is durable would leave them for the group after, so groups
// would alternate between large and small. The committer therefore holds a
// group briefly for them: until they are back, or a quarter of the last
// commit's duration has passed, whichever comes first. A lone writer never
// waits (its group is complete once it is back), and with NoSync the window
// is a few microseconds.
func (s *Store) commitLoop() {
	defer close(s.committerDone)
	var returning int        // writes in the last group
	var window time.Duration // how long to wait for their writers
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		s.mu.Lock()
		want := s.open.n + returning
		for s.open.n == 0 && !s.closed {
			s.mu.Unlock()
			<-s.kick
			s.mu.Lock()
		}
		if s.open.n < want && window > 0 && !s.closed {
			deadline := time.Now().Add(window)
			timer.Reset(window)
			for s.open.n < want && !s.closed && time.Now().Before(deadline) {
				s.mu.Unlock()
				select {
				case <-s.kick:
				case <-timer.C:
				}
				s.mu.Lock()
			}
			timer.Stop()
		}
		g := s.open
		if g.n == 0 { // closed and drained
			g.b.Close()
			s.mu.Unlock()
			return
		}
		for origin := range g.origins {
			c := s.contig[origin]
			g.origins[origin] = c
			s.setFramed(g.b, seqKey(origin), appendUint64(appendUint64(make([]byte, 0, 16), c), s.trunc[origin]))
		}
		s.open = s.newGroup()
		failed := s.failed
		s.mu.Unlock()

		start := time.Now()
		err := failed
		if err == nil {
			if err = s.db.Apply(g.b, s.wo); err != nil {
				err = fmt.Errorf("store at %s: commit failed, the outcome of pending writes is unknown and the store refuses further writes; restart the PoP: %w", s.dir, err)
			}
		}
		g.b.Close()
		took := time.Since(start)
		s.commits.Add(1)
		s.writes.Add(uint64(g.n))
		s.commitNanos.Add(uint64(took))
		returning = g.n
		window = min(took/4, maxGatherWindow)
		if window < minGatherWindow {
			window = 0
		}
		if err == nil && !s.opts.NoSync {
			// Only this goroutine writes, so the batch just synced is
			// exactly what became visible since the last snapshot.
			s.view.Swap(newView(s.db.NewSnapshot())).release()
		}

		s.mu.Lock()
		if err != nil && s.failed == nil {
			s.failed = err
		}
		if err == nil {
			for origin, c := range g.origins {
				s.durable[origin] = c
			}
		}
		g.err = err
		for _, dk := range g.docs {
			if p, ok := s.overlay[dk]; ok && p.g == g {
				delete(s.overlay, dk)
			}
		}
		if s.last == g {
			s.last = nil
		}
		s.mu.Unlock()
		close(g.done)
	}
}

// Bounds of the committer's gathering window (see commitLoop).
const (
	minGatherWindow = 10 * time.Microsecond
	maxGatherWindow = 500 * time.Microsecond
)

// reader is what both the latest state (*pebble.DB) and the durable view
// (*pebble.Snapshot) offer.
type reader interface {
	Get(key []byte) ([]byte, io.Closer, error)
	NewIter(o *pebble.IterOptions) (*pebble.Iterator, error)
}

type view struct {
	snap *pebble.Snapshot
	refs atomic.Int32 // 1 while current, plus one per reader
}

func newView(snap *pebble.Snapshot) *view {
	v := &view{snap: snap}
	v.refs.Store(1)
	return v
}

func (v *view) release() {
	if v.refs.Add(-1) == 0 {
		v.snap.Close()
	}
}

// readView returns what readers should read and a function to call when
// done; s.life is held shared.
func (s *Store) readView() (reader, func()) {
	for {
		v := s.view.Load()
		if v == nil {
			return s.db, func() {}
		}
		// Take a reference unless the view was already released (refs
		// reached 0, never to rise again); then the committer has
		// installed a newer one.
		if r := v.refs.Load(); r > 0 && v.refs.CompareAndSwap(r, r+1) {
			return v.snap, v.release
		}
	}
}

// current returns the document's latest state: pending, else committed.
// The caller holds the document's lock.
func (s *Store) current(dk string) ([]byte, error) {
	s.mu.Lock()
	p, ok := s.overlay[dk]
	s.mu.Unlock()
	if ok {
		return p.state, nil
	}
	state, _, err := s.get([]byte(dk), true)
	return state, err
}

// Get returns a copy of the document's durable state.
func (s *Store) Get(k Key) (state []byte, ok bool, err error) {
	if err := k.validate(); err != nil {
		return nil, false, err
	}
	return s.get(docKey(k), false)
}

// get reads key from the durable view, or from the latest state (including
// writes whose fsync is in flight) if latest.
func (s *Store) get(key []byte, latest bool) ([]byte, bool, error) {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.dbClosed {
		return nil, false, ErrClosed
	}
	var r reader = s.db
	if !latest {
		var done func()
		r, done = s.readView()
		defer done()
	}
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, s.readErr(key, err)
	}
	defer closer.Close()
	p, err := unframe(key, v)
	if err != nil {
		return nil, false, s.readErr(key, err)
	}
	return append(make([]byte, 0, len(p)), p...), true, nil
}

func (s *Store) readErr(key []byte, err error) error {
	if errors.Is(err, ErrCorrupt) {
		return fmt.Errorf("store at %s: damaged data: %w", s.dir, err)
	}
	if pebble.IsCorruptionError(err) {
		return fmt.Errorf("store at %s: damaged data reading %s: %w", s.dir, describeKey(key), &corruptionError{err})
	}
	return fmt.Errorf("store at %s: reading %s: %w", s.dir, describeKey(key), err)
}

// List returns up to limit document names of (app, collection) that sort
// after `after` (bytewise), in order, and the cursor for the next page ("" if
// there is none). limit ≤ 0 means DefaultListLimit; it is capped at MaxListLimit.
func (s *Store) List(app, collection, after string, limit int) (docs []string, next string, err error) {
	if err := (Key{app, collection, "x"}).validate(); err != nil {
		return nil, "", err
	}
	if limit <= 0 {
		limit = DefaultListLimit
	}
	limit = min(limit, MaxListLimit)
	prefix := collPrefix(app, collection)
	lo := prefix
	if after != "" {
		lo = append(append(append([]byte(nil), prefix...), after...), 0) // the least key > prefix+after
	}
	s.life.RLock()
	defer s.life.RUnlock()
	if s.dbClosed {
		return nil, "", ErrClosed
	}
	r, done := s.readView()
	defer done()
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return nil, "", s.readErr(prefix, err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		if len(docs) == limit {
			next = docs[len(docs)-1]
			break
		}
		docs = append(docs, string(it.Key()[len(prefix):]))
	}
	if err := it.Close(); err != nil {
		return nil, "", s.readErr(prefix, err)
	}
	return docs, next, nil
}

// LogSince returns up to limit durable log entries of origin with seq >
// afterSeq, in seq order (limit ≤ 0 or > MaxLogLimit means MaxLogLimit),
// stopping early once the deltas add up to MaxLogBytes. If
// entries in that range were truncated it returns an error wrapping
// ErrTruncated. Only local writes are logged: an origin whose batches this
// store receives has no entries here.
func (s *Store) LogSince(origin string, afterSeq uint64, limit int) ([]Entry, error) {
	if err := validOrigin(origin); err != nil {
		return nil, err
	}
	if limit <= 0 || limit > MaxLogLimit {
		limit = MaxLogLimit
	}
	s.mu.Lock()
	trunc := s.trunc[origin]
	s.mu.Unlock()
	if afterSeq < trunc {
		return nil, fmt.Errorf("%w: origin %q entries up to %d were truncated, asked for entries after %d", ErrTruncated, origin, trunc, afterSeq)
	}
	if afterSeq == ^uint64(0) {
		return nil, nil
	}
	s.life.RLock()
	defer s.life.RUnlock()
	if s.dbClosed {
		return nil, ErrClosed
	}
	lo := logKey(origin, afterSeq+1)
	r, done := s.readView()
	defer done()
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(originPrefix(tagLog, origin))})
	if err != nil {
		return nil, s.readErr(lo, err)
	}
	var out []Entry
	bytes := 0
	for ok := it.First(); ok && len(out) < limit && bytes < MaxLogBytes; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			err = s.readErr(it.Key(), err)
			it.Close()
			return nil, err
		}
		_, seq, ok := parseLogKey(it.Key())
		if !ok {
			err = corruptf(it.Key(), "malformed log key")
		}
		var p []byte
		if err == nil {
			p, err = unframe(it.Key(), v)
		}
		var k Key
		var delta []byte
		if err == nil {
			k, delta, err = parseEntryPayload(it.Key(), p)
		}
		if err != nil {
			err = s.readErr(it.Key(), err)
			it.Close()
			return nil, err
		}
		out = append(out, Entry{Origin: origin, Seq: seq, Key: k, Delta: delta})
		bytes += len(delta)
	}
	if err := it.Close(); err != nil {
		return nil, s.readErr(lo, err)
	}
	return out, nil
}

// Seqs returns, per origin, the highest seq such that everything of that
// origin up to it is applied and durable: for an origin whose batches arrive
// through ApplyBatch, its watermark (what this store may acknowledge to the
// peer); for this store's own origin, the last durable local write.
func (s *Store) Seqs() map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]uint64, len(s.durable))
	for o, c := range s.durable {
		out[o] = c
	}
	return out
}

// TruncateLog durably removes origin's log entries with seq ≤ uptoSeq.
// Replication calls it once every peer has acknowledged them, or when a
// peer that is away would make the log exceed its cap. uptoSeq may not
// exceed Seqs()[origin]: entries are removed only once they are durable.
func (s *Store) TruncateLog(ctx context.Context, origin string, uptoSeq uint64) error {
	if err := validOrigin(origin); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	if err := s.writable(); err != nil {
		s.mu.Unlock()
		return err
	}
	if c := s.durable[origin]; uptoSeq > c {
		s.mu.Unlock()
		return fmt.Errorf("store: TruncateLog(%q, %d): only entries up to %d are durable and without gaps", origin, uptoSeq, c)
	}
	from := s.trunc[origin]
	if uptoSeq <= from {
		s.mu.Unlock()
		return nil
	}
	g := s.open
	g.b.DeleteRange(logKey(origin, from+1), logKey(origin, uptoSeq+1), nil)
	s.trunc[origin] = uptoSeq
	g.n++
	g.origins[origin] = 0
	s.last = g
	s.kickCommitter()
	s.mu.Unlock()
	<-g.done
	return g.err
}

func (s *Store) lockDoc(ctx context.Context, dk string) (*docLock, error) {
	s.lockMu.Lock()
	l := s.locks[dk]
	if l == nil {
		l = &docLock{ch: make(chan struct{}, 1)}
		s.locks[dk] = l
	}
	l.refs++
	s.lockMu.Unlock()
	select {
	case l.ch <- struct{}{}:
		return l, nil
	default:
	}
	select {
	case l.ch <- struct{}{}:
		return l, nil
	case <-ctx.Done():
		s.releaseRef(dk, l)
		return nil, ctx.Err()
	}
}

func (s *Store) unlockDoc(dk string, l *docLock) {
	<-l.ch
	s.releaseRef(dk, l)
}

func (s *Store) releaseRef(dk string, l *docLock) {
	s.lockMu.Lock()
	if l.refs--; l.refs == 0 {
		delete(s.locks, dk)
	}
	s.lockMu.Unlock()
}

// quietLogger drops Pebble's informational chatter and keeps its errors.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)              {}
func (quietLogger) Errorf(format string, args ...any) { log.Printf("store: pebble: "+format, args...) }
func (quietLogger) Fatalf(format string, args ...any) { log.Fatalf("store: pebble: "+format, args...) }
