package documents

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/verge-edge/verge/internal/store"
)

// ErrQuota is a write refused because the app's documents at this PoP
// would pass its stored-bytes quota (the PoP configuration's
// stored_bytes). Nothing was written.
var ErrQuota = fmt.Errorf("%w: stored bytes quota exceeded", ErrTooLarge)

// QuotaError says which quota a write would pass and by how much.
type QuotaError struct {
	App          string
	Quota        int64 // bytes
	Stored, Need int64 // bytes stored now; bytes the write adds
}

func (e *QuotaError) Error() string {
	return fmt.Sprintf("app %s would store %d bytes of documents at this PoP, past its quota (stored_bytes = %d; %d stored now); delete documents or ask the operator for more",
		e.App, e.Stored+e.Need, e.Quota, e.Stored)
}

func (e *QuotaError) Unwrap() error { return ErrQuota }

// usage counts an app's stored bytes (the encoded states of its documents
// at this PoP); begun by a scan of its collections at its first quota
// check.
type usage struct {
	once  sync.Once
	bytes atomic.Int64
}

// usageOf returns app's count, scanning its documents the first time.
func (s *Service) usageOf(app string) *usage {
	s.usageMu.Lock()
	u := s.usage[app]
	if u == nil {
		u = &usage{}
		s.usage[app] = u
	}
	s.usageMu.Unlock()
	u.once.Do(func() {
		s.mu.RLock()
		colls := make([]string, 0, len(s.apps[app]))
		for c := range s.apps[app] {
			colls = append(colls, c)
		}
		s.mu.RUnlock()
		var n int64
		for _, c := range colls {
			s.st.Scan(app, c, "", func(_ string, state []byte) bool {
				n += int64(len(state))
				return true
			})
		}
		u.bytes.Add(n)
	})
	return u
}

// reserve adds a write's growth (newLen - oldLen) to app's count, refusing
// it past the quota; the caller gives it back (release) if the write then
// fails. Shrinking writes are always allowed.
func (s *Service) reserve(k store.Key, oldLen, newLen int) (int64, error) {
	if s.quota == nil {
		return 0, nil
	}
	q := s.quota(k.App)
	grow := int64(newLen - oldLen)
	if q <= 0 {
		if s.counting(k.App) {
			s.usageOf(k.App).bytes.Add(grow)
		}
		return grow, nil
	}
	u := s.usageOf(k.App)
	for {
		cur := u.bytes.Load()
		if grow > 0 && cur+grow > q {
			return 0, &QuotaError{App: k.App, Quota: q, Stored: cur, Need: grow}
		}
		if u.bytes.CompareAndSwap(cur, cur+grow) {
			return grow, nil
		}
	}
}

func (s *Service) release(app string, grow int64) {
	if grow != 0 && s.counting(app) {
		s.usageOf(app).bytes.Add(-grow)
	}
}

// counting reports whether app's bytes are being counted already.
func (s *Service) counting(app string) bool {
	s.usageMu.Lock()
	defer s.usageMu.Unlock()
	return s.usage[app] != nil
}

// StoredBytes is app's documents' encoded size at this PoP, as counted for
// its quota.
func (s *Service) StoredBytes(app string) int64 { return s.usageOf(app).bytes.Load() }
