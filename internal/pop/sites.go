package pop

import "github.com/verge-edge/verge"

// Sites are where `verge net up --pops N` and the benchmarks put PoPs: the
// first N, at real airports' coordinates. The first is central; the others
// spread over the world so that latencies differ.
var Sites = []verge.PoP{
	{ID: "ord", Region: "us", Lat: 41.98, Lon: -87.90, Central: true},
	{ID: "sfo", Region: "us", Lat: 37.62, Lon: -122.38},
	{ID: "iad", Region: "us", Lat: 38.95, Lon: -77.46},
	{ID: "fra", Region: "eu", Lat: 50.04, Lon: 8.56},
	{ID: "sin", Region: "ap", Lat: 1.36, Lon: 103.99},
	{ID: "syd", Region: "ap", Lat: -33.95, Lon: 151.18},
	{ID: "lhr", Region: "eu", Lat: 51.47, Lon: -0.45},
	{ID: "nrt", Region: "ap", Lat: 35.77, Lon: 140.39},
	{ID: "gru", Region: "sa", Lat: -23.43, Lon: -46.47},
	{ID: "jnb", Region: "af", Lat: -26.14, Lon: 28.24},
}
