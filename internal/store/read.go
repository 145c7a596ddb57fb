package store

import (
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
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
