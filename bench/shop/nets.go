package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/examples/shop/catalogue"
	"github.com/verge-edge/verge/examples/shop/shoppers"
	appbuild "github.com/verge-edge/verge/internal/app"
)

// The networks are `verge net` networks of separate processes, started and
// broken through the verge binary exactly as a user would: the harness
// builds the binary once into its temporary directory.

// bin is the verge binary this run built.
type bin struct{ path string }

// The binary goes to a directory of the user's cache named after the
// repository's path, where go build leaves it alone when it is up to date:
// a second run does not link it again (seconds on this machine).
func buildVerge(ctx context.Context, dir string) (*bin, error) {
	path := filepath.Join(dir, "verge")
	if cache, err := os.UserCacheDir(); err == nil {
		if root, err := filepath.Abs("."); err == nil {
			h := sha256.Sum256([]byte(root))
			bdir := filepath.Join(cache, "verge-bench-shop", hex.EncodeToString(h[:8]))
			if os.MkdirAll(bdir, 0o755) == nil {
				path = filepath.Join(bdir, "verge")
			}
		}
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", path, "./cmd/verge")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build ./cmd/verge (run bench/shop from the repository root): %v\n%s", err, out)
	}
	return &bin{path}, nil
}

// buildShop runs the shop's build commands (verge.toml) once, so that both
// networks can start side by side from the built module.
func buildShop(ctx context.Context) error {
	dir, err := absApp()
	if err != nil {
		return err
	}
	m, err := verge.LoadManifest(dir)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if err := appbuild.Build(ctx, m, &out, &out); err != nil {
		return fmt.Errorf("%w\n%s", err, out.Bytes())
	}
	return nil
}

// gomaxprocs is the GOMAXPROCS of every PoP of the run. A PoP runs guests
// on GOMAXPROCS-1 threads (verge's default is the CPUs + 1: two here), so
// under the central placement the one PoP that runs the shop for every
// city would queue everybody's requests behind a few bcrypt hashes, a
// limit of this machine's process, not of a region. Eight threads per PoP,
// the same in both networks, leave the two placements to share the CPUs
// and differ only by where the work runs.
const gomaxprocs = 8

// spotTimeout is how long an edge PoP waits for the centre before a SPOT
// call fails. The default, 2 s, is a lot for a WAN round trip, but not for
// this shared machine under a run's load: a call that times out after it
// was sent has an unknown outcome, which a checkout must treat as "maybe
// taken" (a unit stranded: undersold). Faults still fail at once: a
// link that is down answers unavailable without waiting.
const spotTimeout = "10s"

func (b *bin) run(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, b.path, args...)
	cmd.Env = append(os.Environ(), fmt.Sprintf("GOMAXPROCS=%d", gomaxprocs)) // inherited by the PoPs net up starts
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("verge %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// placedApp writes a copy of the built shop into dir with its manifest
// saying placement = "central": the same bundle, placed at the centre.
func placedApp(src, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	m, err := os.ReadFile(filepath.Join(src, "verge.toml"))
	if err != nil {
		return err
	}
	// Top-level keys come before the first table.
	manifest := strings.Replace(string(m), "\nname = \"shop\"\n", "\nname = \"shop\"\nplacement = \"central\"\n", 1)
	if manifest == string(m) {
		return fmt.Errorf("%s/verge.toml: no top-level name = \"shop\" line to place the app after", src)
	}
	wasm, err := os.ReadFile(filepath.Join(src, "shop.wasm"))
	if err != nil {
		return fmt.Errorf("%w (buildShop builds it first)", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "verge.toml"), []byte(manifest), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "shop.wasm"), wasm, 0o644)
}

// netUp starts a network of pops PoPs serving app, sharing the compilation
// cache dir with other networks of the run (the module is compiled once).
// The shop is built first (buildShop): no network runs its build commands.
func (b *bin) netUp(ctx context.Context, name, dir, app, cache string, pops int, extra ...string) (*shoppers.Net, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.Symlink(cache, filepath.Join(dir, "cache")); err != nil {
		return nil, err
	}
	args := append([]string{"net", "up", "--dir", dir, "--pops", fmt.Sprint(pops), "--app", app, "--no-build"}, extra...)
	if err := b.run(ctx, args...); err != nil {
		return nil, err
	}
	return shoppers.ReadNet(name, dir)
}

// netDown stops networks (nil ones are skipped), all at once.
func (b *bin) netDown(nets ...*shoppers.Net) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	errs := make([]error, len(nets))
	var wg sync.WaitGroup
	for i, n := range nets {
		if n != nil {
			wg.Go(func() { errs[i] = b.run(ctx, "net", "down", "--dir", n.Dir) })
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

// faults breaks a network through `verge net`.
type faults struct {
	b   *bin
	dir string
}

func (f faults) cmd(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return f.b.run(ctx, append(append([]string{"net"}, args[0], "--dir", f.dir), args[1:]...)...)
}

func (f faults) Kill(id string) error      { return f.cmd("kill", id) }
func (f faults) Restart(id string) error   { return f.cmd("restart", id) }
func (f faults) Partition(id string) error { return f.cmd("partition", id, "all") }
func (f faults) Heal() error               { return f.cmd("heal") }

// scarce are the clearance products, kept below SHOP_CENTRAL_BELOW (40 in
// examples/shop/verge.toml): their checkout takes the stock at the centre.
func scarce(units int64) []catalogue.Product {
	var out []catalogue.Product
	for i := range 10 {
		out = append(out, catalogue.Product{ID: fmt.Sprintf("c%03d", i+1), Name: fmt.Sprintf("Clearance lot %d", i+1),
			Category: "Clearance", Brand: catalogue.Brands[i], Price: 9.99, Stock: units})
	}
	return out
}

// load puts the catalogue into the shop through its centre (the admin
// endpoint is a central function), a few at a time, recording every unit
// added in the ledger, and waits until every PoP serves the last product.
func load(ctx context.Context, n *shoppers.Net, products []catalogue.Product, l *shoppers.Ledger) error {
	client := &http.Client{Timeout: 30 * time.Second}
	url := "http://" + n.Central().HTTP
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	work := make(chan catalogue.Product)
	for range 6 {
		wg.Go(func() {
			for p := range work {
				changed, err := catalogue.Put(client, url, "shop-admin", p)
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				mu.Unlock()
				l.AddStock(p.ID, changed)
			}
		})
	}
	for _, p := range products {
		work <- p
	}
	close(work)
	wg.Wait()
	if first != nil {
		return first
	}
	last := products[len(products)-1].ID
	for _, p := range n.PoPs {
		for deadline := time.Now().Add(60 * time.Second); ; {
			resp, err := client.Get("http://" + p.HTTP + "/api/products/" + last)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("%s network: %s does not serve the catalogue 60 s after it was loaded", n.Name, p.ID)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

// loadAvg is the 1-minute load average (0 when unknown).
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	var v float64
	fmt.Sscan(string(b), &v)
	return v
}

// prefill makes every edge PoP of n sell one unit of each of products,
// ten to a checkout, so that each holds an escrow of them: the state of a
// shop that has been selling for a while, where only a product never sold
// at a PoP costs its first buyer there a round trip for the grant.
func prefill(ctx context.Context, n *shoppers.Net, products []string, l *shoppers.Ledger) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(n.PoPs))
	for _, p := range n.PoPs {
		if p.Central { // the centre holds no escrow
			continue
		}
		wg.Go(func() {
			c, err := shoppers.NewClient(shoppers.City{Name: "prefill at " + p.ID, Lat: p.Lat, Lon: p.Lon}, n, shoppers.Leg{})
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			s := c.NewShopper()
			s.Patience = 30 * time.Second
			user := "prefill-" + p.ID
			for _, step := range []struct {
				path string
				want int
			}{{"/api/register", 201}, {"/api/login", 200}} {
				if smp, m := s.Do(ctx, "", "POST", step.path, map[string]string{"username": user, "password": "prefill-password"}); smp.Status != step.want {
					errs <- fmt.Errorf("prefill at %s: %s: %d %v", p.ID, step.path, smp.Status, m)
					return
				}
			}
			j := &shoppers.Journey{User: user}
			for i := 0; i < len(products); i += 10 {
				for _, id := range products[i:min(i+10, len(products))] {
					if smp, m := s.Do(ctx, "", "POST", "/api/cart/items", map[string]any{"product": id}); smp.Status != 200 {
						errs <- fmt.Errorf("prefill at %s: adding %s: %d %v", p.ID, id, smp.Status, m)
						return
					}
				}
				id := fmt.Sprintf("prefill-%d", i)
				smp, m := s.Do(ctx, "", "POST", "/api/checkout", map[string]string{"id": id})
				switch smp.Status {
				case 200:
					j.Orders = append(j.Orders, id)
				default:
					j.Unsure = append(j.Unsure, id)
					l.AddJourney(j)
					errs <- fmt.Errorf("prefill at %s: checkout: %d %v", p.ID, smp.Status, m)
					return
				}
			}
			l.AddJourney(j)
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}
