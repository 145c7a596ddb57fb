package main

import (
	"errors"
	"math"
	"strings"

	"github.com/verge-edge/verge/sdk/go/verge"
)

// adminProduct adds or updates a product and sets its stock. It runs at the
// central PoP (the backoffice function is kind = "central"): setting a stock
// reads the counter and moves it by the difference, which is only exact
// where no WAN separates the two.
//
// The stock set is what the centre holds. Units PoPs hold in escrow at that
// moment (a grant or a few each, only while the stock is plentiful) stay on
// sale besides; the answer's "changed_by" is what this call added (or took)
// at the centre, what a stock ledger needs.
func adminProduct(x *reply, r *verge.Request, _ string) {
	token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !tokenOK(token) {
		x.w.Header().Set("WWW-Authenticate", `Bearer realm="shop admin"`)
		x.fail(401, "send Authorization: Bearer with the shop's SHOP_ADMIN_TOKEN")
		return
	}
	var req struct {
		ID       string   `json:"id"`
		Name     string   `json:"name"`
		Category string   `json:"category"`
		Brand    string   `json:"brand"`
		Price    *float64 `json:"price"`
		Stock    *int64   `json:"stock"`
	}
	if err := readJSON(r, &req); err != nil {
		x.fail(400, err.Error())
		return
	}
	switch {
	case !validID(req.ID):
		x.fail(400, "id: 1 to 64 lowercase letters, digits, - or _")
	case req.Name == "" || len(req.Name) > 200 || req.Category == "" || len(req.Category) > 100 || req.Brand == "" || len(req.Brand) > 100:
		x.fail(400, "name (up to 200 bytes), category and brand (up to 100) are required")
	case !plain(req.Name) || !plain(req.Category) || !plain(req.Brand):
		x.fail(400, "name, category and brand: no \"|\" and no control characters")
	case req.Price == nil || *req.Price < 0 || *req.Price > 1e9:
		x.fail(400, "price: a number from 0 to 1e9")
	case req.Stock == nil || *req.Stock < 0 || *req.Stock > 1e12:
		x.fail(400, "stock: an integer from 0 to 1e12")
	default:
		changed, err := setStock(stockOf(req.ID), *req.Stock)
		if err != nil {
			x.hostFailed("setting the stock", err)
			return
		}
		p := product{ID: req.ID, Name: req.Name, Category: req.Category, Brand: req.Brand, Cents: int64(math.Round(*req.Price * 100))}
		if err := catalogue.Update("products", verge.Set(req.ID, formatProduct(&p))); err != nil {
			x.hostFailed("storing the product", err)
			return
		}
		if err := catalogue.Update("levels", verge.Set(req.ID, *req.Stock)); err != nil {
			x.hostFailed("storing the stock estimate", err)
			return
		}
		x.json(200, map[string]any{"product": map[string]any{"id": p.ID, "name": p.Name, "category": p.Category,
			"brand": p.Brand, "price": p.price(), "stock": *req.Stock}, "changed_by": changed})
	}
}

// setStock moves the centre's stock to want: a restock of the difference,
// or a take of it (which a concurrent sale can make fail: read again).
func setStock(counter string, want int64) (changed int64, err error) {
	for range 8 {
		cur, err := verge.Stock(counter)
		if err != nil {
			return changed, err
		}
		switch d := want - cur; {
		case d == 0:
			return changed, nil
		case d > 0:
			_, err := verge.Restock(counter, d)
			if err != nil {
				return changed, err
			}
			return changed + d, nil
		default:
			ok, _, err := verge.Take(counter, -d)
			if err != nil {
				return changed, err
			}
			if ok {
				return changed + d, nil
			}
		}
	}
	return changed, errors.New("the stock kept changing while being set; retry")
}

// plain reports whether s can be a field of a stored product.
func plain(s string) bool {
	for _, r := range s {
		if r == '|' || r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}
