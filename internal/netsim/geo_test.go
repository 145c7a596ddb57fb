package netsim

import (
	"math"
	"testing"
	"time"
)

var (
	london    = Point{51.5074, -0.1278}
	newYork   = Point{40.7128, -74.0060}
	frankfurt = Point{50.1109, 8.6821}
	tokyo     = Point{35.6762, 139.6503}
	sydney    = Point{-33.8688, 151.2093}
	paris     = Point{48.8566, 2.3522}
)

func TestDistance(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		a, b Point
		km   float64 // published great-circle distances
	}{
		{"london-newyork", london, newYork, 5570},
		{"london-tokyo", london, tokyo, 9560},
		{"sydney-tokyo", sydney, tokyo, 7820},
		{"same", paris, paris, 0},
		{"antipodes", Point{0, 0}, Point{0, 180}, math.Pi * earthRadiusKm},
	} {
		got := Distance(tc.a, tc.b)
		if math.Abs(got-tc.km) > 0.01*tc.km+0.001 {
			t.Errorf("%s: Distance = %.1f km, want %.0f km +-1%%", tc.name, got, tc.km)
		}
		if back := Distance(tc.b, tc.a); math.Abs(back-got) > 1e-6 {
			t.Errorf("%s: not symmetric: %f vs %f", tc.name, got, back)
		}
	}
}

func TestOneWay(t *testing.T) {
	t.Parallel()
	d := Distance(london, newYork)
	prop := time.Duration(d / 200 * 1.5 * float64(time.Millisecond))
	for _, tc := range []struct {
		name string
		m    Model
		want time.Duration
	}{
		{"base only", Model{Base: 10 * time.Millisecond, Scale: 1}, 10*time.Millisecond + prop},
		{"scale 0 is off", Model{Base: 10 * time.Millisecond, Scale: 0}, 0},
		{"negative scale is off", Model{Base: 10 * time.Millisecond, Scale: -1}, 0},
		{"scale 2 doubles", Model{Base: 10 * time.Millisecond, Scale: 2}, 2 * (10*time.Millisecond + prop)},
		{"scale 0.1", Model{Scale: 0.1}, prop / 10},
	} {
		got := tc.m.OneWay(london, newYork)
		if diff := got - tc.want; diff < -time.Microsecond || diff > time.Microsecond {
			t.Errorf("%s: OneWay = %v, want %v", tc.name, got, tc.want)
		}
	}
	// Across the Atlantic: ~42 ms of propagation, the right order for real
	// London-New York paths (RTT ~70-80 ms).
	if prop < 35*time.Millisecond || prop > 50*time.Millisecond {
		t.Errorf("London-New York propagation %v, want ~42ms", prop)
	}
}

func TestResolveRTO(t *testing.T) {
	t.Parallel()
	near := Model{Base: time.Millisecond, Scale: 1, Loss: 2}.resolve(paris, paris)
	if near.rto != minRTO || near.loss != 1 {
		t.Errorf("near link: rto %v loss %v, want %v and loss clamped to 1", near.rto, near.loss, minRTO)
	}
	far := Model{Base: 100 * time.Millisecond, Scale: 0.5}.resolve(paris, paris)
	if far.rto != 150*time.Millisecond || far.lat != 50*time.Millisecond {
		t.Errorf("far link: rto %v lat %v, want 150ms (3x100ms scaled) and 50ms", far.rto, far.lat)
	}
}
