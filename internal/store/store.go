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
	"errors"
	"fmt"
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
	// Committed, if set, is called after every group commit with the time
	// it took to write and sync and the number of writes (metrics).
	Committed func(took time.Duration, writes int)

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

// quietLogger drops Pebble's informational chatter and keeps its errors.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)              {}
func (quietLogger) Errorf(format string, args ...any) { log.Printf("store: pebble: "+format, args...) }
func (quietLogger) Fatalf(format string, args ...any) { log.Fatalf("store: pebble: "+format, args...) }
