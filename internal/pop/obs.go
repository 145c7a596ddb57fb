package pop

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/verge-edge/verge/crdt"
	"github.com/verge-edge/verge/internal/obs"
	"github.com/verge-edge/verge/internal/spot"
)

// collectMetrics registers what the PoP's components count themselves, read
// when /metrics is scraped.
func (p *PoP) collectMetrics() {
	m, self := p.metrics, p.opts.Self
	links := func(value func(peer string, st linkFigures) float64) func() []obs.Gauge {
		return func() []obs.Gauge {
			if p.Repl == nil {
				return nil
			}
			var out []obs.Gauge
			for peer, st := range p.Repl.Links() {
				out = append(out, obs.Gauge{Labels: []string{peer}, Value: value(peer, linkFigures{st.Batches, st.Items, st.Bytes, st.Unacked, st.Known, st.Lag})})
			}
			return out
		}
	}
	m.Collect("verge_replication_batches_total", "Replication batches a peer acknowledged.", obs.CounterValue, self, []string{"peer"},
		links(func(_ string, s linkFigures) float64 { return float64(s.batches) }))
	m.Collect("verge_replication_items_total", "Documents (deltas or states) in those batches.", obs.CounterValue, self, []string{"peer"},
		links(func(_ string, s linkFigures) float64 { return float64(s.items) }))
	m.Collect("verge_replication_bytes_total", "Bytes of those batches.", obs.CounterValue, self, []string{"peer"},
		links(func(_ string, s linkFigures) float64 { return float64(s.bytes) }))
	m.Collect("verge_replication_unacked_entries", "Entries of this PoP's log a peer has not acknowledged (-1: not known yet).", obs.GaugeValue, self, []string{"peer"},
		links(func(_ string, s linkFigures) float64 {
			if !s.known {
				return -1
			}
			return float64(s.unacked)
		}))
	m.Collect("verge_replication_lag_seconds", "How long a peer's acknowledgements have not caught up with this PoP's log (0: up to date).", obs.GaugeValue, self, []string{"peer"},
		links(func(_ string, s linkFigures) float64 { return s.lag.Seconds() }))
	m.Collect("verge_antientropy_repaired_documents_total", "Documents anti-entropy merged at this PoP.", obs.CounterValue, self, nil,
		func() []obs.Gauge {
			if p.Repl == nil {
				return nil
			}
			return []obs.Gauge{{Value: float64(p.Repl.Repaired())}}
		})
	m.Collect("verge_store_commits_total", "Groups of writes the store committed (one fsync each).", obs.CounterValue, self, nil,
		func() []obs.Gauge {
			if p.Store == nil {
				return nil
			}
			return []obs.Gauge{{Value: float64(p.Store.Stats().Commits)}}
		})
	m.Collect("verge_store_writes_total", "Writes in those groups.", obs.CounterValue, self, nil,
		func() []obs.Gauge {
			if p.Store == nil {
				return nil
			}
			return []obs.Gauge{{Value: float64(p.Store.Stats().Writes)}}
		})
	m.Collect("verge_stock_escrow_units", "Units of a bounded stock this PoP holds in escrow.", obs.GaugeValue, self, []string{"app", "counter"},
		func() []obs.Gauge {
			if p.Stock == nil {
				return nil
			}
			var out []obs.Gauge
			for _, e := range p.Stock.Escrows() {
				out = append(out, obs.Gauge{Labels: []string{e.App, e.Counter}, Value: float64(e.Units)})
			}
			return out
		})
	m.Collect("verge_app_version_info", "The version of each app this PoP serves (value 1).", obs.GaugeValue, self, []string{"app", "version"},
		func() []obs.Gauge {
			var out []obs.Gauge
			for app, v := range p.apps.serving() {
				out = append(out, obs.Gauge{Labels: []string{app, v}, Value: 1})
			}
			return out
		})
	m.Collect("verge_guest_instances", "Instances of each function, by state: idle (warm in the pool) or busy (serving).", obs.GaugeValue, self, []string{"app", "function", "state"},
		func() []obs.Gauge {
			var out []obs.Gauge
			for app, h := range p.apps.table.Load().byName {
				if h.app == nil {
					continue
				}
				for _, fn := range h.app.Gateway.Functions() {
					st := fn.Stats()
					out = append(out, obs.Gauge{Labels: []string{app, fn.Spec.Name, "idle"}, Value: float64(st.Idle)},
						obs.Gauge{Labels: []string{app, fn.Spec.Name, "busy"}, Value: float64(st.Busy)})
				}
			}
			return out
		})
	m.Collect("verge_rooms", "Rooms this PoP owns, by state: live (with an instance) or hibernating.", obs.GaugeValue, self, []string{"app", "function", "state"},
		func() []obs.Gauge {
			var out []obs.Gauge
			if r := p.rooms0.Load(); r != nil {
				for _, st := range r.Stats() {
					out = append(out, obs.Gauge{Labels: []string{st.App, st.Function, "live"}, Value: float64(st.Live)},
						obs.Gauge{Labels: []string{st.App, st.Function, "hibernating"}, Value: float64(st.Hibernating)})
				}
			}
			return out
		})
	m.Collect("verge_room_sockets", "WebSockets open at this PoP, to rooms owned here or relayed to their owner.", obs.GaugeValue, self, []string{"app", "function"},
		func() []obs.Gauge {
			var out []obs.Gauge
			if r := p.rooms0.Load(); r != nil {
				for _, st := range r.Stats() {
					out = append(out, obs.Gauge{Labels: []string{st.App, st.Function}, Value: float64(st.Sockets)})
				}
			}
			return out
		})
	m.Collect("verge_room_events_total", "Room events run at this PoP, by kind (connect, message, close, request, alarm).", obs.CounterValue, self, []string{"app", "function", "event"},
		func() []obs.Gauge {
			var out []obs.Gauge
			if r := p.rooms0.Load(); r != nil {
				for _, e := range r.Events() {
					out = append(out, obs.Gauge{Labels: []string{e.App, e.Function, e.Event}, Value: float64(e.N)})
				}
			}
			return out
		})
	m.Collect("verge_guest_instance_starts_total", "Instances started for each function (pool refills and fresh instances).", obs.CounterValue, self, []string{"app", "function"},
		func() []obs.Gauge {
			var out []obs.Gauge
			for app, h := range p.apps.table.Load().byName {
				if h.app == nil {
					continue
				}
				for _, fn := range h.app.Gateway.Functions() {
					out = append(out, obs.Gauge{Labels: []string{app, fn.Spec.Name}, Value: float64(fn.Stats().Starts)})
				}
			}
			return out
		})
}

type linkFigures struct {
	batches, items, bytes, unacked uint64
	known                          bool
	lag                            time.Duration
}

// meteredSpot counts and times every operation on the single point of
// truth, and traces it when the request is traced.
type meteredSpot struct {
	spot.Engine
	m *obs.Metrics
}

// Escrowed passes on the units this PoP holds of a stock (admin's counter
// answer adds them: a stock is the centre's remaining plus every escrow).
func (s meteredSpot) Escrowed(app, counter string) int64 {
	if e, ok := s.Engine.(interface {
		Escrowed(app, counter string) int64
	}); ok {
		return e.Escrowed(app, counter)
	}
	return 0
}

func (s meteredSpot) observe(ctx context.Context, op string, start time.Time, err error) {
	outcome := "ok"
	var ce *spot.ConflictError
	switch {
	case err == nil:
	case errors.As(err, &ce):
		outcome = "conflict"
	case errors.Is(err, spot.ErrInvalid):
		outcome = "invalid"
	case errors.Is(err, spot.ErrUnknownOutcome):
		outcome = "unknown"
	case errors.Is(err, spot.ErrUnavailable):
		outcome = "unavailable"
	default:
		outcome = "error"
	}
	s.m.SpotOps.WithLabelValues(op, outcome).Inc()
	s.m.SpotDuration.WithLabelValues(op).Observe(time.Since(start).Seconds())
}

func (s meteredSpot) span(ctx context.Context, op string) (context.Context, func(error)) {
	ctx, span := obs.Child(ctx, "spot "+op, attribute.String("verge.spot.op", op))
	start := time.Now()
	return ctx, func(err error) {
		s.observe(ctx, op, start, err)
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

func (s meteredSpot) Claim(ctx context.Context, app, ns, key, owner string) (spot.Claim, error) {
	ctx, done := s.span(ctx, "claim")
	c, err := s.Engine.Claim(ctx, app, ns, key, owner)
	done(err)
	return c, err
}

func (s meteredSpot) Release(ctx context.Context, app, ns, key, owner string) (bool, error) {
	ctx, done := s.span(ctx, "release")
	ok, err := s.Engine.Release(ctx, app, ns, key, owner)
	done(err)
	return ok, err
}

func (s meteredSpot) Take(ctx context.Context, app, counter string, n int64) (spot.Take, error) {
	ctx, done := s.span(ctx, "take")
	t, err := s.Engine.Take(ctx, app, counter, n)
	done(err)
	return t, err
}

func (s meteredSpot) Restock(ctx context.Context, app, counter string, n int64) (int64, error) {
	ctx, done := s.span(ctx, "restock")
	r, err := s.Engine.Restock(ctx, app, counter, n)
	done(err)
	return r, err
}

func (s meteredSpot) Counter(ctx context.Context, app, counter string) (int64, error) {
	ctx, done := s.span(ctx, "counter")
	r, err := s.Engine.Counter(ctx, app, counter)
	done(err)
	return r, err
}

func (s meteredSpot) GetDoc(ctx context.Context, app, key string) ([]byte, uint64, error) {
	ctx, done := s.span(ctx, "doc_get")
	d, rev, err := s.Engine.GetDoc(ctx, app, key)
	done(err)
	return d, rev, err
}

func (s meteredSpot) UpdateDoc(ctx context.Context, app, key string, rev uint64, ops []crdt.Op) ([]byte, uint64, error) {
	ctx, done := s.span(ctx, "doc_update")
	d, r, err := s.Engine.UpdateDoc(ctx, app, key, rev, ops)
	done(err)
	return d, r, err
}
