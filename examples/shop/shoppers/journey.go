package shoppers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"net/url"
	"time"
)

// The actions of a journey, in the order they run. "checkout_near_end"
// buys a product whose stock is low (the clearance products): the hybrid
// threshold sends it to the centre in one round trip, where "checkout"
// sells from the PoP's escrow.
var Actions = []string{"page", "categories", "brands", "products", "product", "register", "login",
	"add", "cart", "checkout", "checkout_near_end", "orders"}

// Shop is what a journey buys from.
type Shop struct {
	Categories []string
	Products   []string // regular products, most popular first
	Scarce     []string // products kept near the end of their stock
}

// JourneyOptions shape one journey.
type JourneyOptions struct {
	User, Password string
	Adds           int           // products added to the cart before checking out (default 3)
	Think          time.Duration // pause between actions, ±50% (0: none)
	// NearEnd also buys one scarce product at the end, after the first
	// checkout.
	NearEnd bool
}

// Journey is what a shopper did and saw.
type Journey struct {
	City     string
	User     string
	Password string
	Samples  []Sample
	// Registered: the registration was acknowledged (201). Orders are the
	// checkout ids acknowledged (200); Unsure those sent without a
	// definite answer (the order may or may not exist).
	Registered bool
	Orders     []string
	Unsure     []string
	// Stock is where each acknowledged checkout's stock was taken ("edge"
	// or "centre"), by action ("checkout", "checkout_near_end").
	Stock map[string]string
	Err   error // why the journey stopped early, if it did
}

// Run runs the demo's journey: browse (the page, categories, brands, a
// category, two products), register, log in, add to the cart several
// times, view the cart, check out, (buy a scarce product,) list the orders.
// It stops at the first action that does not end as expected.
func (s *Shopper) Run(ctx context.Context, shop *Shop, o JourneyOptions, rng *mrand.Rand) *Journey {
	if o.Adds <= 0 {
		o.Adds = 3
	}
	j := &Journey{City: s.c.City.Name, User: o.User, Password: o.Password, Stock: map[string]string{}}
	// Some products sell far more than others: a few are bought at every
	// PoP (and escrowed there), most rarely.
	z := mrand.NewZipf(rng, 1.2, 1, uint64(len(shop.Products)-1))
	popular := func() string { return shop.Products[z.Uint64()] }
	think := func() {
		if o.Think > 0 {
			d := time.Duration(float64(o.Think) * (0.5 + rng.Float64()))
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		}
	}
	step := func(action, method, path string, body any, want ...int) map[string]any {
		if j.Err != nil || ctx.Err() != nil {
			return nil
		}
		smp, m := s.Do(ctx, action, method, path, body)
		j.Samples = append(j.Samples, smp)
		for _, w := range want {
			if smp.Status == w {
				think()
				return m
			}
		}
		j.Err = &errStatus{Action: action, Status: smp.Status, Answer: m}
		return nil
	}
	creds := map[string]string{"username": o.User, "password": o.Password}

	step("page", "GET", "/", nil, 200)
	step("categories", "GET", "/api/categories", nil, 200)
	step("brands", "GET", "/api/brands", nil, 200)
	step("products", "GET", "/api/products?category="+url.QueryEscape(shop.Categories[rng.IntN(len(shop.Categories))]), nil, 200)
	step("product", "GET", "/api/products/"+popular(), nil, 200)
	step("product", "GET", "/api/products/"+popular(), nil, 200)
	if step("register", "POST", "/api/register", creds, 201) != nil {
		j.Registered = true
	}
	step("login", "POST", "/api/login", creds, 200)
	for range o.Adds {
		step("add", "POST", "/api/cart/items", map[string]any{"product": popular()}, 200)
	}
	step("cart", "GET", "/api/cart", nil, 200)
	s.checkout(j, step, "checkout")
	if o.NearEnd && len(shop.Scarce) > 0 {
		step("add", "POST", "/api/cart/items", map[string]any{"product": shop.Scarce[rng.IntN(len(shop.Scarce))]}, 200)
		s.checkout(j, step, "checkout_near_end")
	}
	step("orders", "GET", "/api/orders", nil, 200)
	return j
}

// checkout checks out with an id of its own: an answer other than 200 or
// 409 (after Do's retries) leaves the order unsure.
func (s *Shopper) checkout(j *Journey, step func(string, string, string, any, ...int) map[string]any, action string) {
	if j.Err != nil {
		return
	}
	id := newID()
	m := step(action, "POST", "/api/checkout", map[string]string{"id": id}, 200, 409)
	last := j.Samples[len(j.Samples)-1]
	switch {
	case m != nil && last.Status == 200:
		j.Orders = append(j.Orders, id)
		if o, ok := m["order"].(map[string]any); ok {
			j.Stock[action] = fmt.Sprint(o["stock"])
		}
	case last.Status != 409:
		j.Unsure = append(j.Unsure, id)
	}
}

func newID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
