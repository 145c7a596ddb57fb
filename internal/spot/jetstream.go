package spot

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/verge-edge/verge/crdt"
)

// CentreReplica is the CRDT replica id under which the centre applies
// document operations. SPOT documents live only at the centre, so the id
// needs only to be fixed, not unique among PoPs; it is the largest id so
// that it cannot collide with a PoP id if a document is ever exported.
const CentreReplica crdt.ReplicaID = 1<<32 - 1

// Config configures NewJetStream.
type Config struct {
	// Bucket names the KV buckets: <Bucket>_0 .. <Bucket>_<Shards-1>;
	// default "verge_spot".
	Bucket string
	// Shards is how many buckets (streams) the keys are spread over by
	// hash; default 8. JetStream fsyncs each write of a stream in turn,
	// while writes to different streams fsync in parallel, so distinct
	// keys scale with shards. It is fixed when the buckets are created:
	// opening them with another count is refused.
	Shards int
	// Replicas is the bucket's replication factor: 1 (default) on a single
	// central server, 3 when three central servers are clustered. With more
	// than one replica reads go to the stream leader (direct gets, which
	// any replica may answer, are turned off) so that they are not stale.
	Replicas int
	// Timeout bounds each JetStream call the engine makes; default 5s.
	Timeout time.Duration
	// MaxAttempts bounds the compare-and-set attempts for one batch of
	// operations on a key before they fail with ErrBusy; default 100.
	// Attempts are refused only when several engines (central servers)
	// write the same key; each refusal backs off a little, at random, so
	// that a server that keeps winning does not starve the others.
	MaxAttempts int
}

// maxBatch is the most operations on one key that share a write.
const maxBatch = 16

// maxKeys is how many keys keep in-memory state (their cached value) before
// idle ones are forgotten.
const maxKeys = 1 << 16

// JetStream is the Engine on a JetStream key-value bucket.
//
// Every key is one KV entry holding a small versioned value (see value).
// Changes are compare-and-set writes (KV Update with the last revision), so
// they are linearizable whatever other engines share the bucket. Inside one
// engine, the operations on a key queue up and one goroutine at a time
// writes them, up to maxBatch per write: a hot counter costs one fsync per
// batch, not one per take.
type JetStream struct {
	shards  []shard
	timeout time.Duration
	tries   int

	inc uint64 // this incarnation's id, random: op ids never repeat across restarts
	seq atomic.Uint64

	mu   sync.Mutex
	keys map[string]*keyState

	// Compare-and-set writes refused, and writes whose outcome was unknown
	// until a read settled it (tests check the paths are taken).
	refusals, ambiguous atomic.Uint64
}

// shard is one bucket.
type shard struct {
	kv      jetstream.KeyValue
	stream  jetstream.Stream
	subject string // "$KV.<bucket>." prefix of every key's subject
}

// shardMeta is the bucket metadata key recording the shard count.
const shardMeta = "verge_spot_shards"

// keyState is a key's queue of operations and the value this engine last
// read or wrote for it. The cached value is only ever used as the base of a
// compare-and-set: a decision that writes nothing is taken on a fresh read.
type keyState struct {
	queue   []*pending
	running bool
	rev     uint64 // KV revision of v; 0 with v nil: not cached
	v       *value
}

// pending is one operation waiting for its key's writer.
type pending struct {
	id    opID
	state atomic.Int32 // stQueued → stTaken (by a writer) or stCanceled (by its caller)
	// apply computes the operation on v, changing v only when it reports
	// wrote. It is called again for each attempt, on the latest state.
	apply func(v *value) (res int64, wrote bool, err error)
	// result turns the outcome into the caller's answer: from the write's
	// window entry when wrote, else from the last apply.
	res   int64
	wrote bool
	seq   uint64 // write sequence of the committed write
	err   error

	amb     bool   // a write carrying this op may have committed
	ambBase uint64 // the key's write sequence before the first such write
	done    chan struct{}
}

const (
	stQueued int32 = iota
	stTaken
	stCanceled
)

// NewJetStream opens (creating if needed) the SPOT bucket on the JetStream
// server nc is connected to.
func NewJetStream(ctx context.Context, nc *nats.Conn, cfg Config) (*JetStream, error) {
	if cfg.Bucket == "" {
		cfg.Bucket = "verge_spot"
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = 100
	}
	if cfg.Shards == 0 {
		cfg.Shards = 8
	}
	if cfg.Shards < 0 || cfg.Shards > 256 {
		return nil, fmt.Errorf("spot: %d shards; want 1 to 256", cfg.Shards)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("spot: jetstream: %w", err)
	}
	// Shard 0 exists in every layout: its metadata tells whether the
	// buckets were created with another count, which would send keys to
	// buckets that do not hold them.
	first := cfg.Bucket + "_0"
	if st, err := js.Stream(ctx, "KV_"+first); err == nil {
		if n := st.CachedInfo().Config.Metadata[shardMeta]; n != strconv.Itoa(cfg.Shards) {
			return nil, fmt.Errorf("spot: bucket %s was created with %s shards, not %d; keep the original count", first, n, cfg.Shards)
		}
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("spot: stream KV_%s (is JetStream enabled on the central server?): %w", first, err)
	}
	shards := make([]shard, cfg.Shards)
	for i := range shards {
		// Create shard 0 last: until it exists, no layout is recorded.
		i := len(shards) - 1 - i
		bucket := cfg.Bucket + "_" + strconv.Itoa(i)
		kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      bucket,
			Description: "Verge SPOT: claims, bounded stock, conditional documents",
			History:     1,
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.Replicas,
			// A value is a document (MaxDocBytes) plus its header and window.
			MaxValueSize: MaxDocBytes + 4096,
			Metadata:     map[string]string{shardMeta: strconv.Itoa(cfg.Shards)},
		})
		if err != nil {
			return nil, fmt.Errorf("spot: create bucket %q (is JetStream enabled on the central server?): %w", bucket, err)
		}
		st, err := js.Stream(ctx, "KV_"+bucket)
		if err != nil {
			return nil, fmt.Errorf("spot: stream KV_%s: %w", bucket, err)
		}
		if cfg.Replicas > 1 && st.CachedInfo().Config.AllowDirect {
			c := st.CachedInfo().Config
			c.AllowDirect = false
			if st, err = js.UpdateStream(ctx, c); err != nil {
				return nil, fmt.Errorf("spot: turn off direct gets on KV_%s: %w", bucket, err)
			}
		}
		shards[i] = shard{kv: kv, stream: st, subject: "$KV." + bucket + "."}
	}
	var b [8]byte
	if _, err := crand.Read(b[:]); err != nil {
		return nil, err
	}
	return &JetStream{
		shards:  shards,
		timeout: cfg.Timeout,
		tries:   cfg.MaxAttempts,
		inc:     binary.LittleEndian.Uint64(b[:]),
		keys:    make(map[string]*keyState),
	}, nil
}

func (e *JetStream) Claim(ctx context.Context, app, ns, key, owner string) (Claim, error) {
	if err := checkClaim(app, ns, key, owner); err != nil {
		return Claim{}, err
	}
	var cur string
	p, err := e.do(ctx, kvKey(kindClaim, app, ns, key), kindClaim, func(v *value) (int64, bool, error) {
		cur = v.owner
		if v.owner != "" {
			return 0, false, nil
		}
		v.owner = owner
		return 0, true, nil
	})
	if err != nil {
		return Claim{}, err
	}
	if p.wrote {
		return Claim{Claimed: true, Owner: owner}, nil
	}
	return Claim{Claimed: cur == owner, Owner: cur}, nil
}

func (e *JetStream) Release(ctx context.Context, app, ns, key, owner string) (bool, error) {
	if err := checkClaim(app, ns, key, owner); err != nil {
		return false, err
	}
	p, err := e.do(ctx, kvKey(kindClaim, app, ns, key), kindClaim, func(v *value) (int64, bool, error) {
		if v.owner != owner {
			return 0, false, nil
		}
		v.owner = ""
		return 0, true, nil
	})
	if err != nil {
		return false, err
	}
	return p.wrote, nil
}

// take takes n units if the counter holds them: what remains, and whether
// it took (a change to write).
func (v *value) take(n int64) (int64, bool, error) {
	if v.stock < n {
		return v.stock, false, nil
	}
	v.stock -= n
	return v.stock, true, nil
}

func (e *JetStream) Take(ctx context.Context, app, counter string, n int64) (Take, error) {
	if err := checkChange(app, counter, n); err != nil {
		return Take{}, err
	}
	p, err := e.do(ctx, kvKey(kindCounter, app, counter), kindCounter, func(v *value) (int64, bool, error) {
		return v.take(n)
	})
	if err != nil {
		return Take{}, err
	}
	return Take{OK: p.wrote, Remaining: p.res}, nil
}

func (e *JetStream) Restock(ctx context.Context, app, counter string, n int64) (int64, error) {
	if err := checkChange(app, counter, n); err != nil {
		return 0, err
	}
	p, err := e.do(ctx, kvKey(kindCounter, app, counter), kindCounter, func(v *value) (int64, bool, error) {
		s, err := addStock(v.stock, n)
		if err != nil {
			return 0, false, err
		}
		v.stock = s
		return s, true, nil
	})
	if err != nil {
		return 0, err
	}
	return p.res, nil
}

func (e *JetStream) Counter(ctx context.Context, app, counter string) (int64, error) {
	if err := checkCounter(app, counter); err != nil {
		return 0, err
	}
	_, v, err := e.read(ctx, kvKey(kindCounter, app, counter), kindCounter)
	if err != nil {
		return 0, err
	}
	return v.stock, nil
}

func (e *JetStream) GetDoc(ctx context.Context, app, key string) ([]byte, uint64, error) {
	if err := checkDocKey(app, key); err != nil {
		return nil, 0, err
	}
	_, v, err := e.read(ctx, kvKey(kindDoc, app, key), kindDoc)
	if err != nil || v.seq == 0 {
		return nil, 0, err
	}
	d, err := crdt.DecodeDoc(v.doc)
	if err != nil {
		return nil, 0, fmt.Errorf("spot: document %q: stored state: %w", key, err)
	}
	j, err := d.JSON()
	return j, v.seq, err
}

func (e *JetStream) UpdateDoc(ctx context.Context, app, key string, rev uint64, ops []crdt.Op) ([]byte, uint64, error) {
	if err := checkDocKey(app, key); err != nil {
		return nil, 0, err
	}
	if err := checkOps(ops); err != nil {
		return nil, 0, err
	}
	// Every write that can commit starts from revision rev, whose state is
	// unique, so every attempt computes the same JSON: the one to return
	// even when the write is only found later in the window.
	var out []byte
	var cur uint64
	p, err := e.do(ctx, kvKey(kindDoc, app, key), kindDoc, func(v *value) (int64, bool, error) {
		cur = v.seq
		if v.seq != rev {
			return 0, false, nil
		}
		j, err := applyDoc(v, ops)
		if err != nil {
			return 0, false, err
		}
		out = j
		return 0, true, nil
	})
	if err != nil {
		return nil, 0, err
	}
	if !p.wrote {
		return nil, 0, &ConflictError{Key: key, Expected: rev, Current: cur}
	}
	return out, p.seq, nil
}

// applyDoc applies ops to the document in v and returns its JSON.
func applyDoc(v *value, ops []crdt.Op) ([]byte, error) {
	d := crdt.NewDoc()
	if v.seq > 0 {
		var err error
		if d, err = crdt.DecodeDoc(v.doc); err != nil {
			return nil, fmt.Errorf("spot: stored document: %w", err)
		}
	}
	if _, err := d.Apply(CentreReplica, time.Now().UnixNano(), ops...); err != nil {
		return nil, invalid("%v", err)
	}
	b, err := d.MarshalBinary()
	if err != nil {
		return nil, invalid("%v", err)
	}
	if len(b) > MaxDocBytes {
		return nil, invalid("the document would take %d bytes, more than the maximum of %d", len(b), MaxDocBytes)
	}
	j, err := d.JSON()
	if err != nil {
		return nil, err
	}
	if len(j) > MaxDocBytes {
		return nil, invalid("the document would be %d bytes of JSON, more than the maximum of %d", len(j), MaxDocBytes)
	}
	v.doc = b
	return j, nil
}

// do runs one operation on a key: it queues it and, if no writer is active
// on the key, becomes the writer.
func (e *JetStream) do(ctx context.Context, key string, kind byte, apply func(*value) (int64, bool, error)) (*pending, error) {
	return e.doID(ctx, key, kind, opID{e.inc, e.seq.Add(1)}, apply)
}

// doID is do with the operation's id chosen by the caller (a client's
// OpID): a resend of it is found in the window.
func (e *JetStream) doID(ctx context.Context, key string, kind byte, id opID, apply func(*value) (int64, bool, error)) (*pending, error) {
	p := &pending{
		id:    id,
		apply: apply,
		done:  make(chan struct{}),
	}
	e.mu.Lock()
	k := e.keys[key]
	if k == nil {
		if len(e.keys) >= maxKeys {
			e.forgetIdle()
		}
		k = &keyState{}
		e.keys[key] = k
	}
	k.queue = append(k.queue, p)
	lead := !k.running
	k.running = true
	e.mu.Unlock()
	if lead {
		// The writer is its own goroutine, so that this caller can give up
		// on its context while a batch is being written.
		go e.run(key, kind, k)
	}
	select {
	case <-p.done:
		return p, p.err
	case <-ctx.Done():
	}
	select {
	case <-p.done: // finished as the context ended: the answer stands
		return p, p.err
	default:
	}
	if p.state.CompareAndSwap(stQueued, stCanceled) {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
	return nil, unknownOutcome("%v while the change was being written; it may have been applied", ctx.Err())
}

// forgetIdle drops the state of keys nobody is using. e.mu is held.
func (e *JetStream) forgetIdle() {
	for key, k := range e.keys {
		if !k.running {
			delete(e.keys, key)
		}
	}
}

// run writes the key's queued operations, a batch at a time, until the
// queue is empty.
func (e *JetStream) run(key string, kind byte, k *keyState) {
	for {
		e.mu.Lock()
		var batch []*pending
		for len(k.queue) > 0 && len(batch) < maxBatch {
			p := k.queue[0]
			k.queue[0] = nil
			k.queue = k.queue[1:]
			if p.state.CompareAndSwap(stQueued, stTaken) {
				batch = append(batch, p)
			}
		}
		if len(batch) == 0 {
			k.running = false
			k.queue = nil
			e.mu.Unlock()
			return
		}
		e.mu.Unlock()
		e.batch(key, kind, k, batch)
	}
}

// batch commits a batch of operations on one key with one compare-and-set
// write, retrying on a fresh read when the write is refused or its outcome
// is unknown. Only the writer touches k.rev and k.v.
func (e *JetStream) batch(key string, kind byte, k *keyState, ops []*pending) {
	rev, cur, fresh := k.rev, k.v, false
	if cur == nil {
		var err error
		if rev, cur, err = e.read(context.Background(), key, kind); err != nil {
			finishAll(ops, err)
			return
		}
		fresh = true
	}
	for try := 0; ; try++ {
		// Resolve the operations whose earlier write may have committed.
		live := ops[:0]
		for _, p := range ops {
			if p.amb {
				if ent, seq, ok := cur.find(p.id); ok {
					p.res, p.wrote, p.seq = ent.res, true, seq
					close(p.done)
					continue
				}
				if !cur.covers(p.ambBase) {
					p.finish(unknownOutcome("a write of key %s timed out and %d later writes hide whether it committed", key, window))
					continue
				}
			}
			live = append(live, p)
		}
		ops = live
		if len(ops) == 0 {
			return
		}
		if try == e.tries {
			for _, p := range ops {
				if p.amb {
					// Its first write may still be in flight.
					p.finish(unknownOutcome("key %s: a write timed out and %d attempts did not settle it", key, e.tries))
				} else {
					p.finish(busy("key %s: %d compare-and-set attempts lost to other writers; retry later", key, e.tries))
				}
			}
			return
		}

		next := cur.clone()
		writes := 0
		live = ops[:0]
		for _, p := range ops {
			res, wrote, err := p.apply(next)
			if err != nil {
				p.finish(err)
				continue
			}
			p.res, p.wrote = res, wrote
			if wrote {
				next.record(p.id, res)
				p.seq = next.seq
				writes++
			}
			live = append(live, p)
		}
		ops = live
		if writes == 0 {
			if fresh {
				for _, p := range ops {
					close(p.done)
				}
				return
			}
			// Decisions that change nothing are only as good as the read
			// they rest on: confirm them on a fresh one.
			if !e.reread(key, kind, k, ops, &rev, &cur, &fresh) {
				return
			}
			continue
		}
		if n := len(next.win); n > window {
			next.win = next.win[n-window:]
		}
		ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
		nrev, err := e.shard(key).kv.Update(ctx, key, next.encode(), rev)
		cancel()
		if err == nil {
			k.rev, k.v = nrev, next
			for _, p := range ops {
				close(p.done)
			}
			return
		}
		if refused(err) {
			e.refusals.Add(1)
			backoff(try)
		} else {
			e.ambiguous.Add(1)
			// The write may have committed, now or later (a replicated
			// stream may still be agreeing on it): only a read that finds
			// its op ids, or a window proving they are absent, settles it.
			for _, p := range ops {
				if p.wrote && !p.amb {
					p.amb, p.ambBase = true, cur.seq
				}
			}
		}
		k.rev, k.v = 0, nil
		if !e.reread(key, kind, k, ops, &rev, &cur, &fresh) {
			return
		}
	}
}

// reread replaces the batch's base with a fresh read. On failure it
// finishes the operations and reports false.
func (e *JetStream) reread(key string, kind byte, k *keyState, ops []*pending, rev *uint64, cur **value, fresh *bool) bool {
	r, v, err := e.read(context.Background(), key, kind)
	if err != nil {
		k.rev, k.v = 0, nil
		for _, p := range ops {
			if p.amb {
				p.finish(unknownOutcome("a write of key %s failed and reading it back failed too: %v", key, err))
			} else {
				p.finish(err)
			}
		}
		return false
	}
	*rev, *cur, *fresh = r, v, true
	k.rev, k.v = r, v
	return true
}

// backoff sleeps a random time that grows with the attempt: 0-100µs at
// first, at most 0-10ms.
func backoff(try int) {
	d := 100 * time.Microsecond << min(try, 7)
	time.Sleep(time.Duration(rand.Int64N(int64(min(d, 10*time.Millisecond)))))
}

func (p *pending) finish(err error) {
	p.err = err
	close(p.done)
}

func finishAll(ops []*pending, err error) {
	for _, p := range ops {
		p.finish(err)
	}
}

// refused reports whether a write was rejected by the compare-and-set
// check: it did not commit and never will. Every such rejection is answered
// by reading the key again, never by deciding from the rejection itself: a
// replicated stream also rejects (10164) because of another write that is
// still in flight and may yet fail.
func refused(err error) bool {
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return true
	}
	var api *jetstream.APIError
	if errors.As(err, &api) {
		return api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
	}
	// No stream answered: the write reached nothing that could store it.
	return errors.Is(err, jetstream.ErrNoStreamResponse)
}

// shard returns the bucket of a key (FNV-1a).
func (e *JetStream) shard(key string) *shard {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h = (h ^ uint32(key[i])) * 16777619
	}
	return &e.shards[h%uint32(len(e.shards))]
}

// read returns a key's current revision and value (an empty value with
// revision 0, or the revision of a delete marker, when there is none).
func (e *JetStream) read(ctx context.Context, key string, kind byte) (uint64, *value, error) {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	sh := e.shard(key)
	m, err := sh.stream.GetLastMsgForSubject(ctx, sh.subject+key)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, &value{kind: kind}, nil
	}
	if err != nil {
		return 0, nil, fmt.Errorf("%w: reading %s from JetStream: %v", ErrUnavailable, key, err)
	}
	if op := m.Header.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
		// Deleted by hand (we never delete): start afresh after the marker.
		return m.Sequence, &value{kind: kind}, nil
	}
	v, err := decodeValue(kind, m.Data)
	if err != nil {
		return 0, nil, fmt.Errorf("spot: key %s at revision %d: %w", key, m.Sequence, err)
	}
	return m.Sequence, v, nil
}

var _ Engine = (*JetStream)(nil)
