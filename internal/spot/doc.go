// Package spot is the single point of truth at the central PoP: the few
// operations that cannot be distributed (claim the username "joe", sell the
// last item, update a document only if nobody else did), run linearizably
// at the centre with one round trip from any edge PoP.
//
// # Pieces
//
// Engine is the interface: claims, bounded stock, conditional document
// updates. JetStream implements it at the centre; NewClient implements it
// at the edge by sending each call to Serve over NATS request/reply.
// StartServer runs the embedded NATS server the engine needs: JetStream on,
// files in the PoP's data directory, an fsync on every write.
//
// # The engine
//
// Every key (a claim, a counter, a document) is one entry of a JetStream
// key-value bucket; keys are spread over Config.Shards buckets by hash,
// because JetStream fsyncs one stream's writes one after another but
// different streams' writes in parallel. A change is a compare-and-set: read
// the entry and its revision, compute the new value, write it only if the
// revision is unchanged (KV Update). A write that commits is the operation's
// linearization point. A decision that writes nothing ("taken", "not enough
// stock", "conflict") is taken on a fresh read of committed state, never on
// a cached value or on a refused write: a refusal (API error 10071, or 10164
// on replicated streams, which can be caused by another write that is still
// in flight and may yet fail) only ever means "read again and retry".
//
// Inside one engine the operations on a key queue up and one writer at a
// time commits up to 16 of them in one write (group commit): a hot counter
// costs one fsync per batch. The writer starts from the value it last wrote
// when it has one, so an uncontended change is one write and no read; if
// another engine (another central server) changed the key meanwhile the
// write is refused and the writer reads again, backing off at random.
//
// # Idempotency
//
// Each value carries its write count and a window of the last 32 writes'
// operation ids (engine incarnation + sequence) with their results, updated
// in the same compare-and-set as the data. When a write's outcome is unknown
// (a timeout, a lost connection, a leader change), the engine does not guess
// and does not blindly retry: it reads the key back. If its op id is in the
// window, the write committed and the recorded result is returned. If the
// window covers every write since the failed one and the id is absent, the
// write did not commit and can no longer commit (the key's revision moved
// on, or the retry races it under the same expected revision, where at most
// one of the two can win), so the operation is retried. If more than 32
// writes hide it, the engine returns ErrUnknownOutcome rather than risk
// applying it twice.
//
// Between edge and centre the client never retries: a request that got no
// reply returns an error matching ErrUnknownOutcome (and ErrUnavailable),
// and the caller decides after reading the state. A reply can be lost while
// the request is still applied, and a request held by a slow link can be
// applied after the client gave up; making the client retry safely would
// need the centre to remember client op ids for as long as any copy of a
// request can still arrive, which no bounded window guarantees. Claim and
// Release are idempotent by owner and UpdateDoc is conditional, so callers
// can retry those after reading; Take and Restock are the ones to check.
// When the client knows nothing was sent (not connected, no server serves
// the prefix) or the centre refused the work, the error matches
// ErrUnavailable only and the operation had no effect.
//
// # Wire format
//
// See wire.go: a version byte, a time budget, uvarint-prefixed fields; the
// reply is a version byte, a status and fields or a message. Requests are
// decoded with bounds on every length and count; a malformed one gets an
// error reply.
package spot
