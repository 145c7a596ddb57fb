package main

import (
	"slices"
	"strconv"

	"github.com/verge-edge/verge/sdk/go/verge"
)

// A cart is a local document keyed by username whose fields are product ids
// and whose values are quantities. Adding is an increment: two PoPs adding
// to one cart at once (a user on two devices) both count, and a missing
// field starts at zero, so no "create the cart first" step can race.

type line struct {
	Product string  `json:"product"`
	Name    string  `json:"name"`
	Price   float64 `json:"price"`
	Qty     int64   `json:"qty"`
}

type cartView struct {
	Items []line  `json:"items"`
	Total float64 `json:"total"`
}

// readCart returns the user's cart: its quantities, and its lines priced
// from the catalogue (a product no longer in it shows without a price).
func readCart(user string, v *view) (map[string]int64, cartView, error) {
	qty := map[string]int64{}
	if _, err := carts.Get(user, &qty); err != nil {
		return nil, cartView{}, err
	}
	c := cartView{Items: []line{}}
	var total int64
	for id, n := range qty {
		if n <= 0 {
			continue
		}
		l := line{Product: id, Qty: n, Name: id}
		if p := v.product(id); p != nil {
			l.Name, l.Price = p.Name, p.price()
			total += p.Cents * n
		}
		c.Items = append(c.Items, l)
	}
	slices.SortFunc(c.Items, func(a, b line) int { return cmpStr(a.Product, b.Product) })
	c.Total = float64(total) / 100
	return qty, c, nil
}

func getCart(x *reply, r *verge.Request, _ string) {
	user, ok := session(x, r)
	if !ok {
		return
	}
	showCart(x, user)
}

func showCart(x *reply, user string) {
	v, err := loadView(false)
	if err != nil {
		x.hostFailed("reading the catalogue", err)
		return
	}
	_, c, err := readCart(user, v)
	if err != nil {
		x.hostFailed("reading the cart", err)
		return
	}
	x.json(200, c)
}

func addToCart(x *reply, r *verge.Request, _ string) {
	user, ok := session(x, r)
	if !ok {
		return
	}
	var req struct {
		Product string `json:"product"`
		Qty     *int64 `json:"qty"`
	}
	if err := readJSON(r, &req); err != nil {
		x.fail(400, err.Error())
		return
	}
	qty := int64(1)
	if req.Qty != nil {
		qty = *req.Qty
	}
	if qty < 1 || qty > 99 {
		x.fail(400, "qty: 1 to 99")
		return
	}
	v, err := loadView(false)
	if err != nil {
		x.hostFailed("reading the catalogue", err)
		return
	}
	if v.product(req.Product) == nil {
		x.fail(404, "no product "+strconv.Quote(req.Product))
		return
	}
	if err := carts.Update(user, verge.Increment(req.Product, qty)); err != nil {
		x.hostFailed("updating the cart", err)
		return
	}
	showCart(x, user)
}

func removeFromCart(x *reply, r *verge.Request, product string) {
	user, ok := session(x, r)
	if !ok {
		return
	}
	qty := map[string]int64{}
	if _, err := carts.Get(user, &qty); err != nil {
		x.hostFailed("reading the cart", err)
		return
	}
	if _, in := qty[product]; in {
		if err := carts.Update(user, verge.Remove(product)); err != nil {
			x.hostFailed("updating the cart", err)
			return
		}
	}
	showCart(x, user)
}
