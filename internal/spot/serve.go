package spot

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// QueueGroup is the NATS queue group of Serve: each request goes to one of
// the central servers serving the prefix.
const QueueGroup = "verge-spot"

// maxInFlight bounds the requests one Serve handles at once; past it the
// centre answers "busy" at once instead of queueing without bound.
const maxInFlight = 1024

// maxBudget caps the time the centre spends on one request.
const maxBudget = 30 * time.Second

// Serve answers SPOT requests sent to <prefix>.<op> with e until stop is
// called. stop unsubscribes and waits for the requests in progress.
func Serve(nc *nats.Conn, prefix string, e Engine) (stop func(), err error) {
	if prefix == "" || strings.ContainsAny(prefix, "*> \t\r\n") {
		return nil, fmt.Errorf("spot: subject prefix %q must be a literal subject", prefix)
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		stopped bool
	)
	sem := make(chan struct{}, maxInFlight)
	sub, err := nc.QueueSubscribe(prefix+".*", QueueGroup, func(m *nats.Msg) {
		if m.Reply == "" {
			return // nobody to answer: a stray publish, not a request
		}
		select {
		case sem <- struct{}{}:
		default:
			reply(m, errReply(stBusy, "the central PoP has too many requests in progress; retry later"))
			return
		}
		// A callback may still run while stop unsubscribes: it must not
		// start work stop no longer waits for.
		mu.Lock()
		if stopped {
			mu.Unlock()
			<-sem
			return
		}
		wg.Add(1)
		mu.Unlock()
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			reply(m, handle(e, m.Subject[len(prefix)+1:], m.Data))
		}()
	})
	if err != nil {
		return nil, fmt.Errorf("spot: subscribe %s.*: %w", prefix, err)
	}
	// A subscription's pending limits drop messages (and the clients then
	// see unknown outcomes) long before memory is at risk; lift the count
	// limit, keep the byte limit.
	_ = sub.SetPendingLimits(-1, 64<<20)
	if err := nc.Flush(); err != nil {
		sub.Unsubscribe()
		return nil, fmt.Errorf("spot: subscribe %s.*: %w", prefix, err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			sub.Unsubscribe()
			mu.Lock()
			stopped = true
			mu.Unlock()
			wg.Wait()
		})
	}, nil
}

func reply(m *nats.Msg, b []byte) {
	// A lost reply is the client's timeout; nothing to do here.
	_ = m.Respond(b)
}

func errReply(status byte, msg string) []byte {
	if len(msg) > maxMessage {
		msg = msg[:maxMessage]
	}
	return appendStr([]byte{wireVersion, status}, msg)
}

// handle decodes, runs and encodes one request. It never panics on input:
// decoding is bounds-checked and the engine validates every name.
func handle(e Engine, op string, data []byte) []byte {
	q, err := decodeRequest(op, data)
	if err != nil {
		return errReply(stInvalid, err.Error())
	}
	budget := time.Duration(q.budget) * time.Millisecond
	if budget <= 0 || budget > maxBudget {
		budget = maxBudget
	}
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	b := []byte{wireVersion, stOK}
	switch q.op {
	case opClaim:
		var c Claim
		if c, err = e.Claim(ctx, q.app, q.ns, q.key, q.owner); err == nil {
			b = appendStr(appendBool(b, c.Claimed), c.Owner)
		}
	case opRelease:
		var ok bool
		if ok, err = e.Release(ctx, q.app, q.ns, q.key, q.owner); err == nil {
			b = appendBool(b, ok)
		}
	case opTake:
		var t Take
		if t, err = e.Take(ctx, q.app, q.key, q.n); err == nil {
			b = binary.AppendVarint(appendBool(b, t.OK), t.Remaining)
		}
	case opRestock:
		var n int64
		if n, err = e.Restock(ctx, q.app, q.key, q.n); err == nil {
			b = binary.AppendVarint(b, n)
		}
	case opTakeOnce, opRestockOnce, opCounterSeq:
		o, ok := e.(Once)
		if !ok {
			return errReply(stInvalid, fmt.Sprintf("unknown operation %q: this centre's engine does not apply changes once by id", q.op))
		}
		var n int64
		var seq uint64
		switch q.op {
		case opTakeOnce:
			var t Take
			if t, err = o.TakeOnce(ctx, q.app, q.key, q.n, q.id); err == nil {
				b = binary.AppendUvarint(binary.AppendVarint(appendBool(b, t.OK), t.Remaining), t.Seq)
			}
		case opRestockOnce:
			if n, seq, err = o.RestockOnce(ctx, q.app, q.key, q.n, q.id); err == nil {
				b = binary.AppendUvarint(binary.AppendVarint(b, n), seq)
			}
		default:
			if n, seq, err = o.CounterSeq(ctx, q.app, q.key); err == nil {
				b = binary.AppendUvarint(binary.AppendVarint(b, n), seq)
			}
		}
	case opCounter:
		var n int64
		if n, err = e.Counter(ctx, q.app, q.key); err == nil {
			b = binary.AppendVarint(b, n)
		}
	case opGetDoc:
		var doc []byte
		var rev uint64
		if doc, rev, err = e.GetDoc(ctx, q.app, q.key); err == nil {
			b = append(binary.AppendUvarint(b, rev), doc...)
		}
	case opUpdateDoc:
		var doc []byte
		var rev uint64
		if doc, rev, err = e.UpdateDoc(ctx, q.app, q.key, q.rev, q.ops); err == nil {
			b = append(binary.AppendUvarint(b, rev), doc...)
		}
	}
	if err != nil {
		return encodeErr(err)
	}
	return b
}

func encodeErr(err error) []byte {
	var ce *ConflictError
	switch {
	case errors.As(err, &ce):
		return binary.AppendUvarint([]byte{wireVersion, stConflict}, ce.Current)
	case errors.Is(err, ErrInvalid):
		return errReply(stInvalid, err.Error())
	case errors.Is(err, ErrForgotten):
		return errReply(stForgotten, err.Error())
	case errors.Is(err, ErrUnknownOutcome):
		return errReply(stUnknown, err.Error())
	case errors.Is(err, ErrBusy):
		return errReply(stBusy, err.Error())
	case errors.Is(err, ErrUnavailable):
		return errReply(stUnavailable, err.Error())
	}
	return errReply(stError, err.Error())
}
