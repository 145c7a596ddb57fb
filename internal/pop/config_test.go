package pop

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/verge-edge/verge/internal/netsim"
)

// A PoP's layer holds both addresses of each peer: forwarded HTTP requests
// cross the same emulated link as the mesh, and a partition cuts both.
func TestConfigLayerCoversGateways(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "pop.toml")
	if err := os.WriteFile(path, []byte(`
id = "sfo"
data = "data"

[[pop]]
id = "ord"
region = "us"
lat = 41.98
lon = -87.9
central = true
number = 1
mesh = "127.0.0.1:7422"
http = "127.0.0.1:8081"

[[pop]]
id = "sfo"
region = "us"
lat = 37.62
lon = -122.38
number = 2
mesh = "127.0.0.1:7423"
http = "127.0.0.1:8082"
`), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	_, layer, err := c.Options()
	if err != nil {
		t.Fatal(err)
	}
	if err := layer.Partition("ord"); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"127.0.0.1:7422", "127.0.0.1:8081"} {
		var pe *netsim.PartitionError
		if _, err := layer.Dial("tcp", addr); !errors.As(err, &pe) || pe.Peer != "ord" {
			t.Errorf("dial %s with ord partitioned: %v, want a PartitionError for ord", addr, err)
		}
	}
}

// [http_cache] sizes the PoP's HTTP cache.
func TestConfigHTTPCache(t *testing.T) {
	t.Parallel()
	write := func(extra string) (*Config, error) {
		path := filepath.Join(t.TempDir(), "pop.toml")
		body := "id = \"ord\"\ndata = \"data\"\n" + extra + "\n[[pop]]\nid = \"ord\"\ncentral = true\nnumber = 1\nmesh = \"127.0.0.1:7422\"\n"
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return LoadConfig(path)
	}
	c, err := write("[http_cache]\nmemory_mb = 64\ndisk = true\ndisk_mb = 512\n")
	if err != nil {
		t.Fatal(err)
	}
	o, _, err := c.Options()
	if err != nil {
		t.Fatal(err)
	}
	if want := (HTTPCacheOptions{MemoryBytes: 64 << 20, Disk: true, DiskBytes: 512 << 20}); o.HTTPCache != want {
		t.Errorf("HTTPCache = %+v, want %+v", o.HTTPCache, want)
	}
	if _, err := write("[http_cache]\nmemory_mb = -1\n"); err == nil {
		t.Error("a negative memory_mb was accepted")
	}
	if _, err := write("[http_cache]\nmemroy_mb = 1\n"); err == nil {
		t.Error("an unknown key in [http_cache] was accepted")
	}
}
