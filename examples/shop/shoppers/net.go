// Package shoppers simulates the shopping demo's customers for bench/shop
// and the end-to-end tests: shoppers in cities around the world, each
// reaching the shop's nearest PoP over an emulated last mile, running the
// demo's journey, failing over to the next-nearest PoP when theirs is
// gone, and the checks that nothing was lost, sold twice or owned twice
// once the network has healed.
//
// The client leg is emulated the way the PoPs' links are: each city dials
// the PoPs through its own netsim.Layer located at the city, so every byte
// waits the one-way latency city–PoP in each direction (Base + great-circle
// distance / 200 km/ms × 1.5, times Scale), a new connection one more round
// trip for its handshake.
package shoppers

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/verge-edge/verge/internal/netsim"
)

// PoP is a PoP of a `verge net` network as net.json describes it.
type PoP struct {
	ID      string  `json:"id"`
	Region  string  `json:"region"`
	Lat     float64 `json:"lat"`
	Lon     float64 `json:"lon"`
	Central bool    `json:"central"`
	HTTP    string  `json:"http"`
	Admin   string  `json:"admin"`
}

// At is where the PoP is.
func (p PoP) At() netsim.Point { return netsim.Point{Lat: p.Lat, Lon: p.Lon} }

// Net is a running network serving the shop.
type Net struct {
	Name  string // "edge" or "central": the placement of the shop it serves
	Dir   string
	Token string // the operator token of every PoP's admin API
	PoPs  []PoP
}

// ReadNet reads DIR/net.json, written by `verge net up`.
func ReadNet(name, dir string) (*Net, error) {
	b, err := os.ReadFile(filepath.Join(dir, "net.json"))
	if err != nil {
		return nil, err
	}
	var nf struct {
		Token string `json:"token"`
		PoPs  []PoP  `json:"pops"`
	}
	if err := json.Unmarshal(b, &nf); err != nil {
		return nil, fmt.Errorf("%s/net.json: %w", dir, err)
	}
	return &Net{Name: name, Dir: dir, Token: nf.Token, PoPs: nf.PoPs}, nil
}

// Central is the network's central PoP.
func (n *Net) Central() PoP {
	for _, p := range n.PoPs {
		if p.Central {
			return p
		}
	}
	return n.PoPs[0]
}

// PoP returns the PoP called id.
func (n *Net) PoP(id string) (PoP, bool) {
	for _, p := range n.PoPs {
		if p.ID == id {
			return p, true
		}
	}
	return PoP{}, false
}

// Nearest orders the PoPs by distance from at, nearest first.
func (n *Net) Nearest(at netsim.Point) []PoP {
	out := append([]PoP(nil), n.PoPs...)
	sort.SliceStable(out, func(i, j int) bool {
		return netsim.Distance(at, out[i].At()) < netsim.Distance(at, out[j].At())
	})
	return out
}

// City is where some shoppers are.
type City struct {
	Name      string  `json:"city"`
	Continent string  `json:"continent"`
	Lat       float64 `json:"lat"`
	Lon       float64 `json:"lon"`
}

// At is where the city is.
func (c City) At() netsim.Point { return netsim.Point{Lat: c.Lat, Lon: c.Lon} }

// Cities are where bench/shop's shoppers live: 13 cities on 6 continents.
// Most are next to a PoP of the ten `verge net up` knows (pop.Sites), as a
// shop's customers are next to an edge network's PoPs; Seattle, Paris,
// Berlin and Mumbai are a few hundred to a few thousand kilometres from
// theirs, so the table also shows what a gap in the network costs.
var Cities = []City{
	{"Chicago", "North America", 41.88, -87.63},
	{"New York", "North America", 40.71, -74.01},
	{"San Francisco", "North America", 37.77, -122.42},
	{"Seattle", "North America", 47.61, -122.33},
	{"São Paulo", "South America", -23.55, -46.63},
	{"London", "Europe", 51.51, -0.13},
	{"Paris", "Europe", 48.86, 2.35},
	{"Berlin", "Europe", 52.52, 13.40},
	{"Johannesburg", "Africa", -26.20, 28.05},
	{"Mumbai", "Asia", 19.08, 72.88},
	{"Singapore", "Asia", 1.35, 103.82},
	{"Tokyo", "Asia", 35.68, 139.69},
	{"Sydney", "Oceania", -33.87, 151.21},
}
