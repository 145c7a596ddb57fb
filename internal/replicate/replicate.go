// Package replicate ships a PoP's writes to the PoPs that must hold them,
// by the scope of their collection, and repairs what shipping missed.
//
// Shipping is log-based and one hop: each PoP sends its own delta log (the
// store's entries under its origin) to every peer, never relaying others'.
// Every batch window (default 50 ms), for each peer, the entries written
// since the last batch that concern that peer (scope and regions, see
// verge.Network) are coalesced per document and sent as one message; the
// peer applies them with store.ApplyBatch and answers with its durable
// watermark for this origin. So a link carries at most one batch per window
// whatever the write rate, and a hot document costs at most one item (its
// deltas or, when smaller, its whole state) per window.
//
// A batch that is lost, refused for a gap, or not acknowledged in time makes
// the sender go back to the peer's watermark and resend from there. When a
// link comes up the sender first asks the peer for its watermark, so a PoP
// restart or a healed partition resumes where it stopped. Entries stay in
// the log until every peer has acknowledged them, or until MaxLog newer
// entries push them out (a peer away that long is repaired by anti-entropy).
//
// Anti-entropy repairs everything else (a peer that lost its disk, entries
// truncated before a long-dead peer came back, documents merged from
// elsewhere): periodically, and whenever a link comes up, each PoP compares
// bucketed digests of every collection it replicates with each peer that
// also replicates it, and pulls the documents that differ. Replicas are
// CRDT states, so pulling and merging is always safe.
package replicate

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/documents"
	"github.com/verge-edge/verge/internal/mesh"
	"github.com/verge-edge/verge/internal/replicate/wire"
	"github.com/verge-edge/verge/internal/store"
)

// Options configures a Replicator.
type Options struct {
	Self    string // this PoP's id
	Network *verge.Network
	Mesh    *mesh.Mesh
	// Store is this PoP's store, whose log is shipped and into which
	// batches are applied; Docs is the document service over it, which
	// merges what arrives and knows each app's collections.
	Store *store.Store
	Docs  *documents.Service
	// Window is the batch window (default 50 ms).
	Window time.Duration
	// AntiEntropy is the period of the digest comparison with every peer
	// (default 5 s). It also runs whenever a link comes up.
	AntiEntropy time.Duration
	// AckTimeout is how long an unacknowledged batch waits before the sender
	// goes back to the peer's watermark (default 2 s).
	AckTimeout time.Duration
	// MaxLog is the most entries of this PoP's log kept for peers that have
	// not acknowledged them (default DefaultMaxLog). A peer that stays away
	// longer loses its place: the oldest entries are dropped, and when it
	// returns it gets the rest of the log and is repaired by anti-entropy,
	// as after a lost disk. So a dead peer costs bounded disk, not all of it.
	MaxLog uint64
	Logger *slog.Logger // default slog.Default()
	// Applied, if set, is called after a batch from peer is durable here,
	// with the documents it changed (for metrics and benchmarks).
	Applied func(peer string, keys []store.Key)
}

// Replicator runs the shipping and repair of one PoP.
type Replicator struct {
	opts   Options
	origin string
	st     *store.Store
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	peers map[string]*peerLink

	truncMu sync.Mutex // one truncation at a time (every sender calls truncate)

	repaired atomic.Uint64 // documents merged by anti-entropy

	traces traced // span contexts of recent traced writes (trace.go)
}

// peerLink is the sending side towards one peer.
type peerLink struct {
	id    string
	kick  chan struct{} // capacity 1: link came up, or a reply arrived
	ae    chan struct{} // capacity 1: run anti-entropy now
	mu    sync.Mutex
	known bool   // the peer's watermark has been learnt since the link came up
	sent  uint64 // last seq covered by a batch sent
	acked uint64 // the peer's durable watermark for our origin
	// lastAck is when acked last moved or a batch was sent with nothing
	// outstanding; the ack timeout runs from it.
	lastAck  time.Time
	lastPush time.Time
	inflight int

	stats LinkStats
}

// LinkStats counts what was delivered to one peer (pushes it answered),
// and how far behind this PoP's log the peer is.
type LinkStats struct {
	Batches, Items, Bytes uint64
	// Unacked is how many entries of this PoP's log the peer has not
	// acknowledged (those that do not concern it included); meaningful
	// only when Known, that is once the peer's watermark has been learnt
	// since its link came up.
	Unacked uint64
	Known   bool
	// Lag is how long the peer has had entries to acknowledge without
	// acknowledging (0 when it is up to date).
	Lag time.Duration
}

// New creates a Replicator; Start runs it.
func New(opts Options) (*Replicator, error) {
	if opts.Window <= 0 {
		opts.Window = 50 * time.Millisecond
	}
	if opts.AntiEntropy <= 0 {
		opts.AntiEntropy = 5 * time.Second
	}
	if opts.AckTimeout <= 0 {
		opts.AckTimeout = 2 * time.Second
	}
	if opts.MaxLog == 0 {
		opts.MaxLog = DefaultMaxLog
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if _, ok := opts.Network.PoP(opts.Self); !ok {
		return nil, fmt.Errorf("replicate: PoP %q is not in the network", opts.Self)
	}
	r := &Replicator{opts: opts, st: opts.Store, peers: map[string]*peerLink{}}
	r.origin = r.st.Origin()
	for _, id := range opts.Mesh.Peers() {
		r.peers[id] = &peerLink{id: id, kick: make(chan struct{}, 1), ae: make(chan struct{}, 1)}
	}
	return r, nil
}

// Origin is the name of this PoP's log (its id and incarnation).
func (r *Replicator) Origin() string { return r.origin }

// Start registers the handlers and starts one sender per peer and the
// anti-entropy loop.
func (r *Replicator) Start() error {
	r.ctx, r.cancel = context.WithCancel(context.Background())
	m := r.opts.Mesh
	for kind, h := range map[string]mesh.Handler{
		"wm":     r.handleWatermark,
		"digest": r.handleDigest,
		"keys":   r.handleKeys,
		"states": r.handleStates,
	} {
		if err := m.HandleRequests(kind, h); err != nil {
			return err
		}
	}
	if err := m.HandlePushesCtx("batch", r.handleBatch); err != nil {
		return err
	}
	for _, p := range r.peers {
		r.wg.Add(1)
		go r.sender(p)
	}
	for _, p := range r.peers {
		r.wg.Add(1)
		go r.antiEntropyLoop(p)
	}
	return nil
}

// PeerEvent tells the replicator that the link to peer came up or went
// down (mesh.Options.OnPeer).
func (r *Replicator) PeerEvent(peer string, up bool) {
	p := r.peers[peer]
	if p == nil {
		return
	}
	p.mu.Lock()
	p.known = false // learn the watermark again: the peer may have restarted
	p.mu.Unlock()
	if up {
		signal(p.kick)
		// Repair once shipping has had time to catch up: right away, it
		// would fetch again every document the peer's log is about to
		// deliver (after a partition, all those written during it).
		time.AfterFunc(r.opts.AckTimeout, func() { signal(p.ae) })
	}
}

// Close stops the replicator. Unsent entries stay in the log.
func (r *Replicator) Close() {
	if r.cancel != nil {
		r.cancel()
		r.wg.Wait()
	}
}

// Repaired is the number of documents anti-entropy has merged here.
func (r *Replicator) Repaired() uint64 { return r.repaired.Load() }

// Links returns what was sent to each peer and how far behind it is.
func (r *Replicator) Links() map[string]LinkStats {
	head := r.st.Seqs()[r.origin]
	out := map[string]LinkStats{}
	for id, p := range r.peers {
		p.mu.Lock()
		st := p.stats
		st.Known = p.known
		if p.known && head > p.acked {
			st.Unacked = head - p.acked
			if !p.lastAck.IsZero() {
				st.Lag = time.Since(p.lastAck)
			}
		}
		p.mu.Unlock()
		out[id] = st
	}
	return out
}

// LogEntries is how many entries of this PoP's log are kept for peers
// (at most MaxLog beyond what every peer has acknowledged).
func (r *Replicator) LogEntries() uint64 {
	trunc := r.st.Truncated(r.origin) // first: never above a later head
	return r.st.Seqs()[r.origin] - trunc
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (r *Replicator) collection(app, coll string) (verge.Collection, bool) {
	c, err := r.opts.Docs.Collection(app, coll)
	return c, err == nil
}

// ---- sending ----

func (r *Replicator) sender(p *peerLink) {
	defer r.wg.Done()
	t := time.NewTicker(r.opts.Window)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		case <-p.kick:
		}
		if !r.opts.Mesh.Up(p.id) {
			r.truncate() // the cap on the log holds while peers are away
			continue
		}
		p.mu.Lock()
		known := p.known
		p.mu.Unlock()
		if !known {
			r.learnWatermark(p)
			continue
		}
		r.sendBatch(p)
		r.truncate()
	}
}

// learnWatermark asks the peer how far it has our origin.
func (r *Replicator) learnWatermark(p *peerLink) {
	ctx, cancel := context.WithTimeout(r.ctx, r.opts.AckTimeout)
	defer cancel()
	out, err := r.opts.Mesh.Request(ctx, p.id, "wm", []byte(r.origin))
	if err != nil {
		return // the next tick retries
	}
	a, err := wire.DecodeAck(out)
	if err != nil {
		r.opts.Logger.Warn("replicate: bad watermark reply", "peer", p.id, "err", err)
		return
	}
	p.mu.Lock()
	p.known = true
	p.acked = a.Watermark
	p.sent = a.Watermark
	p.lastAck = time.Now()
	p.mu.Unlock()
}

const (
	maxBatchEntries = 4096
	maxBatchBytes   = 4 << 20
	// emptyBatchEvery: entries that concern no one still move a peer's
	// watermark (so the log can be truncated), but at most this often.
	emptyBatchEvery = time.Second
)

func (r *Replicator) sendBatch(p *peerLink) {
	p.mu.Lock()
	if p.sent > p.acked && time.Since(p.lastAck) > r.opts.AckTimeout {
		// Lost batch or lost ack: go back and resend.
		p.sent = p.acked
		p.lastAck = time.Now()
	}
	from := p.sent + 1
	p.mu.Unlock()

	head := r.st.Seqs()[r.origin]
	if head < from {
		return
	}
	b := &wire.Batch{Origin: r.origin, From: from}
	entries, err := r.st.LogSince(r.origin, from-1, maxBatchEntries)
	if errors.Is(err, store.ErrTruncated) {
		// The peer is behind our truncation point: it repairs by anti-entropy.
		b.Reset = true
		trunc := r.st.Truncated(r.origin)
		b.From = max(from, trunc+1)
		entries, err = r.st.LogSince(r.origin, b.From-1, maxBatchEntries)
		signal(p.ae)
	}
	if err != nil {
		r.opts.Logger.Error("replicate: reading the log", "peer", p.id, "err", err)
		return
	}
	if len(entries) == 0 {
		return
	}
	b.To = b.From - 1
	seqs := r.coalesce(p.id, b, entries)
	p.mu.Lock()
	if len(b.Items) == 0 && time.Since(p.lastPush) < emptyBatchEvery && !b.Reset {
		p.mu.Unlock()
		return
	}
	p.sent = b.To
	if p.inflight == 0 {
		p.lastAck = time.Now()
	}
	p.inflight++
	p.lastPush = time.Now()
	p.mu.Unlock()

	msg := b.Encode()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		ctx, cancel := context.WithTimeout(r.ctx, r.opts.AckTimeout)
		defer cancel()
		out, err := r.opts.Mesh.Push(r.batchContext(ctx, seqs), p.id, "batch", msg)
		p.mu.Lock()
		defer p.mu.Unlock()
		p.inflight--
		if err != nil {
			var re *mesh.RemoteError
			if errors.As(err, &re) {
				r.opts.Logger.Warn("replicate: batch refused", "peer", p.id, "from", b.From, "to", b.To, "err", err)
			}
			p.sent = p.acked // resend on the next tick
			return
		}
		// Counted once delivered: a push nobody received is not traffic.
		p.stats.Batches++
		p.stats.Items += uint64(len(b.Items))
		p.stats.Bytes += uint64(len(msg))
		a, err := wire.DecodeAck(out)
		if err != nil {
			r.opts.Logger.Warn("replicate: bad ack", "peer", p.id, "err", err)
			p.sent = p.acked
			return
		}
		if a.Watermark > p.acked {
			p.acked = a.Watermark
			p.lastAck = time.Now()
		}
		if a.Gap {
			p.sent = p.acked
		}
	}()
}

// coalesce fills b with the entries that concern peer, one item per
// document: its deltas in order, or its current state when that is smaller.
// It returns the sequence numbers of the entries it took.
func (r *Replicator) coalesce(peer string, b *wire.Batch, entries []store.Entry) (seqs []uint64) {
	type doc struct {
		k      store.Key
		deltas [][]byte
		size   int
	}
	var order []*doc
	byKey := map[store.Key]*doc{}
	size := 0
	for _, e := range entries {
		if size > maxBatchBytes {
			break
		}
		b.To = e.Seq
		c, ok := r.collection(e.Key.App, e.Key.Collection)
		if !ok || !r.sendsTo(peer, c) {
			continue
		}
		seqs = append(seqs, e.Seq)
		d := byKey[e.Key]
		if d == nil {
			d = &doc{k: e.Key}
			byKey[e.Key] = d
			order = append(order, d)
		}
		d.deltas = append(d.deltas, e.Delta)
		d.size += len(e.Delta)
		size += len(e.Delta)
	}
	for _, d := range order {
		if len(d.deltas) > 1 {
			if st, ok, err := r.st.Get(d.k); err == nil && ok && len(st) < d.size {
				b.Items = append(b.Items, wire.Item{Key: wire.Key(d.k), Delta: st})
				continue
			}
		}
		for _, x := range d.deltas {
			if len(x) == 0 {
				continue // an old-style empty tombstone carries nothing to merge
			}
			b.Items = append(b.Items, wire.Item{Key: wire.Key(d.k), Delta: x})
		}
	}
	return seqs
}

// sendsTo reports whether writes of c made here go to peer.
func (r *Replicator) sendsTo(peer string, c verge.Collection) bool {
	return r.opts.Network.Replicates(peer, c)
}

// truncate drops log entries every peer has acknowledged, and the oldest
// entries beyond MaxLog whoever has not.
func (r *Replicator) truncate() {
	if !r.truncMu.TryLock() {
		return // another sender is at it
	}
	defer r.truncMu.Unlock()
	trunc := r.st.Truncated(r.origin)
	low := trunc // with no peers, or one not heard from yet, only the cap moves it
	if len(r.peers) > 0 {
		low = ^uint64(0)
		for _, p := range r.peers {
			p.mu.Lock()
			known, acked := p.known, p.acked
			p.mu.Unlock()
			if !known {
				low = trunc // it may still need everything
				break
			}
			low = min(low, acked)
		}
	}
	if head := r.st.Seqs()[r.origin]; head > r.opts.MaxLog && head-r.opts.MaxLog > low {
		low = head - r.opts.MaxLog
	}
	// Each truncation is a durable write: batch them.
	step := min(truncateEvery, max(1, r.opts.MaxLog/8))
	if low < trunc+step {
		return
	}
	if err := r.st.TruncateLog(r.ctx, r.origin, low); err != nil {
		if r.ctx.Err() == nil {
			r.opts.Logger.Error("replicate: truncating the log", "err", err)
		}
	}
}

const (
	truncateEvery = 1024
	// DefaultMaxLog bounds the log kept for absent peers: about 100 MB of
	// typical deltas, hours of writes at a busy PoP.
	DefaultMaxLog = 1 << 20
)

// ---- receiving ----

func (r *Replicator) handleWatermark(_ string, data []byte) ([]byte, error) {
	return wire.Ack{Watermark: r.st.Seqs()[string(data)]}.Encode(), nil
}

// originPoP is the PoP id part of an origin ("sfo.3" → "sfo").
func originPoP(origin string) string {
	for i := len(origin) - 1; i >= 0; i-- {
		if origin[i] == '.' {
			return origin[:i]
		}
	}
	return origin
}

func (r *Replicator) handleBatch(ctx context.Context, from string, data []byte) ([]byte, error) {
	start := time.Now()
	b, err := wire.DecodeBatch(data)
	if err != nil {
		return nil, err
	}
	if originPoP(b.Origin) != from {
		return nil, fmt.Errorf("batch of origin %q arrived from PoP %q: a PoP ships only its own log", b.Origin, from)
	}
	// Keep only what this PoP may hold: residency is enforced by the
	// receiver too, so a misconfigured sender cannot place data here.
	items := make([]store.BatchItem, 0, len(b.Items))
	for _, it := range b.Items {
		if c, ok := r.collection(it.Key.App, it.Key.Collection); ok && r.opts.Network.Holds(r.opts.Self, c) {
			items = append(items, store.BatchItem{Key: store.Key(it.Key), Delta: it.Delta})
		}
	}
	from0 := b.From
	if b.Reset {
		if wm := r.st.Seqs()[b.Origin]; from0 > wm+1 {
			from0 = wm + 1
			signal(r.aeFor(from))
		}
	}
	wm, err := r.st.ApplyBatch(r.ctx, b.Origin, from0, b.To, items, r.opts.Docs.Merge)
	if errors.Is(err, store.ErrGap) {
		return wire.Ack{Watermark: wm, Gap: true}.Encode(), nil
	}
	if err != nil {
		return nil, err
	}
	r.appliedSpans(ctx, from, b.Origin, b.From, b.To, len(items), start)
	if r.opts.Applied != nil && len(items) > 0 {
		keys := make([]store.Key, len(items))
		for i, it := range items {
			keys[i] = it.Key
		}
		r.opts.Applied(from, keys)
	}
	return wire.Ack{Watermark: wm}.Encode(), nil
}

func (r *Replicator) aeFor(peer string) chan struct{} {
	if p := r.peers[peer]; p != nil {
		return p.ae
	}
	return make(chan struct{}, 1)
}

// ---- helpers shared by repair ----

func docHash(key string, state []byte) uint64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	h.Write([]byte{0})
	h.Write(state)
	return h.Sum64()
}

func bucketOf(key string) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % buckets)
}

const buckets = 64
