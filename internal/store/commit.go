package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

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
		if s.opts.Committed != nil {
			s.opts.Committed(took, g.n)
		}
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
