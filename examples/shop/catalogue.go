package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/verge-edge/verge/sdk/go/verge"
)

// The catalogue is two global documents: "products", {id: "name|category|
// brand|cents"}, written by the admin endpoint, and "levels", {id: units},
// an estimate of each
// product's stock that every PoP keeps current as it sells (a set when the
// admin sets the stock, an increment of -qty per sale, merged across PoPs).
// The stock itself is the bounded counter stock-ID at the centre; reading it
// would cost a WAN round trip per page, the estimate none.

// product is a product: its price in cents, kept exact.
type product struct {
	ID, Name, Category, Brand string
	Cents                     int64
}

// price is the price as the API shows it, in currency units.
func (p *product) price() float64 { return float64(p.Cents) / 100 }

// view is the catalogue as this instance last read it. Decoding costs
// CPU a fresh instance pays on its first request (and every instance when
// the products change), so an instance keeps what it decoded until the
// document changes, and decodes only what a request needs: one product for
// a product page or a cart, the sorted list and its JSON for a listing.
//
// Each product is stored as one string of fields separated by "|" rather
// than as an object: a PoP renders the document as JSON on every read, and
// 240 strings render in a seventh of the time of 240 objects (0.4 ms
// against 3.2 ms here), and a guest splits them at a fifth of the cost of
// decoding JSON objects.
type view struct {
	raw      []byte
	texts    map[string]string   // product id -> stored form
	byID     map[string]*product // decoded so far
	list     *listing            // built on the first listing
	levelRaw []byte
	levels   map[string]int64
}

// listing is what listings need: every product, sorted, with its JSON up
// to its stock, and the counts per category and brand.
type listing struct {
	sorted []*product
	head   map[string][]byte
	cats   []count
	brands []count
}

type count struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

var cached view

// loadView returns the catalogue, with current stock estimates if levels.
// Reading and parsing the levels is the part of a catalogue request that
// changes all the time (every sale anywhere changes them), so the requests
// that show no stock skip it.
func loadView(levels bool) (*view, error) {
	raw, _, err := catalogue.GetJSON("products")
	if err != nil {
		return nil, err
	}
	if raw == nil {
		raw = []byte("{}")
	}
	if !bytes.Equal(raw, cached.raw) {
		var texts map[string]string
		if err := json.Unmarshal(raw, &texts); err != nil {
			return nil, err
		}
		cached = view{raw: bytes.Clone(raw), texts: texts, byID: map[string]*product{}}
	}
	if !levels {
		return &cached, nil
	}
	lraw, _, err := catalogue.GetJSON("levels")
	if err != nil {
		return nil, err
	}
	if cached.levels == nil || !bytes.Equal(lraw, cached.levelRaw) {
		levels, err := parseLevels(lraw)
		if err != nil {
			return nil, err
		}
		cached.levelRaw, cached.levels = bytes.Clone(lraw), levels
	}
	return &cached, nil
}

// parseLevels reads the levels document, a flat object of numbers keyed by
// product id, by hand: it changes with every sale anywhere, and decoding
// it with encoding/json cost a guest about 2 ms each time, more than the
// rest of a product page. A level reads as a float once concurrent sales
// pushed it outside int64 (never here): numbers are read leniently.
func parseLevels(raw []byte) (map[string]int64, error) {
	levels := map[string]int64{}
	s := strings.TrimSpace(string(raw))
	if s == "" {
		return levels, nil
	}
	bad := func() (map[string]int64, error) {
		return nil, fmt.Errorf("the levels document is not a flat object of numbers: %.60q", s)
	}
	if s[0] != '{' || s[len(s)-1] != '}' {
		return bad()
	}
	for rest := strings.TrimSpace(s[1 : len(s)-1]); rest != ""; {
		if rest[0] != '"' {
			return bad()
		}
		end := strings.IndexByte(rest[1:], '"') + 1 // keys are product ids: no escapes
		colon := strings.IndexByte(rest[end:], ':') + end
		if end <= 0 || colon < end {
			return bad()
		}
		key := rest[1:end]
		rest = rest[colon+1:]
		comma := strings.IndexByte(rest, ',')
		num := rest
		if comma >= 0 {
			num, rest = rest[:comma], strings.TrimSpace(rest[comma+1:])
		} else {
			rest = ""
		}
		num = strings.TrimSpace(num)
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil {
			f, ferr := strconv.ParseFloat(num, 64)
			if ferr != nil {
				return bad()
			}
			switch { // int64(f) of a float out of range is undefined
			case f >= math.MaxInt64:
				n = math.MaxInt64
			case f <= math.MinInt64:
				n = math.MinInt64
			default:
				n = int64(f)
			}
		}
		levels[key] = n
	}
	return levels, nil
}

// product returns the product called id, nil if there is none.
func (v *view) product(id string) *product {
	if p, ok := v.byID[id]; ok {
		return p
	}
	text, ok := v.texts[id]
	if !ok {
		return nil
	}
	p, err := parseProduct(id, text)
	if err != nil {
		verge.Log(verge.LevelWarn, err.Error())
		p = nil
	}
	v.byID[id] = p
	return p
}

// listing returns every product, sorted by category and name.
func (v *view) listing() *listing {
	if v.list != nil {
		return v.list
	}
	l := &listing{head: make(map[string][]byte, len(v.texts))}
	cats, brands := map[string]int{}, map[string]int{}
	for id := range v.texts {
		p := v.product(id)
		if p == nil {
			continue
		}
		l.sorted = append(l.sorted, p)
		cats[p.Category]++
		brands[p.Brand]++
		l.head[id] = productHead(p)
	}
	slices.SortFunc(l.sorted, func(a, b *product) int {
		if c := cmpStr(a.Category, b.Category); c != 0 {
			return c
		}
		return cmpStr(a.Name, b.Name)
	})
	l.cats, l.brands = counts(cats), counts(brands)
	v.list = l
	return l
}

// productHead is a product's JSON up to its stock.
func productHead(p *product) []byte {
	b := append([]byte(`{"id":`), quote(p.ID)...)
	b = append(append(b, `,"name":`...), quote(p.Name)...)
	b = append(append(b, `,"category":`...), quote(p.Category)...)
	b = append(append(b, `,"brand":`...), quote(p.Brand)...)
	b = strconv.AppendFloat(append(b, `,"price":`...), p.price(), 'f', -1, 64)
	return append(b, `,"stock":`...)
}

// formatProduct is the stored form of a product: its fields separated by
// "|", which the admin endpoint refuses inside them.
func formatProduct(p *product) string {
	return p.Name + "|" + p.Category + "|" + p.Brand + "|" + strconv.FormatInt(p.Cents, 10)
}

func parseProduct(id, text string) (*product, error) {
	f := strings.Split(text, "|")
	if len(f) != 4 {
		return nil, fmt.Errorf("product %s: %q is not name|category|brand|cents", id, text)
	}
	cents, err := strconv.ParseInt(f[3], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("product %s: price %q: %w", id, f[3], err)
	}
	return &product{ID: id, Name: f[0], Category: f[1], Brand: f[2], Cents: cents}, nil
}

// quote encodes s as a JSON string (the catalogue's texts are valid UTF-8:
// the documents refuse anything else).
func quote(s string) []byte {
	b, _ := json.Marshal(s)
	return b
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func counts(m map[string]int) []count {
	out := make([]count, 0, len(m))
	for k, n := range m {
		out = append(out, count{k, n})
	}
	slices.SortFunc(out, func(a, b count) int { return cmpStr(a.Name, b.Name) })
	return out
}

// stock is the estimate of a product's stock, never below zero.
func (v *view) stock(id string) int64 { return max(0, v.levels[id]) }

// appendProduct appends the product's JSON, with its stock estimate.
func (v *view) appendProduct(b []byte, head []byte, p *product) []byte {
	b = append(b, head...)
	b = strconv.AppendInt(b, v.stock(p.ID), 10)
	return append(b, '}')
}

func getProducts(x *reply, r *verge.Request, _ string) {
	v, err := loadView(true)
	if err != nil {
		x.hostFailed("reading the catalogue", err)
		return
	}
	q := r.URL.Query()
	cat, brand := q.Get("category"), q.Get("brand")
	l := v.listing()
	b := append(make([]byte, 0, 128*len(l.sorted)), `{"products":[`...)
	n := 0
	for _, p := range l.sorted {
		if (cat != "" && p.Category != cat) || (brand != "" && p.Brand != brand) {
			continue
		}
		if n > 0 {
			b = append(b, ',')
		}
		b = v.appendProduct(b, l.head[p.ID], p)
		n++
	}
	x.send(200, "application/json", append(b, "]}\n"...))
}

func getProduct(x *reply, _ *verge.Request, id string) {
	v, err := loadView(true)
	if err != nil {
		x.hostFailed("reading the catalogue", err)
		return
	}
	p := v.product(id)
	if p == nil {
		x.fail(404, "no product "+strconv.Quote(id))
		return
	}
	x.send(200, "application/json", append(v.appendProduct(nil, productHead(p), p), '\n'))
}

func getCategories(x *reply, _ *verge.Request, _ string) {
	v, err := loadView(false)
	if err != nil {
		x.hostFailed("reading the catalogue", err)
		return
	}
	x.json(200, map[string]any{"categories": v.listing().cats})
}

func getBrands(x *reply, _ *verge.Request, _ string) {
	v, err := loadView(false)
	if err != nil {
		x.hostFailed("reading the catalogue", err)
		return
	}
	x.json(200, map[string]any{"brands": v.listing().brands})
}
