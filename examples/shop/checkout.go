package main

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/verge-edge/verge/sdk/go/verge"
)

// Checkout takes every unit in the cart or none, and never sells a unit
// twice: each product's stock is the bounded counter stock-ID at the centre,
// with the hybrid threshold (verge.toml).
//
// While a product is plentiful, verge.Take sells from this PoP's escrow:
// a durable local write, no WAN round trip. Near the end of a stock every
// take goes to the centre, and a cart of several such products would cost a
// round trip each; so when the catalogue's estimate says one of the cart's
// products is low (below SHOP_CENTRAL_BELOW), the checkout is one
// invocation of the central function instead, which takes every unit at the
// centre, all or none, in one round trip.
//
// A checkout has an id (the client's, to retry with, or a fresh one); the
// order is stored under it in the user's orders document, so a retry never
// places a second order. Failures keep what was already taken: when the
// centre cannot be reached mid-checkout, the units taken so far are recorded
// in a "pending" order under the same id and a retry takes only the rest;
// when a product is out of stock, the units taken go back to the centre (a
// "returning" order while the centre cannot be reached) and the answer is
// 409, having bought nothing.

// order is an order as stored and shown.
type order struct {
	ID     string  `json:"id"`
	Status string  `json:"status"` // placed, pending or returning
	Items  []line  `json:"items"`
	Total  float64 `json:"total"`
	At     string  `json:"at"`
	// Stock says where the units were taken: "edge" (this PoP's escrow,
	// or the centre one product at a time) or "centre" (all at once).
	Stock string `json:"stock,omitempty"`
	// Taken (pending and returning orders) counts the units taken so far;
	// Out names the products a returning order found out of stock.
	Taken map[string]int64 `json:"taken,omitempty"`
	Out   []string         `json:"out_of_stock,omitempty"`
}

const (
	placed    = "placed"
	pending   = "pending"
	returning = "returning"
)

func checkout(x *reply, r *verge.Request, _ string) {
	user, ok := session(x, r)
	if !ok {
		return
	}
	var req struct {
		ID string `json:"id"`
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 4096))
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			x.fail(400, "the body is not {\"id\": ...}: "+err.Error())
			return
		}
	}
	if req.ID == "" {
		var b [16]byte
		rand.Read(b[:])
		req.ID = hex.EncodeToString(b[:])
	}
	if !validID(req.ID) {
		x.fail(400, "id: 1 to 64 lowercase letters, digits, - or _")
		return
	}
	all := map[string]*order{}
	if _, err := orders.Get(user, &all); err != nil {
		x.hostFailed("reading the orders", err)
		return
	}
	rec := all[req.ID]
	if rec != nil && rec.Status == placed {
		x.json(200, map[string]any{"order": rec}) // a retry of a checkout that went through
		return
	}
	v, err := loadView(true)
	if err != nil {
		x.hostFailed("reading the catalogue", err)
		return
	}
	c := &checkoutRun{x: x, user: user, id: req.ID, rec: rec, taken: map[string]int64{}}
	if rec != nil {
		c.items = rec.Items
		for p, n := range rec.Taken {
			c.taken[p] = n
		}
		if rec.Status == returning {
			c.giveBack(rec.Out)
			return
		}
	} else {
		_, cv, err := readCart(user, v)
		if err != nil {
			x.hostFailed("reading the cart", err)
			return
		}
		if len(cv.Items) == 0 {
			x.fail(400, "the cart is empty")
			return
		}
		c.items = cv.Items
	}
	var gone []string
	for _, it := range c.items {
		if v.product(it.Product) == nil {
			gone = append(gone, it.Product)
		}
	}
	if len(gone) > 0 {
		c.giveBack(gone) // no longer sold
		return
	}
	if len(c.taken) == 0 && c.nearTheEnd(v) {
		c.atCentre()
	} else {
		c.atEdge()
	}
}

// checkoutRun is one checkout in progress.
type checkoutRun struct {
	x     *reply
	user  string
	id    string
	rec   *order // as stored before this attempt, if any
	items []line
	taken map[string]int64
}

// nearTheEnd reports whether a product of the cart is low by the estimate.
func (c *checkoutRun) nearTheEnd(v *view) bool {
	below := envInt("SHOP_CENTRAL_BELOW", 40)
	for _, it := range c.items {
		if v.stock(it.Product)-it.Qty < below {
			return true
		}
	}
	return false
}

// atEdge takes each product's units with verge.Take: from this PoP's
// escrow while the stock is plentiful, else at the centre.
func (c *checkoutRun) atEdge() {
	var out []string
	for _, it := range c.items {
		need := it.Qty - c.taken[it.Product]
		if need <= 0 {
			continue
		}
		ok, _, err := verge.Take(stockOf(it.Product), need)
		if err != nil {
			// Keep what was taken for a retry with the same id; a take
			// whose outcome is unknown is not counted (undersold at worst).
			if c.record(pending, nil) {
				c.x.hostFailed("checkout "+c.id+" (retry with the same id: the units already taken are kept for it)", err)
			}
			return
		}
		if !ok {
			out = append(out, it.Product)
			continue
		}
		c.taken[it.Product] += need
	}
	if len(out) > 0 {
		c.giveBack(out)
		return
	}
	c.place("edge")
}

// atCentre invokes the central function, which takes every unit at the
// centre or none: one round trip.
func (c *checkoutRun) atCentre() {
	req := internalCheckout{Token: os.Getenv("SHOP_ADMIN_TOKEN"), Key: c.user + "/" + c.id}
	for _, it := range c.items {
		req.Items = append(req.Items, wanted{it.Product, it.Qty})
	}
	body, _ := json.Marshal(req)
	var status int
	var resp []byte
	var err error
	c.x.atCentre(func() { status, resp, err = verge.Invoke("backoffice", "POST", "/api/internal/checkout", body) })
	if err != nil {
		// Unknown outcome: a retry with the same id gets the centre's
		// recorded answer instead of taking again.
		c.x.hostFailed("checkout "+c.id+" (retry with the same id)", err)
		return
	}
	var res centralResult
	if status != 200 || json.Unmarshal(resp, &res) != nil {
		c.x.fail(502, "checkout at the central PoP failed: "+strings.TrimSpace(string(resp)))
		return
	}
	if !res.OK {
		c.outOfStock(res.Out)
		return
	}
	for _, it := range c.items {
		c.taken[it.Product] = it.Qty
	}
	c.place("centre")
}

// giveBack returns the units taken to the centre, then answers 409 naming
// the products out of stock. A return the centre does not confirm
// (unreachable) is kept in a returning order, for a retry.
func (c *checkoutRun) giveBack(out []string) {
	for _, p := range sortedKeys(c.taken) {
		if n := c.taken[p]; n > 0 {
			if _, err := verge.Restock(stockOf(p), n); err != nil && !errors.Is(err, verge.ErrUnknownOutcome) {
				if c.rec = c.recordRec(returning, out); c.rec == nil {
					return // answered
				}
				c.x.hostFailed("checkout "+c.id+": giving back the units taken (retry with the same id)", err)
				return
			}
			// Given back, or possibly (unknown outcome): never twice.
			delete(c.taken, p)
		}
	}
	if c.rec != nil {
		if err := orders.Update(c.user, verge.Remove(c.id)); err != nil {
			c.x.hostFailed("clearing the checkout", err)
			return
		}
	}
	c.outOfStock(out)
}

func (c *checkoutRun) outOfStock(out []string) {
	c.x.json(409, map[string]any{"error": "out of stock: " + strings.Join(out, ", ") + "; nothing was bought", "out_of_stock": out})
}

// record stores the checkout as a pending or returning order; it answers
// 500 itself and reports false when it cannot.
func (c *checkoutRun) record(status string, out []string) bool {
	if len(c.taken) == 0 && c.rec == nil {
		return true // nothing to keep
	}
	return c.recordRec(status, out) != nil
}

func (c *checkoutRun) recordRec(status string, out []string) *order {
	o := &order{ID: c.id, Status: status, Items: c.items, At: now(), Taken: c.taken, Out: out}
	if err := orders.Update(c.user, verge.Set(c.id, o)); err != nil {
		c.x.hostFailed("recording the checkout", err)
		return nil
	}
	return o
}

// place stores the order, empties the cart of what was bought and lowers
// the catalogue's stock estimates.
func (c *checkoutRun) place(where string) {
	o := &order{ID: c.id, Status: placed, Items: c.items, At: now(), Stock: where}
	var total int64
	for _, it := range c.items {
		total += int64(math.Round(it.Price*100)) * it.Qty
	}
	o.Total = float64(total) / 100
	if err := orders.Update(c.user, verge.Set(c.id, o)); err != nil {
		c.x.hostFailed("storing the order (retry with the same id)", err)
		return
	}
	// The order stands; the rest is bookkeeping that a failure must not
	// turn into an error for the buyer.
	qty := map[string]int64{}
	if _, err := carts.Get(c.user, &qty); err == nil {
		var ops []verge.Op
		for _, it := range c.items {
			switch n, in := qty[it.Product]; {
			case !in:
			case n <= it.Qty:
				ops = append(ops, verge.Remove(it.Product))
			default: // more were added since
				ops = append(ops, verge.Increment(it.Product, -it.Qty))
			}
		}
		if len(ops) > 0 {
			if err := carts.Update(c.user, ops...); err != nil {
				verge.Log(verge.LevelWarn, "emptying the cart of "+c.user+": "+err.Error())
			}
		}
	}
	var ops []verge.Op
	for _, it := range c.items {
		ops = append(ops, verge.Increment(it.Product, -it.Qty))
	}
	if err := catalogue.Update("levels", ops...); err != nil {
		verge.Log(verge.LevelWarn, "lowering the stock estimates: "+err.Error())
	}
	c.x.json(200, map[string]any{"order": o})
}

func getOrders(x *reply, r *verge.Request, _ string) {
	user, ok := session(x, r)
	if !ok {
		return
	}
	all := map[string]*order{}
	if _, err := orders.Get(user, &all); err != nil {
		x.hostFailed("reading the orders", err)
		return
	}
	list := []*order{}
	for _, o := range all {
		if o.Status == placed {
			list = append(list, o)
		}
	}
	slices.SortFunc(list, func(a, b *order) int {
		if c := cmpStr(b.At, a.At); c != 0 {
			return c
		}
		return cmpStr(a.ID, b.ID)
	})
	x.json(200, map[string]any{"orders": list})
}

// ---- at the central PoP ----

type wanted struct {
	Product string `json:"product"`
	Qty     int64  `json:"qty"`
}

type internalCheckout struct {
	Token string   `json:"token"`
	Key   string   `json:"key"` // user/checkout id
	Items []wanted `json:"items"`
}

type centralResult struct {
	OK  bool     `json:"ok"`
	Out []string `json:"out_of_stock"`
}

// centralCheckout runs at the centre (kind = "central"): it takes every
// unit of a cart there, or none, and records its answer in a central
// document under the checkout's key, so that a retry after a lost answer
// gets the same answer instead of taking again.
func centralCheckout(x *reply, r *verge.Request, _ string) {
	var req internalCheckout
	if err := readJSON(r, &req); err != nil {
		x.fail(400, err.Error())
		return
	}
	if !tokenOK(req.Token) {
		x.fail(401, "this endpoint is for the shop's own functions")
		return
	}
	if req.Key == "" || len(req.Key) > 200 || len(req.Items) == 0 {
		x.fail(400, "key and items are required")
		return
	}
	key := "checkout:" + req.Key
	if doc, _, err := verge.CentralDoc(key); err != nil {
		x.hostFailed("reading the checkout record", err)
		return
	} else if doc != nil {
		x.send(200, "application/json", doc)
		return
	}
	var taken []wanted
	res := centralResult{Out: []string{}}
	var failed error
	for _, it := range req.Items {
		if !validID(it.Product) || it.Qty < 1 {
			failed = errors.New("bad item " + it.Product)
			break
		}
		ok, _, err := verge.Take(stockOf(it.Product), it.Qty)
		if err != nil {
			failed = err
			break
		}
		if !ok {
			res.Out = append(res.Out, it.Product)
			continue
		}
		taken = append(taken, it)
	}
	if failed != nil || len(res.Out) > 0 {
		for _, it := range taken {
			if _, err := verge.Restock(stockOf(it.Product), it.Qty); err != nil {
				verge.Log(verge.LevelError, "giving back "+it.Product+": "+err.Error())
			}
		}
		if failed != nil {
			x.hostFailed("checkout at the centre", failed)
			return
		}
	}
	res.OK = len(res.Out) == 0
	if _, _, err := verge.UpdateCentralDoc(key, 0, verge.Set("ok", res.OK), verge.Set("out_of_stock", res.Out)); err != nil {
		verge.Log(verge.LevelWarn, "recording checkout "+req.Key+": "+err.Error())
	}
	x.json(200, res)
}

// tokenOK compares a token with SHOP_ADMIN_TOKEN in constant time.
func tokenOK(token string) bool {
	want := os.Getenv("SHOP_ADMIN_TOKEN")
	return want != "" && subtle.ConstantTimeCompare([]byte(token), []byte(want)) == 1
}

func sortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
