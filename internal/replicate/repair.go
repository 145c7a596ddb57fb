package replicate

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/crdt"
	"github.com/verge-edge/verge/internal/mesh"
	"github.com/verge-edge/verge/internal/replicate/wire"
	"github.com/verge-edge/verge/internal/store"
)

// Which documents a keys request asks for.
const (
	keysInBuckets = iota // those whose key falls in the given digest buckets
	keysAll              // every document the peer holds (the centre backing up local data)
	keysTouchedBy        // those a PoP number has written (a PoP rebuilding its local data)
)

const (
	maxKeysPerReply   = 8192
	maxStatesPerReply = 256
	maxReplyBytes     = 4 << 20
)

func (r *Replicator) antiEntropyLoop(p *peerLink) {
	defer r.wg.Done()
	// Spread the peers' rounds over the period.
	t := time.NewTicker(r.opts.AntiEntropy)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		case <-p.ae:
		}
		if !r.opts.Mesh.Up(p.id) {
			continue
		}
		if n, err := r.RepairWith(r.ctx, p.id); err != nil && r.ctx.Err() == nil && !errors.Is(err, mesh.ErrUnreachable) {
			r.opts.Logger.Warn("replicate: anti-entropy", "peer", p.id, "err", err)
		} else if n > 0 {
			r.repaired.Add(uint64(n))
		}
	}
}

// RepairWith pulls from peer every document that differs, in every
// collection both replicate (and, at the centre, every local document the
// peer holds). It returns the number of documents merged.
func (r *Replicator) RepairWith(ctx context.Context, peer string) (int, error) {
	total := 0
	self, _ := r.opts.Network.PoP(r.opts.Self)
	for _, app := range r.opts.Docs.Apps() {
		colls, _ := r.opts.Docs.Collections(app)
		for _, c := range colls {
			var n int
			var err error
			switch {
			case c.Scope.Kind == verge.ScopeLocal:
				if !self.Central || !r.opts.Network.Allowed(peer, c) || !r.opts.Network.Allowed(r.opts.Self, c) {
					continue
				}
				n, err = r.pull(ctx, peer, app, c, keysAll, 0, ^uint64(0))
			default:
				if !r.opts.Network.Replicates(r.opts.Self, c) || !r.opts.Network.Replicates(peer, c) {
					continue
				}
				var differ uint64
				if differ, err = r.compareDigests(ctx, peer, app, c); err == nil && differ != 0 {
					n, err = r.pull(ctx, peer, app, c, keysInBuckets, 0, differ)
				}
			}
			total += n
			if err != nil {
				return total, fmt.Errorf("%s/%s: %w", app, c.Name, err)
			}
		}
	}
	return total, nil
}

// Rebuild pulls, for a PoP that starts with an empty store, every document
// it should hold: replicated collections from the centre and its peers,
// and the local documents it wrote before from the centre.
func (r *Replicator) Rebuild(ctx context.Context) (int, error) {
	self, _ := r.opts.Network.PoP(r.opts.Self)
	central, _ := r.opts.Network.Central()
	total := 0
	var errs []error
	if !self.Central {
		for _, app := range r.opts.Docs.Apps() {
			colls, _ := r.opts.Docs.Collections(app)
			for _, c := range colls {
				if c.Scope.Kind != verge.ScopeLocal || !r.opts.Network.Allowed(r.opts.Self, c) {
					continue
				}
				n, err := r.pull(ctx, central.ID, app, c, keysTouchedBy, uint64(self.Number), ^uint64(0))
				total += n
				if err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	for _, p := range r.opts.Mesh.Peers() {
		n, err := r.RepairWith(ctx, p)
		total += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	return total, errors.Join(errs...)
}

// digest returns the bucketed digest of a collection at this PoP: per
// bucket, the XOR of the hashes of (key, state) of its documents.
func (r *Replicator) digest(app, coll string) ([buckets]uint64, error) {
	var d [buckets]uint64
	err := r.eachDocAfter(app, coll, "", func(key string, state []byte) error {
		d[bucketOf(key)] ^= docHash(key, state)
		return nil
	})
	return d, err
}

func (r *Replicator) compareDigests(ctx context.Context, peer, app string, c verge.Collection) (uint64, error) {
	w := wire.NewWriter()
	w.Str(r.opts.Self)
	w.Str(app)
	w.Str(c.Name)
	out, err := r.request(ctx, peer, "digest", w.B)
	if err != nil {
		return 0, err
	}
	if len(out) != 1+8*buckets || out[0] != wire.Version {
		return 0, fmt.Errorf("digest reply of %d bytes", len(out))
	}
	mine, err := r.digest(app, c.Name)
	if err != nil {
		return 0, err
	}
	var differ uint64
	for i := range buckets {
		if binary.LittleEndian.Uint64(out[1+8*i:]) != mine[i] {
			differ |= 1 << i
		}
	}
	return differ, nil
}

func (r *Replicator) request(ctx context.Context, peer, kind string, data []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return r.opts.Mesh.Request(ctx, peer, kind, data)
}

// pull asks peer for the keys and hashes it holds (by mode), then for the
// states of those that differ here, and merges them.
func (r *Replicator) pull(ctx context.Context, peer, app string, c verge.Collection, mode int, arg, bucketMask uint64) (int, error) {
	merged := 0
	after := ""
	for {
		w := wire.NewWriter()
		w.Str(r.opts.Self)
		w.Str(app)
		w.Str(c.Name)
		w.U64(uint64(mode))
		w.U64(arg)
		w.U64(bucketMask)
		w.Str(after)
		out, err := r.request(ctx, peer, "keys", w.B)
		if err != nil {
			return merged, err
		}
		rd := wire.NewReader(out)
		next := rd.Str(wire.MaxName)
		n := rd.U64()
		var want []string
		for i := uint64(0); i < n && rd.Err == nil; i++ {
			key := rd.Str(wire.MaxName)
			h := rd.U64()
			if rd.Err != nil {
				break
			}
			st, ok, err := r.st.Get(store.Key{App: app, Collection: c.Name, Doc: key})
			if err != nil {
				return merged, err
			}
			if !ok || docHash(key, st) != h {
				want = append(want, key)
			}
		}
		if err := rd.Done(); err != nil {
			return merged, err
		}
		for len(want) > 0 {
			chunk := want[:min(len(want), maxStatesPerReply)]
			want = want[len(chunk):]
			m, err := r.fetchStates(ctx, peer, app, c.Name, chunk)
			merged += m
			if err != nil {
				return merged, err
			}
		}
		if next == "" {
			return merged, nil
		}
		after = next
	}
}

func (r *Replicator) fetchStates(ctx context.Context, peer, app, coll string, keys []string) (int, error) {
	w := wire.NewWriter()
	w.Str(r.opts.Self)
	w.Str(app)
	w.Str(coll)
	w.U64(uint64(len(keys)))
	for _, k := range keys {
		w.Str(k)
	}
	out, err := r.request(ctx, peer, "states", w.B)
	if err != nil {
		return 0, err
	}
	items, err := decodeStates(out, app, coll)
	if err != nil {
		return 0, err
	}
	if len(items) == 0 {
		return 0, nil
	}
	if err := r.st.Merge(ctx, items, r.opts.Docs.Merge); err != nil {
		return 0, err
	}
	return len(items), nil
}

func decodeStates(p []byte, app, coll string) ([]store.BatchItem, error) {
	states, err := wire.DecodeStates(p)
	if err != nil {
		return nil, err
	}
	items := make([]store.BatchItem, len(states))
	for i, st := range states {
		items[i] = store.BatchItem{Key: store.Key{App: app, Collection: coll, Doc: st.Doc}, Delta: st.State}
	}
	return items, nil
}

// ---- answering repair requests ----

// requestHead decodes requester, app and collection, and checks that the
// requester may hold the collection's data.
func (r *Replicator) requestHead(rd *wire.Reader) (requester, app string, c verge.Collection, err error) {
	requester, app = rd.Str(wire.MaxName), rd.Str(wire.MaxName)
	coll := rd.Str(wire.MaxName)
	if rd.Err != nil {
		return "", "", c, rd.Err
	}
	c, ok := r.collection(app, coll)
	if !ok {
		return "", "", c, fmt.Errorf("unknown collection %s/%s here", app, coll)
	}
	if !r.opts.Network.Holds(requester, c) {
		return "", "", c, fmt.Errorf("PoP %q may not hold %s/%s (scope %s, regions %v)", requester, app, coll, c.Scope, c.Regions)
	}
	return requester, app, c, nil
}

func (r *Replicator) handleDigest(_ string, p []byte) ([]byte, error) {
	rd := wire.NewReader(p)
	_, app, c, err := r.requestHead(rd)
	if err != nil {
		return nil, err
	}
	if err := rd.Done(); err != nil {
		return nil, err
	}
	d, err := r.digest(app, c.Name)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1, 1+8*buckets)
	out[0] = wire.Version
	for _, v := range d {
		out = binary.LittleEndian.AppendUint64(out, v)
	}
	return out, nil
}

func (r *Replicator) handleKeys(_ string, p []byte) ([]byte, error) {
	rd := wire.NewReader(p)
	_, app, c, err := r.requestHead(rd)
	if err != nil {
		return nil, err
	}
	mode, arg, mask := rd.U64(), rd.U64(), rd.U64()
	after := rd.Str(wire.MaxName)
	if err := rd.Done(); err != nil {
		return nil, err
	}
	type kh struct {
		k string
		h uint64
	}
	var list []kh
	next := ""
	errFull := errors.New("full")
	err = r.eachDocAfter(app, c.Name, after, func(key string, state []byte) error {
		if len(list) == maxKeysPerReply {
			next = list[len(list)-1].k
			return errFull
		}
		switch mode {
		case keysInBuckets:
			if mask&(1<<bucketOf(key)) == 0 {
				return nil
			}
		case keysTouchedBy:
			if !touchedBy(state, uint16(arg)) {
				return nil
			}
		}
		list = append(list, kh{key, docHash(key, state)})
		return nil
	})
	if err != nil && err != errFull {
		return nil, err
	}
	w := wire.NewWriter()
	w.Str(next)
	w.U64(uint64(len(list)))
	for _, e := range list {
		w.Str(e.k)
		w.U64(e.h)
	}
	return w.B, nil
}

// touchedBy reports whether a PoP with this number wrote to the document
// (under any incarnation).
func touchedBy(state []byte, number uint16) bool {
	d, err := crdt.DecodeDoc(state)
	if err != nil {
		return false
	}
	for _, e := range d.Context() {
		if uint16(e.R>>16) == number {
			return true
		}
	}
	return false
}

func (r *Replicator) eachDocAfter(app, coll, after string, fn func(key string, state []byte) error) error {
	for {
		keys, next, err := r.st.List(app, coll, after, 1000)
		if err != nil {
			return err
		}
		for _, k := range keys {
			st, ok, err := r.st.Get(store.Key{App: app, Collection: coll, Doc: k})
			if err != nil {
				return err
			}
			if ok {
				if err := fn(k, st); err != nil {
					return err
				}
			}
		}
		if next == "" {
			return nil
		}
		after = next
	}
}

func (r *Replicator) handleStates(_ string, p []byte) ([]byte, error) {
	rd := wire.NewReader(p)
	_, app, c, err := r.requestHead(rd)
	if err != nil {
		return nil, err
	}
	n := rd.U64()
	if rd.Err == nil && n > maxStatesPerReply {
		rd.Fail("%d states asked, the limit is %d", n, maxStatesPerReply)
	}
	var keys []string
	for i := uint64(0); i < n && rd.Err == nil; i++ {
		keys = append(keys, rd.Str(wire.MaxName))
	}
	if err := rd.Done(); err != nil {
		return nil, err
	}
	var states []wire.State
	size := 0
	for _, k := range keys {
		st, ok, err := r.st.Get(store.Key{App: app, Collection: c.Name, Doc: k})
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if size+len(st) > maxReplyBytes && len(states) > 0 {
			break // the requester asks again on its next round
		}
		size += len(st)
		states = append(states, wire.State{Doc: k, State: st})
	}
	return wire.EncodeStates(states), nil
}

// Fetch asks peer for one document's state (a document following its user)
// and merges it here. found is false if the peer has no such document.
func (r *Replicator) Fetch(ctx context.Context, peer, app, coll, key string) (found bool, err error) {
	n, err := r.fetchStates(ctx, peer, app, coll, []string{key})
	return n > 0, err
}
