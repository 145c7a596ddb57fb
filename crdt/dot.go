// Package crdt implements the delta-state CRDTs behind Verge documents: a JSON
// document that any PoP can edit without coordination and that converges
// byte-for-byte once every replica has seen every delta.
//
// The package is pure: no I/O, no goroutines, no global mutable state, no
// clock reads. Replica ids (PoP ids) and physical time are passed in, so every
// result is a deterministic function of the inputs. A Doc is not safe for
// concurrent use; the store serialises access per document.
//
// See docs/crdt.md for the semantics of every pair of concurrent operations,
// the binary format and the garbage-collection rule.
package crdt

import (
	"slices"
	"sort"
	"strconv"
	"strings"
)

// ReplicaID identifies a replica: a PoP id assigned by the mesh. Never a user
// or a request: metadata grows with the number of replicas, so they must stay
// few (tens, not millions).
type ReplicaID uint32

// Dot names one event: the S-th event created by replica R in one document.
// Sequence numbers start at 1 and are dense per replica.
type Dot struct {
	R ReplicaID
	S uint32
}

func (d Dot) String() string {
	return strconv.FormatUint(uint64(d.R), 10) + ":" + strconv.FormatUint(uint64(d.S), 10)
}

func (d Dot) less(o Dot) bool {
	if d.R != o.R {
		return d.R < o.R
	}
	return d.S < o.S
}

// VVEntry is one component of a VersionVector.
type VVEntry struct {
	R ReplicaID
	N uint32 // every event 1..N of replica R is included
}

// VersionVector is a causal context without gaps: for each replica, the
// number of its events included. Entries are sorted by replica and N > 0.
// Deltas are applied in causal order (see Doc.Merge), so a document's context
// never has gaps and a version vector is all it needs.
type VersionVector []VVEntry

// Get returns the number of events of r included in v.
func (v VersionVector) Get(r ReplicaID) uint32 {
	// a handful of PoPs: a linear scan beats a binary search
	for _, e := range v {
		if e.R >= r {
			if e.R == r {
				return e.N
			}
			return 0
		}
	}
	return 0
}

// Contains reports whether the event d is included in v.
func (v VersionVector) Contains(d Dot) bool { return d.S != 0 && d.S <= v.Get(d.R) }

// Covers reports whether v includes every event of o.
func (v VersionVector) Covers(o VersionVector) bool {
	for _, e := range o {
		if v.Get(e.R) < e.N {
			return false
		}
	}
	return true
}

// Equal reports whether v and o include exactly the same events.
func (v VersionVector) Equal(o VersionVector) bool { return slices.Equal(v, o) }

// Clone returns a copy of v that shares no memory with it.
func (v VersionVector) Clone() VersionVector {
	if len(v) == 0 {
		return nil
	}
	return slices.Clone(v)
}

// Merge returns the pointwise maximum of v and o (the join of two contexts).
func (v VersionVector) Merge(o VersionVector) VersionVector {
	out := v.Clone()
	for _, e := range o {
		out = out.set(e.R, max(out.Get(e.R), e.N))
	}
	return out
}

// Meet returns the pointwise minimum of v and o: what both include. The
// caller computes the causally stable vector passed to Doc.GC as the meet of
// what every replica acknowledged.
func (v VersionVector) Meet(o VersionVector) VersionVector {
	var out VersionVector
	for _, e := range v {
		if n := min(e.N, o.Get(e.R)); n > 0 {
			out = append(out, VVEntry{e.R, n})
		}
	}
	return out
}

func (v VersionVector) String() string {
	var b strings.Builder
	b.WriteByte('[')
	for i, e := range v {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatUint(uint64(e.R), 10))
		b.WriteByte(':')
		b.WriteString(strconv.FormatUint(uint64(e.N), 10))
	}
	b.WriteByte(']')
	return b.String()
}

// set returns v with the component of r set to n, in place when it can. A
// zero component is absent: entries always have N > 0, as the encoding
// requires.
func (v VersionVector) set(r ReplicaID, n uint32) VersionVector {
	if n == 0 {
		return v
	}
	i, ok := slices.BinarySearchFunc(v, r, func(e VVEntry, r ReplicaID) int { return cmpReplica(e.R, r) })
	if ok {
		v[i].N = n
		return v
	}
	return slices.Insert(v, i, VVEntry{r, n})
}

func cmpReplica(a, b ReplicaID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// dotRange is the events Lo..Hi (inclusive) of replica R.
type dotRange struct {
	R      ReplicaID
	Lo, Hi uint32
}

// dotSet is an arbitrary set of events, kept as sorted disjoint ranges. A
// delta's context is a dotSet: the events it creates plus the events whose
// values it overwrote or removed.
type dotSet []dotRange

func (s dotSet) contains(d Dot) bool {
	i := sort.Search(len(s), func(i int) bool {
		r := s[i]
		return r.R > d.R || (r.R == d.R && r.Hi >= d.S)
	})
	return i < len(s) && s[i].R == d.R && s[i].Lo <= d.S
}

// add inserts d, keeping ranges sorted and coalesced. Deltas add a handful of
// dots, almost always at the end, so the common path is O(1).
func (s dotSet) add(d Dot) dotSet {
	if n := len(s); n > 0 {
		last := &s[n-1]
		if last.R == d.R && last.Hi+1 == d.S {
			last.Hi = d.S
			return s
		}
		if last.R < d.R || (last.R == d.R && last.Hi+1 < d.S) {
			return append(s, dotRange{d.R, d.S, d.S})
		}
	} else {
		return append(s, dotRange{d.R, d.S, d.S})
	}
	if s.contains(d) {
		return s
	}
	s = append(s, dotRange{d.R, d.S, d.S})
	slices.SortFunc(s, func(a, b dotRange) int {
		if a.R != b.R {
			return cmpReplica(a.R, b.R)
		}
		switch {
		case a.Lo < b.Lo:
			return -1
		case a.Lo > b.Lo:
			return 1
		}
		return 0
	})
	return s.coalesce()
}

func (s dotSet) coalesce() dotSet {
	out := s[:0]
	for _, r := range s {
		if n := len(out); n > 0 && out[n-1].R == r.R && uint64(out[n-1].Hi)+1 >= uint64(r.Lo) {
			out[n-1].Hi = max(out[n-1].Hi, r.Hi)
			continue
		}
		out = append(out, r)
	}
	return out
}

// within reports whether v includes every event of s.
func (s dotSet) within(v VersionVector) bool {
	for _, r := range s {
		if r.Hi > v.Get(r.R) {
			return false
		}
	}
	return true
}

// beyond returns the events of s that v does not include.
func (s dotSet) beyond(v VersionVector) dotSet {
	var out dotSet
	for _, r := range s {
		n := v.Get(r.R)
		if r.Hi <= n {
			continue
		}
		out = append(out, dotRange{r.R, max(r.Lo, n+1), r.Hi})
	}
	return out
}

func vvToDotSet(v VersionVector) dotSet {
	out := make(dotSet, 0, len(v))
	for _, e := range v {
		out = append(out, dotRange{e.R, 1, e.N})
	}
	return out
}
