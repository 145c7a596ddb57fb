package netsim

import (
	"math"
	"time"
)

// Point is a location on Earth in decimal degrees.
type Point struct{ Lat, Lon float64 }

const (
	// earthRadiusKm is the mean Earth radius (IUGG).
	earthRadiusKm = 6371.0088
	// fiberKmPerMs is the speed of light in optical fibre: about 2/3 c,
	// 200,000 km/s, i.e. 200 km per millisecond.
	fiberKmPerMs = 200.0
	// routeInflation accounts for real fibre paths being longer than the
	// great circle (cable landings, terrestrial detours, peering points).
	// Measured Internet paths run 1.5-2x; 1.5 is the conservative end.
	routeInflation = 1.5
	// minRTO is the smallest retransmission timeout Linux uses (200 ms).
	minRTO = 200 * time.Millisecond
)

// Distance returns the great-circle distance between a and b in kilometres
// (haversine formula, spherical Earth: error below 0.5%).
func Distance(a, b Point) float64 {
	const rad = math.Pi / 180
	lat1, lat2 := a.Lat*rad, b.Lat*rad
	dLat := (b.Lat - a.Lat) * rad
	dLon := (b.Lon - a.Lon) * rad
	s1, s2 := math.Sin(dLat/2), math.Sin(dLon/2)
	h := s1*s1 + math.Cos(lat1)*math.Cos(lat2)*s2*s2
	if h > 1 { // rounding near antipodes
		h = 1
	}
	return 2 * earthRadiusKm * math.Asin(math.Sqrt(h))
}

// Model describes the links of a [Layer].
//
// The one-way latency of a link is Scale * (Base + distance/200 km/ms * 1.5).
// Jitter adds a uniformly distributed extra delay in [0, Scale*Jitter) to
// every chunk, never reordering bytes. Loss is the probability that a chunk
// is held for an extra retransmission timeout, Scale * max(200 ms,
// 3 x unscaled one-way): TCP cannot drop bytes, it delivers them late.
// Scale 0 turns every delay off; negative values count as 0 and Loss is
// clamped to [0, 1].
type Model struct {
	Base   time.Duration // fixed per-hop cost: serialisation, switching, last mile
	Scale  float64       // multiplies every delay; 0 disables the emulation
	Jitter time.Duration // maximum extra delay per chunk
	Loss   float64       // probability a chunk waits a retransmission timeout
}

// OneWay returns the one-way latency between a and b under m.
func (m Model) OneWay(a, b Point) time.Duration {
	m = m.normalize()
	return time.Duration(m.Scale * float64(m.unscaled(a, b)))
}

func (m Model) unscaled(a, b Point) time.Duration {
	prop := Distance(a, b) / fiberKmPerMs * routeInflation * float64(time.Millisecond)
	return m.Base + time.Duration(prop)
}

func (m Model) normalize() Model {
	if !(m.Scale > 0) { // also catches NaN
		m.Scale = 0
	}
	if m.Base < 0 {
		m.Base = 0
	}
	if m.Jitter < 0 {
		m.Jitter = 0
	}
	if !(m.Loss > 0) {
		m.Loss = 0
	}
	if m.Loss > 1 {
		m.Loss = 1
	}
	return m
}

// delay is a link's model resolved for its two endpoints, computed once per
// SetModel/AddPeer so the per-chunk path does no trigonometry.
type delay struct {
	lat    time.Duration
	jitter time.Duration
	loss   float64
	rto    time.Duration
}

func (m Model) resolve(a, b Point) *delay {
	m = m.normalize()
	raw := m.unscaled(a, b)
	rto := max(minRTO, 3*raw)
	return &delay{
		lat:    time.Duration(m.Scale * float64(raw)),
		jitter: time.Duration(m.Scale * float64(m.Jitter)),
		loss:   m.Loss,
		rto:    time.Duration(m.Scale * float64(rto)),
	}
}

func (d *delay) zero() bool { return d.lat == 0 && d.jitter == 0 && (d.loss == 0 || d.rto == 0) }
