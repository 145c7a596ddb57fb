package store

import (
	"bytes"
	"context"

	"github.com/cockroachdb/pebble/v2"
)

// Raw writes: values the store keeps durably but does not log, for data a
// PoP service replicates by its own means (rooms' storage, which the owner
// PoP ships to the centre itself before its output gate opens). They share
// the document keyspace (a reserved app name keeps them apart from apps'
// documents) and the group commit: raw writes and document updates staged
// at the same time share one fsync.

// Put is one raw write: Value becomes the key's value (nil deletes it).
type Put struct {
	Key   Key
	Value []byte
}

// Pending is a staged raw write; Done is closed once it is durable (or
// failed: Err says which).
type Pending struct{ g *group }

// Done is closed when the write's group has been committed.
func (p *Pending) Done() <-chan struct{} { return p.g.done }

// Err is the commit's error, valid once Done is closed.
func (p *Pending) Err() error { return p.g.err }

// Wait waits until the write is durable.
func (p *Pending) Wait(ctx context.Context) error {
	select {
	case <-p.g.done:
		return p.g.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Write stages puts atomically (all or none survive a crash) in the group
// being gathered and returns without waiting for the fsync: a caller that
// must not act before they are durable waits on the Pending. Puts are not
// logged, so replication never ships them. A key written again before the
// earlier write is durable is fine: groups commit in order.
func (s *Store) Write(puts []Put) (*Pending, error) {
	if len(puts) == 0 {
		done := make(chan struct{})
		close(done)
		return &Pending{g: &group{done: done}}, nil
	}
	for _, p := range puts {
		if err := p.Key.validate(); err != nil {
			return nil, err
		}
		if err := s.checkSize(p.Value, nil); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return nil, err
	}
	g := s.open
	for _, p := range puts {
		dk := string(docKey(p.Key))
		if p.Value == nil {
			g.b.Delete([]byte(dk), nil)
		} else {
			s.setFramed(g.b, []byte(dk), p.Value)
		}
		g.n++
		g.docs = append(g.docs, dk)
		s.overlay[dk] = pendingState{state: p.Value, g: g}
	}
	s.last = g
	s.kickCommitter()
	return &Pending{g: g}, nil
}

// Scan calls fn with every durable document of (app, collection) whose name
// starts with prefix, in order, until fn returns false.
func (s *Store) Scan(app, collection, prefix string, fn func(doc string, state []byte) bool) error {
	if err := (Key{app, collection, "x"}).validate(); err != nil {
		return err
	}
	base := collPrefix(app, collection)
	lo := append(append([]byte(nil), base...), prefix...)
	s.life.RLock()
	defer s.life.RUnlock()
	if s.dbClosed {
		return ErrClosed
	}
	r, done := s.readView()
	defer done()
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return s.readErr(lo, err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if !bytes.HasPrefix(k, lo) {
			break
		}
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return s.readErr(k, err)
		}
		p, err := unframe(k, v)
		if err != nil {
			it.Close()
			return s.readErr(k, err)
		}
		if !fn(string(k[len(base):]), append([]byte(nil), p...)) {
			break
		}
	}
	if err := it.Close(); err != nil {
		return s.readErr(lo, err)
	}
	return nil
}
