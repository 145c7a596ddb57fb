package crdt

import (
	"math/big"
	"math/bits"
)

// int128 is a signed 128-bit integer in two's complement: counter values
// are computed in it, so they never wrap. A counter's net is the sum of at
// most 2^32 replicas' totals of at most 2^64-1 each, and a slot's implicit
// counters are far fewer than 2^31, so every sum this package forms fits.
type int128 struct {
	hi int64
	lo uint64
}

func int128Of(v int64) int128 { return int128{v >> 63, uint64(v)} }

func (x int128) addUint(v uint64) int128 {
	lo, c := bits.Add64(x.lo, v, 0)
	return int128{x.hi + int64(c), lo}
}

func (x int128) subUint(v uint64) int128 {
	lo, b := bits.Sub64(x.lo, v, 0)
	return int128{x.hi - int64(b), lo}
}

func (x int128) add(y int128) int128 {
	lo, c := bits.Add64(x.lo, y.lo, 0)
	return int128{x.hi + y.hi + int64(c), lo}
}

func (x int128) addInt(v int64) int128 { return x.add(int128Of(v)) }

// int64 returns x and whether it fits an int64.
func (x int128) int64() (int64, bool) {
	v := int64(x.lo)
	return v, x.hi == v>>63
}

func (x int128) big() *big.Int {
	b := new(big.Int).SetInt64(x.hi)
	b.Lsh(b, 64)
	return b.Add(b, new(big.Int).SetUint64(x.lo))
}

// float64 returns the float64 nearest to x (ties to even): the same on
// every platform, so replicas render the same value.
func (x int128) float64() float64 {
	if v, ok := x.int64(); ok {
		return float64(v)
	}
	f, _ := new(big.Float).SetInt(x.big()).Float64()
	return f
}

// number is x as a JSON number value: an int64 when it fits, else the
// nearest float64, as a JSON integer beyond int64 parses (see parseNumber).
func (x int128) number() any {
	if v, ok := x.int64(); ok {
		return v
	}
	return x.float64()
}

func (x int128) String() string { return x.big().String() }
