// Package stock is the hybrid threshold of bounded stocks: while a stock is
// plentiful each PoP sells from units it holds in escrow, with no WAN round
// trip; when it runs low every sale goes to the central PoP.
//
// The centre's stock (a SPOT counter, package spot) is the bank. A PoP
// takes a grant of units from it into its own escrow (one linearizable Take
// at the centre), sells from the escrow with a durable local write, and
// gives unsold units back (a Restock) once the centre's stock is at or below
// the threshold. Every unit is therefore, at any instant, in exactly one of:
// the centre's counter, one PoP's escrow, sold, or (after a crash between
// the two halves of a grant or a return) lost — never in two places, so a
// stock is never oversold, whatever the interleaving, partition or crash.
// Losing units to a crash undersells by at most one grant per PoP per crash.
//
// Stocks are declared in the manifest by name or by pattern ("stock-*": one
// declaration for a whole catalogue). A PoP creates the escrow of a stock
// declared by a pattern lazily, on its first take there, and finds those
// it holds in its store at start.
//
// Stock is itself a spot.Engine: it decorates the centre's engine (or the
// client of it at an edge PoP), taking declared stocks through escrows and
// passing everything else through, so that a PoP's functions and its admin
// API share one engine.
//
// Why not a CRDT bounded counter (Balegas et al., 2015): it moves rights
// between replicas without a centre, which we do not need — the centre
// exists, and going through it makes every grant and return a single
// linearizable step that the porcupine-checked SPOT engine already provides.
package stock

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/crdt"
	"github.com/verge-edge/verge/internal/spot"
	"github.com/verge-edge/verge/internal/store"
)

// escrowApp is the store namespace of escrows; app names cannot start with
// '_', so it never collides with an app's documents.
const (
	escrowApp  = "_verge"
	escrowColl = "escrow"
)

// Options configures a Stock.
type Options struct {
	Central spot.Engine  // the centre's engine (a client at an edge PoP)
	Store   *store.Store // this PoP's store, for its escrows
	Apps    []*verge.Manifest
	// AtCentre: this PoP is the centre. It holds no escrow (a take there
	// costs no WAN round trip anyway), so no units sit where no buyer is.
	AtCentre bool
	// Rebalance is how often escrows are refilled or returned in the
	// background (default 200 ms).
	Rebalance time.Duration
	Logger    *slog.Logger
}

// Stock takes from bounded stocks, locally while they are plentiful.
type Stock struct {
	opts Options
	apps map[string]*verge.Manifest // by name: their [[counter]] declarations
	// mu guards escrows: one per declared stock this PoP has an escrow
	// for. A stock declared by its exact name has one from the start; one
	// declared by a pattern ("stock-*") gets one lazily, on its first take
	// here (or at start, if the store holds units of it).
	mu      sync.Mutex
	escrows map[[2]string]*escrow
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	bg      sync.WaitGroup // background refills
	// client and seq make the ids of the changes this PoP sends to the
	// centre (spot.OpID): client is drawn at random at every start, so
	// ids never repeat, and pending changes keep the id they were sent with.
	client uint64
	seq    atomic.Uint64
}

// escrow is one stock's units at this PoP. mu guards the fields and is never
// held across I/O: the store's write of the escrow reads units under mu from
// inside the store's per-document lock, so every durable value is the
// in-memory value at some instant, in order. A take is acknowledged only
// after a write staged after its decrement is durable, so after a crash the
// escrow never holds a unit already sold (it may have lost some: undersold).
type escrow struct {
	c       verge.Counter // its declaration (a pattern's, for a matching stock)
	mu      sync.Mutex
	units   int64  // held here
	central int64  // the centre's stock when last seen
	wseq    uint64 // the centre's write sequence of the stock when last seen
	// pend are the changes sent (or about to be) to the centre without an
	// answer yet, stored with units (see change).
	pend      []*change
	seen      bool // central is known
	refilling bool // a grant is being taken from the centre
	// refillDone is closed when the refill in progress ends; refillOK
	// says whether it brought a grant.
	refillDone chan struct{}
	refillOK   bool
	// returnDone is closed when the return to the centre in progress
	// ends (nil: none). A take that finds the escrow empty waits for it
	// before asking the centre, which would otherwise answer
	// "insufficient" while this PoP's own units are on their way there.
	returnDone chan struct{}
	// grant adapts to demand: it doubles (up to maxGrowth × the declared
	// grant) each time takes ran the escrow dry before a background refill
	// arrived, since an escrow sustains at most grant / round trip takes a
	// second; low (half of it) is where a background refill starts.
	grant, low int64
	granted    bool // a grant has arrived since start
	// nextPoll is when the rebalancer next reads the centre's stock
	// (guarded by Stock.mu, not e.mu: only the rebalancer uses it).
	nextPoll time.Time
}

const maxGrowth = 64

// The rebalancer reads the centre's stock of each escrow to give the escrow
// back once the stock is low. A PoP may hold escrows of thousands of stocks
// (a pattern per product), so the reads are spread out: an escrow whose
// stock was last seen within nearGrants grants of its threshold is read
// every Rebalance period; one further away every farPoll, or less often
// when there are many, so that they cost at most pollRate reads a second
// in all; a few at a time (pollConcurrency), since each read is a round
// trip to the centre. Refills do not wait for the rebalancer: a take that
// leaves an escrow low starts one at once.
const (
	nearGrants      = 8
	pollRate        = 5
	farPoll         = 5 * time.Second
	pollConcurrency = 8
)

// New loads the escrows from the store and starts rebalancing.
func New(opts Options) (*Stock, error) {
	if opts.Rebalance <= 0 {
		opts.Rebalance = 200 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Stock{opts: opts, apps: map[string]*verge.Manifest{}, escrows: map[[2]string]*escrow{},
		stop: make(chan struct{}), done: make(chan struct{})}
	var b [8]byte
	if _, err := crand.Read(b[:]); err != nil {
		return nil, err
	}
	s.client = binary.LittleEndian.Uint64(b[:]) | 1 // never 0
	for _, m := range opts.Apps {
		if err := s.SetApp(m); err != nil {
			return nil, err
		}
	}
	// Units escrowed under a pattern before a restart: find them now, so
	// that they go back to the centre when the stock runs low even if
	// nobody buys here again.
	if err := s.loadPatternEscrows(); err != nil {
		return nil, err
	}
	go s.rebalanceLoop()
	return s, nil
}

// SetApp declares m's counters: from now on takes of them at this PoP go
// through escrows (none at the centre). A declaration a later version of the
// app drops keeps its escrow: it goes on being rebalanced, so units held
// here go back to the centre rather than being stranded.
func (s *Stock) SetApp(m *verge.Manifest) error {
	if s.opts.AtCentre {
		return nil
	}
	s.mu.Lock()
	s.apps[m.Name] = m
	s.mu.Unlock()
	patterns := false
	for _, c := range m.Counters {
		if c.Pattern() {
			patterns = true
			continue
		}
		if _, err := s.escrowFor([2]string{m.Name, c.Name}, c); err != nil {
			return err
		}
	}
	if patterns {
		// A PoP declares its apps after New: the units (and changes in
		// flight) its store holds under a pattern are found now, not at
		// the next take of each stock here, which may never come; until
		// then they were neither counted nor given back.
		return s.loadPatternEscrows()
	}
	return nil
}

// declared returns the declaration of a stock this PoP holds escrows of.
func (s *Stock) declared(app, counter string) (verge.Counter, bool) {
	s.mu.Lock()
	m := s.apps[app]
	s.mu.Unlock()
	if m == nil {
		return verge.Counter{}, false
	}
	return m.Counter(counter)
}

// escrowFor returns the escrow of k, loading it from the store the first
// time.
func (s *Stock) escrowFor(k [2]string, c verge.Counter) (*escrow, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.escrows[k]; e != nil {
		return e, nil
	}
	units, pend, err := s.load(k)
	if err != nil {
		return nil, err
	}
	e := &escrow{c: c, units: units, pend: pend, grant: c.Grant, low: (c.Grant + 1) / 2}
	s.escrows[k] = e
	return e, nil
}

// loadPatternEscrows creates the escrows of stocks declared by a pattern
// that the store holds.
func (s *Stock) loadPatternEscrows() error {
	for after := ""; ; {
		keys, next, err := s.opts.Store.List(escrowApp, escrowColl, after, store.MaxListLimit)
		if err != nil {
			return err
		}
		for _, key := range keys {
			app, counter, ok := strings.Cut(key, "\x00")
			if !ok {
				continue
			}
			if c, ok := s.declared(app, counter); ok && c.Pattern() {
				if _, err := s.escrowFor([2]string{app, counter}, c); err != nil {
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

// escrow returns the escrow of a stock if there is one (no I/O).
func (s *Stock) escrow(k [2]string) *escrow {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.escrows[k]
}

// Close stops rebalancing and background refills. Escrowed units stay in
// the store for the next start.
func (s *Stock) Close() {
	s.once.Do(func() { close(s.stop) })
	<-s.done
	s.bg.Wait()
}

func escrowKey(k [2]string) store.Key {
	return store.Key{App: escrowApp, Collection: escrowColl, Doc: k[0] + "\x00" + k[1]}
}

func (s *Stock) load(k [2]string) (int64, []*change, error) {
	b, ok, err := s.opts.Store.Get(escrowKey(k))
	if err != nil || !ok {
		return 0, nil, err
	}
	units, pend, err := decodeEscrow(b)
	if err != nil {
		return 0, nil, fmt.Errorf("escrow of %s/%s: %w", k[0], k[1], err)
	}
	return units, pend, nil
}

// persist durably records the escrow's current units and pending changes.
// e.mu must not be held.
func (s *Stock) persist(ctx context.Context, k [2]string, e *escrow) error {
	_, err := s.opts.Store.Update(ctx, escrowKey(k), func([]byte) ([]byte, []byte, error) {
		e.mu.Lock()
		v := encodeEscrow(e.units, e.pend)
		e.mu.Unlock()
		return v, v, nil
	})
	return err
}

func (e *escrow) unitsNow() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.units
}

// counter reads the centre's stock, and its write sequence when the
// engine has one (the base of the escrow's next change).
func (s *Stock) counter(ctx context.Context, k [2]string, e *escrow) (int64, error) {
	o, ok := s.onceEngine()
	if !ok {
		return s.opts.Central.Counter(ctx, k[0], k[1])
	}
	rem, seq, err := o.CounterSeq(ctx, k[0], k[1])
	if err == nil {
		e.mu.Lock()
		e.wseq = max(e.wseq, seq)
		e.mu.Unlock()
	}
	return rem, err
}

// Escrowed returns the units this PoP holds of a stock.
func (s *Stock) Escrowed(app, counter string) int64 {
	e := s.escrow([2]string{app, counter})
	if e == nil {
		return 0
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.units
}

// EscrowUnits is one stock's escrow at this PoP.
type EscrowUnits struct {
	App, Counter string
	Units        int64
}

// Escrows returns every stock's escrow at this PoP.
func (s *Stock) Escrows() []EscrowUnits {
	s.mu.Lock()
	es := make(map[[2]string]*escrow, len(s.escrows))
	for k, e := range s.escrows {
		es[k] = e
	}
	s.mu.Unlock()
	out := make([]EscrowUnits, 0, len(es))
	for k, e := range es {
		e.mu.Lock()
		out = append(out, EscrowUnits{App: k[0], Counter: k[1], Units: e.units})
		e.mu.Unlock()
	}
	return out
}

var _ spot.Engine = (*Stock)(nil)

// Take takes n units: from this PoP's escrow when it holds enough (Local:
// a durable local write, no WAN), else from the centre, first refilling the
// escrow while the centre is above the threshold. Remaining is the centre's
// stock when last seen plus this PoP's escrow: exact at the centre, an
// estimate elsewhere.
func (s *Stock) Take(ctx context.Context, app, counter string, n int64) (spot.Take, error) {
	if n <= 0 {
		return spot.Take{}, fmt.Errorf("%w: take %d: n must be > 0", spot.ErrInvalid, n)
	}
	k := [2]string{app, counter}
	c, declared := s.declared(app, counter)
	if !declared {
		return s.opts.Central.Take(ctx, app, counter, n)
	}
	e, err := s.escrowFor(k, c)
	if err != nil {
		return spot.Take{}, err
	}
	if t, ok, err := s.takeFirst(ctx, k, c, e, n); ok {
		return t, err
	}
	for attempt := range 4 { // bounded: each retry follows a grant
		if t, ok, err := s.takeLocal(ctx, k, e, n); ok || err != nil {
			t.Local = attempt == 0 // after a grant: waited on the WAN
			return t, err
		}
		if !s.refill(ctx, k, c, e, n) {
			break
		}
	}
	// Low stock: give back what this PoP holds, then sell at the centre.
	if err := s.giveBack(ctx, k, e); err != nil {
		return spot.Take{}, err
	}
	t, err := s.centralTake(ctx, k, e, n)
	if err == nil {
		e.mu.Lock()
		e.central, e.seen = t.Remaining, true
		e.mu.Unlock()
	}
	return t, err
}

// takeFirst serves a take this PoP cannot serve from its escrow while it
// does not know the centre's stock (the first take of a stock here, or the
// first since a restart): it takes the n units at the centre, one round
// trip, which is what a take costs when the stock is low, and learns the
// centre's stock from the answer; when that is plentiful, the escrow is
// filled in the background for the next takes. Refilling first would cost
// two round trips (a read of the centre's stock to stay above the
// threshold, then the grant) before this take is served. ok is false when
// the take is not this case.
func (s *Stock) takeFirst(ctx context.Context, k [2]string, c verge.Counter, e *escrow, n int64) (t spot.Take, ok bool, err error) {
	e.mu.Lock()
	first := !e.seen && e.units < n && !e.refilling && e.returnDone == nil
	e.mu.Unlock()
	if !first {
		return t, false, nil
	}
	t, err = s.centralTake(ctx, k, e, n)
	if err != nil {
		return t, true, err
	}
	e.mu.Lock()
	e.central, e.seen = t.Remaining, true
	plenty := t.Remaining-c.Threshold >= e.grant
	e.mu.Unlock()
	if plenty {
		s.refillSoon(k, e)
	}
	return t, true, nil
}

// takeLocal takes n from the escrow if it holds them, durably.
func (s *Stock) takeLocal(ctx context.Context, k [2]string, e *escrow, n int64) (spot.Take, bool, error) {
	e.mu.Lock()
	if e.units < n {
		e.mu.Unlock()
		return spot.Take{}, false, nil
	}
	e.units -= n
	rem := e.central + e.units
	low := e.units < e.low && !e.refilling
	e.mu.Unlock()
	if low {
		s.refillSoon(k, e)
	}
	if err := s.persist(ctx, k, e); err != nil {
		// Not acknowledged; the units stay out of the escrow (undersold).
		return spot.Take{}, false, err
	}
	return spot.Take{OK: true, Remaining: rem}, true, nil
}

// refillSoon refills the escrow in the background, off the path of the
// take that left it low.
func (s *Stock) refillSoon(k [2]string, e *escrow) {
	select {
	case <-s.stop:
		return
	default:
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		go func() {
			select {
			case <-s.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		s.refill(ctx, k, e.c, e, 0)
	}()
}

// refill takes a grant from the centre into the escrow if the centre is (as
// last seen, or now) above the threshold by at least the grant, and reports
// whether it did. Only one refill of an escrow runs at a time: a caller
// that finds one in progress waits for it and shares its outcome, and takes
// from the escrow go on meanwhile.
func (s *Stock) refill(ctx context.Context, k [2]string, c verge.Counter, e *escrow, need int64) (ok bool) {
	e.mu.Lock()
	if e.refilling {
		done := e.refillDone
		e.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return false
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.refillOK
	}
	if need > 0 && e.granted && e.grant < maxGrowth*c.Grant {
		// A take is waiting: the escrow ran dry before it was refilled.
		e.grant = min(2*e.grant, maxGrowth*c.Grant)
		e.low = (e.grant + 1) / 2
	}
	grant := max(e.grant, need-e.units)
	central, seen := e.central, e.seen
	e.refilling, e.refillDone = true, make(chan struct{})
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.refilling, e.refillOK = false, ok
		close(e.refillDone)
		e.mu.Unlock()
	}()
	if !seen {
		rem, err := s.counter(ctx, k, e)
		if err != nil {
			return false
		}
		central = rem
	}
	// Never take the centre below the threshold: a smaller grant if that
	// still covers the need.
	grant = min(grant, central-c.Threshold)
	if grant <= 0 || grant < need-e.unitsNow() {
		e.mu.Lock()
		e.central, e.seen = central, true
		e.mu.Unlock()
		return false
	}
	if _, ok := s.onceEngine(); ok {
		// Recorded before it is sent, resent until answered: a grant the
		// centre gave is credited here exactly once, even across a lost
		// answer or a crash of either side.
		ch := &change{kind: chTake, n: grant}
		if err := s.begin(ctx, k, e, ch, nil); err != nil {
			return false
		}
		t, oc, err := s.exchange(ctx, k, e, ch)
		return oc == applied && err == nil && t.OK
	}
	// An engine without ids: the grant leaves the centre before it is
	// credited here, and a crash in between loses it (undersold).
	t, err := s.opts.Central.Take(ctx, k[0], k[1], grant)
	if err != nil {
		return false
	}
	e.mu.Lock()
	e.central, e.seen = t.Remaining, true
	if t.OK {
		e.units += grant
		e.granted = true
	}
	e.mu.Unlock()
	if !t.OK {
		return false
	}
	if err := s.persist(ctx, k, e); err != nil {
		s.opts.Logger.Error("stock: recording a grant failed; it is used from memory and lost if the PoP crashes (undersold)", "app", k[0], "counter", k[1], "units", grant, "err", err)
	}
	return true
}

// giveBack returns the escrow to the centre. The escrow is emptied durably
// first, so a crash in between loses units rather than duplicating them.
func (s *Stock) giveBack(ctx context.Context, k [2]string, e *escrow) error {
	e.mu.Lock()
	for e.returnDone != nil { // bounded by ctx: one return at a time
		done := e.returnDone
		e.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
		e.mu.Lock()
	}
	units := e.units
	e.units = 0
	if units == 0 {
		e.mu.Unlock()
		return nil
	}
	done := make(chan struct{})
	e.returnDone = done
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.returnDone = nil
		e.mu.Unlock()
		close(done)
	}()
	restore := func() {
		e.mu.Lock()
		e.units += units
		e.mu.Unlock()
	}
	if _, ok := s.onceEngine(); ok {
		// The escrow is emptied in the same durable write that records
		// the return, which is resent until the centre answers it.
		c := &change{kind: chRestock, n: units}
		if err := s.begin(ctx, k, e, c, nil); err != nil {
			restore()
			return err
		}
		_, oc, err := s.exchange(ctx, k, e, c)
		if oc == notApplied {
			return err // settle put the units back
		}
		return nil // returned, or pending and returned later
	}
	if err := s.persist(ctx, k, e); err != nil {
		restore() // never durably emptied: still here
		return err
	}
	rem, err := s.opts.Central.Restock(ctx, k[0], k[1], units)
	if err != nil {
		if errors.Is(err, spot.ErrUnknownOutcome) {
			return nil // returned or lost; never doubled
		}
		restore() // not applied: keep the units here
		if err2 := s.persist(ctx, k, e); err2 != nil {
			s.opts.Logger.Error("stock: restoring an escrow failed; its units are lost if the PoP crashes (undersold)", "units", units, "err", err2)
		}
		return err
	}
	e.mu.Lock()
	e.central, e.seen = rem, true
	e.mu.Unlock()
	return nil
}

// Restock adds n units at the centre. For a stock this PoP holds an escrow
// of, the restock is recorded and resent until answered: an error matching
// spot.ErrUnknownOutcome then means it will be applied, once.
func (s *Stock) Restock(ctx context.Context, app, counter string, n int64) (int64, error) {
	k := [2]string{app, counter}
	if _, ok := s.onceEngine(); ok && n > 0 {
		if c, declared := s.declared(app, counter); declared {
			e, err := s.escrowFor(k, c)
			if err != nil {
				return 0, err
			}
			ch := &change{kind: chRestock, n: n, caller: true}
			if err := s.begin(ctx, k, e, ch, nil); err != nil {
				return 0, err
			}
			t, oc, err := s.exchange(ctx, k, e, ch)
			if oc == unsettled {
				return 0, fmt.Errorf("%w: %w: no answer from the central PoP yet (%v); this PoP resends the restock until it is applied, once", spot.ErrUnknownOutcome, spot.ErrUnavailable, err)
			}
			return t.Remaining, err
		}
	}
	rem, err := s.opts.Central.Restock(ctx, app, counter, n)
	if e := s.escrow([2]string{app, counter}); e != nil && err == nil {
		e.mu.Lock()
		e.central, e.seen = rem, true
		e.mu.Unlock()
	}
	return rem, err
}

// Counter returns the centre's stock (units in PoPs' escrows not included).
func (s *Stock) Counter(ctx context.Context, app, counter string) (int64, error) {
	return s.opts.Central.Counter(ctx, app, counter)
}

// Claim, Release, GetDoc and UpdateDoc are the centre's.
func (s *Stock) Claim(ctx context.Context, app, ns, key, owner string) (spot.Claim, error) {
	return s.opts.Central.Claim(ctx, app, ns, key, owner)
}

func (s *Stock) Release(ctx context.Context, app, ns, key, owner string) (bool, error) {
	return s.opts.Central.Release(ctx, app, ns, key, owner)
}

func (s *Stock) GetDoc(ctx context.Context, app, key string) ([]byte, uint64, error) {
	return s.opts.Central.GetDoc(ctx, app, key)
}

func (s *Stock) UpdateDoc(ctx context.Context, app, key string, rev uint64, ops []crdt.Op) ([]byte, uint64, error) {
	return s.opts.Central.UpdateDoc(ctx, app, key, rev, ops)
}

func (s *Stock) rebalanceLoop() {
	defer close(s.done)
	t := time.NewTicker(s.opts.Rebalance)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.rebalanceDue(time.Now())
	}
}

// rebalanceDue rebalances the escrows whose poll is due, pollConcurrency at
// a time, and schedules their next poll.
func (s *Stock) rebalanceDue(now time.Time) {
	s.mu.Lock()
	var due [][2]string
	for k, e := range s.escrows {
		if !e.nextPoll.After(now) {
			due = append(due, k)
		}
	}
	// Far stocks share pollRate reads a second: with n escrows, each is
	// read every n/pollRate seconds, and never more often than farPoll.
	far := max(farPoll, time.Duration(len(s.escrows))*time.Second/pollRate)
	s.mu.Unlock()
	sem := make(chan struct{}, pollConcurrency)
	var wg sync.WaitGroup
	for _, k := range due {
		select {
		case <-s.stop:
		case sem <- struct{}{}:
			wg.Go(func() {
				defer func() { <-sem }()
				e := s.escrow(k)
				next := s.opts.Rebalance
				if !s.rebalance(k, e) {
					next = far
				}
				s.mu.Lock()
				e.nextPoll = time.Now().Add(next)
				s.mu.Unlock()
			})
		}
	}
	wg.Wait()
}

// rebalance refreshes what the centre holds, refills an escrow running low
// while the stock is plentiful, and gives it back once it is not. It
// reports whether the stock is near its threshold (or unknown), to be
// watched closely.
func (s *Stock) rebalance(k [2]string, e *escrow) (near bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.settlePending(ctx, k, e)
	rem, err := s.counter(ctx, k, e)
	if err != nil {
		return true
	}
	c := e.c
	e.mu.Lock()
	e.central, e.seen = rem, true
	units, grant, low := e.units, e.grant, e.low
	e.mu.Unlock()
	switch {
	case rem <= c.Threshold:
		if err := s.giveBack(ctx, k, e); err != nil && !errors.Is(err, spot.ErrUnavailable) {
			s.opts.Logger.Warn("stock: returning an escrow", "app", k[0], "counter", k[1], "err", err)
		}
	case units < low:
		s.refill(ctx, k, c, e, 0)
	}
	return rem-c.Threshold <= nearGrants*grant
}
