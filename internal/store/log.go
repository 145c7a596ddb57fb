package store

import (
	"context"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

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
