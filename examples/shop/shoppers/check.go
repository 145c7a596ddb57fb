package shoppers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Ledger is what the shop told its shoppers and its operator: the
// registrations and orders acknowledged, those left without a definite
// answer, and every unit the admin endpoint added to (or took from) a stock
// at the centre. Check compares it with what the network holds.
type Ledger struct {
	mu sync.Mutex
	// Users are the acknowledged registrations: username -> password.
	Users map[string]string
	// Races are registrations of one name tried at once from several
	// places, with different passwords: name -> the passwords of the
	// attempts acknowledged (201), and of those without a definite answer.
	Races map[string]*Race
	// Orders: username -> checkout id -> acknowledged (true) or sent
	// without a definite answer (false).
	Orders map[string]map[string]bool
	// Added: product -> units put into its stock at the centre (the
	// catalogue's initial stock plus restocks, from "changed_by").
	Added map[string]int64
}

// Race is one name registered from several places at once.
type Race struct {
	Won    []string // passwords whose registration was acknowledged
	Unsure []string // passwords whose registration got no definite answer
	Lost   int      // attempts told the name is taken
}

func NewLedger() *Ledger {
	return &Ledger{Users: map[string]string{}, Races: map[string]*Race{}, Orders: map[string]map[string]bool{}, Added: map[string]int64{}}
}

// AddJourney records what a journey was told.
func (l *Ledger) AddJourney(j *Journey) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if j.Registered {
		l.Users[j.User] = j.Password
	}
	if len(j.Orders)+len(j.Unsure) > 0 && l.Orders[j.User] == nil {
		l.Orders[j.User] = map[string]bool{}
	}
	for _, id := range j.Orders {
		l.Orders[j.User][id] = true
	}
	for _, id := range j.Unsure {
		l.Orders[j.User][id] = false
	}
}

// AddStock records units put into (n > 0) or taken out of a stock by the
// admin endpoint.
func (l *Ledger) AddStock(product string, n int64) {
	l.mu.Lock()
	l.Added[product] += n
	l.mu.Unlock()
}

// AddRace records one attempt of a raced registration.
func (l *Ledger) AddRace(name, password string, status int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.Races[name]
	if r == nil {
		r = &Race{}
		l.Races[name] = r
	}
	switch status {
	case 201:
		r.Won = append(r.Won, password)
	case 409:
		r.Lost++
	default:
		r.Unsure = append(r.Unsure, password)
	}
}

// Invariants is what Check found.
type Invariants struct {
	// Orders placed at the centre (its backup of every user's orders),
	// acknowledged to a shopper, and sent without a definite answer.
	Orders, Acked, Unsure int
	// Lost are acknowledged orders the network does not hold (user/id);
	// Unexpected placed orders no shopper checked out.
	Lost       []string `json:"lost"`
	Unexpected []string `json:"unexpected"`
	// Held counts orders left pending or returning: units taken for a
	// retry that never came (they count as reserved below).
	Held  int        `json:"held"`
	Units StockTotal `json:"units"`
	// Oversold are products with more units sold than were ever added;
	// Stranded products whose units are neither sold, held, at the centre
	// nor in any escrow (product -> units).
	Oversold []string         `json:"oversold"`
	Stranded map[string]int64 `json:"stranded"`
	// Names: registrations checked; OwnedTwice names whose owner is not
	// the one registration acknowledged, or that more than one password
	// owns, or whose account differs between PoPs.
	Names      int      `json:"names"`
	OwnedTwice []string `json:"owned_twice"`
	// OK: no acknowledged order lost, no order nobody placed, nothing
	// oversold, no name owned twice. Conserved: besides, no unit stranded.
	// A unit is stranded when its take had an unknown outcome (the centre
	// died before answering) or its PoP was killed between taking it and
	// storing the order: the platform undersells rather than oversell, and
	// it cannot tell which of those takes happened.
	OK        bool `json:"ok"`
	Conserved bool `json:"conserved"`
	// Comparisons: how many times Check compared the ledger with the
	// network before it returned (replication settles in between).
	Comparisons int `json:"comparisons"`
}

// StockTotal adds up every product's units.
type StockTotal struct {
	Added    int64 `json:"added"` // initial + restocked
	Sold     int64 `json:"sold"`  // in placed orders
	Held     int64 `json:"held"`  // taken by pending or returning checkouts
	AtCentre int64 `json:"at_centre"`
	Escrowed int64 `json:"escrowed"` // in PoPs' escrows
	Stranded int64 `json:"stranded"` // added - all of the above
}

// Check compares the ledger with the network until they agree, or their
// difference has stayed the same for five comparisons (a second apart), or
// timeout passes (replication and repair after a heal take a few seconds),
// and returns the last comparison.
func Check(ctx context.Context, n *Net, l *Ledger, timeout time.Duration) (*Invariants, error) {
	deadline := time.Now().Add(timeout)
	var last StockTotal
	same := 0
	for k := 1; ; k++ {
		inv, err := check(ctx, n, l)
		if inv != nil {
			inv.Comparisons = k
		}
		if err == nil && inv.Conserved {
			return inv, nil
		}
		if err == nil && inv.OK && inv.Units == last {
			same++
		} else {
			same = 0
		}
		if inv != nil {
			last = inv.Units
		}
		if same >= 4 || time.Now().After(deadline) || ctx.Err() != nil {
			return inv, err
		}
		time.Sleep(time.Second)
	}
}

func check(ctx context.Context, n *Net, l *Ledger) (*Invariants, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := &admin{n: n, client: &http.Client{Timeout: 10 * time.Second}}
	inv := &Invariants{Stranded: map[string]int64{}, Lost: []string{}, Unexpected: []string{}, Oversold: []string{}, OwnedTwice: []string{}}
	sold, held := map[string]int64{}, map[string]int64{}
	users := make([]string, 0, len(l.Orders))
	for u := range l.Orders {
		users = append(users, u)
	}
	slices.Sort(users)
	for _, u := range users {
		var orders map[string]struct {
			Status string `json:"status"`
			Items  []struct {
				Product string
				Qty     int64
			} `json:"items"`
			Taken map[string]int64 `json:"taken"`
		}
		if _, err := a.get(ctx, n.Central(), "/v1/apps/shop/collections/orders/docs/"+url.PathEscape(u), &orders); err != nil {
			return inv, err
		}
		for id, acked := range l.Orders[u] {
			if acked {
				inv.Acked++
				if orders[id].Status != "placed" {
					inv.Lost = append(inv.Lost, u+"/"+id)
				}
			} else {
				inv.Unsure++
			}
		}
		for id, o := range orders {
			switch o.Status {
			case "placed":
				inv.Orders++
				if _, ok := l.Orders[u][id]; !ok {
					inv.Unexpected = append(inv.Unexpected, u+"/"+id)
				}
				for _, it := range o.Items {
					sold[it.Product] += it.Qty
				}
			default:
				inv.Held++
				for p, q := range o.Taken {
					held[p] += q
				}
			}
		}
	}
	products := make([]string, 0, len(l.Added))
	for p := range l.Added {
		products = append(products, p)
	}
	slices.Sort(products)
	// The centre's stock of every product, at the centre (no round trip),
	// and what each edge PoP holds in escrow, all stocks at once from its
	// metrics: asking each edge PoP for each counter cost a WAN round trip
	// per product and PoP (its answer includes the centre's remaining).
	centre, escrowed := map[string]int64{}, map[string]int64{}
	var mu sync.Mutex
	err := parallel(ctx, 32, len(products), func(i int) error {
		p := products[i]
		var c struct {
			Remaining int64 `json:"remaining"`
		}
		if _, err := a.get(ctx, n.Central(), "/v1/apps/shop/spot/counters/stock-"+p, &c); err != nil {
			return err
		}
		mu.Lock()
		centre[p] = c.Remaining
		mu.Unlock()
		return nil
	})
	if err != nil {
		return inv, err
	}
	err = parallel(ctx, 8, len(n.PoPs), func(i int) error {
		q := n.PoPs[i]
		if q.Central { // holds no escrow
			return nil
		}
		units, err := a.escrows(ctx, q, "shop")
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		for counter, u := range units {
			if p, ok := strings.CutPrefix(counter, "stock-"); ok {
				escrowed[p] += u
			}
		}
		return nil
	})
	if err != nil {
		return inv, err
	}
	for _, p := range products {
		centre, escrowed := centre[p], escrowed[p]
		left := l.Added[p] - sold[p] - held[p] - centre - escrowed
		inv.Units.Added += l.Added[p]
		inv.Units.Sold += sold[p]
		inv.Units.Held += held[p]
		inv.Units.AtCentre += centre
		inv.Units.Escrowed += escrowed
		inv.Units.Stranded += left
		switch {
		case sold[p] > l.Added[p] || left < 0:
			inv.Oversold = append(inv.Oversold, p)
		case left > 0:
			inv.Stranded[p] = left
		}
	}
	if err := checkNames(ctx, a, l, inv); err != nil {
		return inv, err
	}
	inv.OK = len(inv.Lost) == 0 && len(inv.Unexpected) == 0 && len(inv.Oversold) == 0 && len(inv.OwnedTwice) == 0
	inv.Conserved = inv.OK && len(inv.Stranded) == 0
	return inv, nil
}

// checkNames: each acknowledged registration owns its name, with the same
// account at every PoP; a raced name has at most one winner.
func checkNames(ctx context.Context, a *admin, l *Ledger, inv *Invariants) error {
	owner := func(name string) (string, error) {
		// Claiming with a probe owner answers the current owner without
		// changing anything when the name is taken; a free name is claimed
		// by the probe, then released.
		const probe = "probe:invariants"
		var res struct {
			Claimed bool   `json:"claimed"`
			Owner   string `json:"owner"`
		}
		path := "/v1/apps/shop/spot/claims/users/" + url.PathEscape(name)
		if _, err := a.post(ctx, a.n.Central(), path, map[string]string{"owner": probe}, &res); err != nil {
			return "", err
		}
		if res.Claimed {
			a.post(ctx, a.n.Central(), path+"/release", map[string]string{"owner": probe}, nil)
			return "", nil
		}
		return res.Owner, nil
	}
	accountsAgree := func(name, hash string) (bool, error) {
		for _, p := range a.n.PoPs {
			var acc struct {
				Hash string `json:"hash"`
			}
			if _, err := a.get(ctx, p, "/v1/apps/shop/collections/accounts/docs/"+url.PathEscape(name), &acc); err != nil {
				return false, err
			}
			if acc.Hash != hash {
				return false, nil
			}
		}
		return true, nil
	}
	// The acknowledged registrations, then the raced names: one
	// acknowledged winner at most, and if there is one, the name is owned
	// and every PoP holds the same account for it.
	var names []string
	for u := range l.Users {
		names = append(names, u)
	}
	for name, r := range l.Races {
		if len(r.Won) > 0 {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	var mu sync.Mutex
	err := parallel(ctx, 16, len(names), func(i int) error {
		name := names[i]
		o, err := owner(name)
		if err != nil {
			return err
		}
		ok, err := accountsAgree(name, o)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if r := l.Races[name]; o == "" || !ok || (r != nil && len(r.Won) > 1) {
			inv.OwnedTwice = append(inv.OwnedTwice, name)
		}
		return nil
	})
	inv.Names = len(names)
	slices.Sort(inv.OwnedTwice)
	return err
}

// parallel runs fn(0..n-1), at most width at a time, and returns the first
// error.
func parallel(ctx context.Context, width, n int, fn func(i int) error) error {
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	sem := make(chan struct{}, width)
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(i); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// escrows returns the units p holds in escrow of each of app's stocks,
// from the verge_stock_escrow_units gauges of its metrics.
func (a *admin) escrows(ctx context.Context, p PoP, app string) (map[string]int64, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+p.Admin+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.n.Token)
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s metrics: %w", p.ID, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("%s metrics: %s", p.ID, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s metrics: %w", p.ID, err)
	}
	return parseEscrows(b, app)
}

// parseEscrows reads the verge_stock_escrow_units samples of app from a
// Prometheus text exposition: name{label="value",...} number.
func parseEscrows(b []byte, app string) (map[string]int64, error) {
	out := map[string]int64{}
	for line := range strings.SplitSeq(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "verge_stock_escrow_units{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			return nil, fmt.Errorf("metrics: malformed sample %q", line)
		}
		var gotApp, counter string
		for kv := range strings.SplitSeq(labels, ",") {
			k, v, _ := strings.Cut(kv, "=")
			v, err := strconv.Unquote(v)
			if err != nil {
				return nil, fmt.Errorf("metrics: malformed label in %q", line)
			}
			switch k {
			case "app":
				gotApp = v
			case "counter":
				counter = v
			}
		}
		if gotApp != app || counter == "" {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil || f < 0 || f != float64(int64(f)) {
			return nil, fmt.Errorf("metrics: escrow of %s is %q, not a count of units", counter, value)
		}
		out[counter] = int64(f)
	}
	return out, nil
}

// admin calls PoPs' admin APIs with the network's operator token.
type admin struct {
	n      *Net
	client *http.Client
}

func (a *admin) get(ctx context.Context, p PoP, path string, v any) (int, error) {
	return a.do(ctx, "GET", p, path, nil, v)
}

func (a *admin) post(ctx context.Context, p PoP, path string, body, v any) (int, error) {
	return a.do(ctx, "POST", p, path, body, v)
}

// do sends one admin request; 404 leaves v as it is, 409 is decoded like
// 200 (a taken claim), anything else not 2xx is an error.
func (a *admin) do(ctx context.Context, method string, p PoP, path string, body, v any) (int, error) {
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+p.Admin+path, r)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+a.n.Token)
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s admin %s %s: %w", p.ID, method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	switch {
	case resp.StatusCode == 404:
		return 404, nil
	case resp.StatusCode/100 == 2 || resp.StatusCode == 409:
		if v != nil {
			if err := json.Unmarshal(b, v); err != nil {
				return resp.StatusCode, fmt.Errorf("%s admin %s %s: %w: %s", p.ID, method, path, err, b)
			}
		}
		return resp.StatusCode, nil
	}
	return resp.StatusCode, fmt.Errorf("%s admin %s %s: %s: %s", p.ID, method, path, resp.Status, bytes.TrimSpace(b))
}
