package verge

import (
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const good = `
name = "shop"

[[function]]
name = "hello"
module = "hello.wasm"
executor = "wagi"
routes = ["/hello", "/hello/*"]

[[function]]
name = "cart"
module = "build/cart.wasm"
executor = "verge"
isolation = "strict"
routes = ["/cart/*"]
build = "make"
env = { GREETING = "hi" }
[function.limits]
cpu_time = "20ms"
memory = "64MiB"
max_instances = 4

[[collection]]
name = "carts"
scope = "local"
regions = ["eu"]

[[collection]]
name = "teams"
scope = "group:eu-west"
`

func TestParseManifest(t *testing.T) {
	t.Parallel()
	m, err := ParseManifest("/apps/shop/verge.toml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "shop" || len(m.Functions) != 2 || len(m.Collections) != 2 {
		t.Fatalf("parsed %+v", m)
	}
	h, c := m.Functions[0], m.Functions[1]
	if h.Module != "/apps/shop/hello.wasm" || h.Executor != ExecutorWAGI || h.Limits != DefaultLimits {
		t.Fatalf("hello: %+v", h)
	}
	if c.Module != filepath.FromSlash("/apps/shop/build/cart.wasm") || c.Isolation != IsolationStrict || c.Build != "make" || c.Env["GREETING"] != "hi" {
		t.Fatalf("cart: %+v", c)
	}
	if c.Limits.CPUTime != 20*time.Millisecond || c.Limits.Memory != 64<<20 || c.Limits.MaxInstances != 4 || c.Limits.WallTime != DefaultLimits.WallTime {
		t.Fatalf("cart limits: %+v", c.Limits)
	}
	if m.Collections[0].Scope.String() != "local" || m.Collections[0].Regions[0] != "eu" || m.Collections[1].Scope != (Scope{Kind: "group", Group: "eu-west"}) {
		t.Fatalf("collections: %+v", m.Collections)
	}
}

func TestManifestRoom(t *testing.T) {
	t.Parallel()
	src := "name = \"chat\"\n[[function]]\nname = \"chat\"\nmodule = \"c.wasm\"\nexecutor = \"verge\"\nkind = \"room\"\nroutes = [\"/chat/*\"]\n" +
		"[function.room]\nhibernate_after = \"2s\"\nmax_connections = 50\nmax_message = \"64KiB\"\nplacement = \"central\"\n"
	m, err := ParseManifest("/x/verge.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	r := m.Functions[0].Room
	if m.Functions[0].Kind != KindRoom || r.HibernateAfter != 2*time.Second || r.MaxConnections != 50 || r.MaxMessage != 64<<10 ||
		r.Placement != "central" || r.MessagesPerSecond != DefaultRoomOptions.MessagesPerSecond || r.IdleTimeout != DefaultRoomOptions.IdleTimeout {
		t.Fatalf("room options: %+v", r)
	}
	m, err = ParseManifest("/x/verge.toml", []byte(strings.SplitN(src, "[function.room]", 2)[0]))
	if err != nil || m.Functions[0].Room != DefaultRoomOptions {
		t.Fatalf("default room options: %+v %v", m.Functions[0].Room, err)
	}
}

func TestManifestErrors(t *testing.T) {
	t.Parallel()
	fn := "[[function]]\nname = \"f\"\nmodule = \"f.wasm\"\nexecutor = \"verge\"\nroutes = [\"/\"]\n"
	cases := []struct{ name, toml, want string }{
		{"syntax", "name = ", "line 1: "},
		{"no name", fn, `name: "" is not a valid app name`},
		{"no functions", `name = "a"`, "function: no [[function]] defined"},
		{"unknown field", "name = \"a\"\ncolour = 1\n" + fn, "colour: unknown field"},
		{"unknown function field", "name = \"a\"\n" + fn + "modul = \"x\"\n", "function.modul: unknown field"},
		{"wrong type", "name = 1\n" + fn, "name"},
		{"bad executor", "name = \"a\"\n" + strings.Replace(fn, `"verge"`, `"cgi"`, 1), `function[0].executor: "cgi" is not an executor; expected "wagi" or "verge"`},
		{"missing module", "name = \"a\"\n" + strings.Replace(fn, "module = \"f.wasm\"\n", "", 1), "function[0].module: missing"},
		{"build without module", "name = \"a\"\n" + strings.Replace(fn, "module = \"f.wasm\"\n", "build = \"make\"\n", 1), "function[0].module: missing; expected the path of a .wasm file relative to the manifest; module must name the file the build command produces"},
		{"bad route", "name = \"a\"\n" + strings.Replace(fn, `["/"]`, `["hello"]`, 1), `function[0].routes[0]: "hello" must start with /`},
		{"wildcard inside", "name = \"a\"\n" + strings.Replace(fn, `["/"]`, `["/a/*/b"]`, 1), "a wildcard is only allowed as a final"},
		{"duplicate route", "name = \"a\"\n" + fn + strings.Replace(fn, `"f"`, `"g"`, 1), `function[1].routes[0]: route "/" is already served by function "f"`},
		{"bad isolation", "name = \"a\"\n" + fn + "isolation = \"loose\"\n", `function[0].isolation: "loose" is not an isolation mode`},
		{"room exact route", "name = \"a\"\n" + fn + "kind = \"room\"\n", `function[0].routes[0]: "/": a room function's routes are prefixes ending in "/*"`},
		{"room on wagi", "name = \"a\"\n" + strings.Replace(strings.Replace(fn, `"verge"`, `"wagi"`, 1), `["/"]`, `["/r/*"]`, 1) + "kind = \"room\"\n", `function[0].executor: a room function runs on the verge executor`},
		{"room options on http", "name = \"a\"\n" + fn + "[function.room]\nhibernate_after = \"1s\"\n", `function[0].room: [function.room] applies to kind = "room" functions only`},
		{"room bad hibernate", "name = \"a\"\n" + strings.Replace(fn, `["/"]`, `["/r/*"]`, 1) + "kind = \"room\"\n[function.room]\nhibernate_after = \"soon\"\n", `function[0].room.hibernate_after: "soon" is not a positive duration`},
		{"room bad placement", "name = \"a\"\n" + strings.Replace(fn, `["/"]`, `["/r/*"]`, 1) + "kind = \"room\"\n[function.room]\nplacement = \"a b\"\n", `function[0].room.placement: "a b" is not a placement`},
		{"bad counter grant", "name = \"a\"\n" + fn + "[[counter]]\nname = \"s\"\n", `counter[0].grant: missing or 0`},
		{"bare star counter", "name = \"a\"\n" + fn + "[[counter]]\nname = \"*\"\ngrant = 1\n", `counter[0].name: "*" is not a valid counter pattern`},
		{"star inside counter", "name = \"a\"\n" + fn + "[[counter]]\nname = \"a*b\"\ngrant = 1\n", `counter[0].name: "a*b" is not a valid counter name`},
		{"two stars", "name = \"a\"\n" + fn + "[[counter]]\nname = \"a**\"\ngrant = 1\n", `counter[0].name: "a**" is not a valid counter pattern`},
		{"pattern twice", "name = \"a\"\n" + fn + "[[counter]]\nname = \"s-*\"\ngrant = 1\n[[counter]]\nname = \"s-*\"\ngrant = 2\n", `counter[1].name: counter "s-*" is defined twice`},
		{"negative threshold", "name = \"a\"\n" + fn + "[[counter]]\nname = \"s\"\ngrant = 1\nthreshold = -1\n", `counter[0].threshold: -1: must be ≥ 0`},
		{"bad duration", "name = \"a\"\n" + fn + "[function.limits]\ncpu_time = \"fast\"\n", `function[0].limits.cpu_time: "fast" is not a positive duration`},
		{"bad size", "name = \"a\"\n" + fn + "[function.limits]\nmemory = \"lots\"\n", `function[0].limits.memory: "lots" is not a positive size`},
		{"memory over 4 GiB", "name = \"a\"\n" + fn + "[function.limits]\nmemory = \"5GiB\"\n", "exceeds the 4 GiB"},
		{"bad scope", "name = \"a\"\n" + fn + "[[collection]]\nname = \"c\"\nscope = \"planet\"\n", `collection[0].scope: "planet" is not a scope`},
		{"missing scope", "name = \"a\"\n" + fn + "[[collection]]\nname = \"c\"\n", "collection[0].scope: missing"},
		{"bad placement", "name = \"a\"\nplacement = \"moon\"\n" + fn, `placement: "moon" is not a placement`},
		{"bad domain", "name = \"a\"\ndomains = [\"shop example\"]\n" + fn, `domains[0]: "shop example" is not a host name`},
		{"localhost domain", "name = \"a\"\ndomains = [\"a.localhost\"]\n" + fn, `domains[0]: "a.localhost" is not a host name`},
		{"duplicate domain", "name = \"a\"\ndomains = [\"a.example.com\", \"A.example.com\"]\n" + fn, `domains[1]: "a.example.com" is listed twice`},
		{"bad health", "name = \"a\"\nhealth = \"healthz\"\n" + fn, `health: "healthz" is not a path`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseManifest("/x/verge.toml", []byte(c.toml))
			var me *ManifestError
			if !errors.As(err, &me) {
				t.Fatalf("got %v, want a *ManifestError", err)
			}
			if !strings.HasPrefix(err.Error(), "/x/verge.toml: ") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q should name the file and contain %q", err, c.want)
			}
		})
	}
}

func TestAppPlacementDomainsHealth(t *testing.T) {
	t.Parallel()
	fn := "[[function]]\nname = \"f\"\nmodule = \"f.wasm\"\nexecutor = \"verge\"\nroutes = [\"/\"]\n"
	m, err := ParseManifest("/x/verge.toml", []byte("name = \"a\"\n"+fn))
	if err != nil || m.Placement != PlacementEdge || m.Domains != nil || m.Health != "" {
		t.Fatalf("defaults: %+v %v", m, err)
	}
	m, err = ParseManifest("/x/verge.toml", []byte("name = \"a\"\nplacement = \"central\"\ndomains = [\"Shop.Example.com\"]\nhealth = \"/healthz\"\n"+fn))
	if err != nil || m.Placement != PlacementCentral || len(m.Domains) != 1 || m.Domains[0] != "shop.example.com" || m.Health != "/healthz" {
		t.Fatalf("set: %+v %v", m, err)
	}
}

// A counter pattern declares every stock whose name starts with its prefix;
// a counter declared by its exact name wins over a pattern, and the longest
// matching prefix over a shorter one.
func TestCounterPatterns(t *testing.T) {
	t.Parallel()
	m, err := ParseManifest("/x/verge.toml", []byte(`name = "a"
[[function]]
name = "f"
module = "f.wasm"
executor = "verge"
routes = ["/"]
[[counter]]
name = "stock-*"
threshold = 20
grant = 10
[[counter]]
name = "stock-vip-*"
threshold = 2
grant = 1
[[counter]]
name = "stock-gold"
grant = 5
`))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"stock-p1": "stock-*", "stock-vip-7": "stock-vip-*", "stock-gold": "stock-gold",
		"stock-golden": "stock-*", "stock-vip-": "stock-*",
		"stock-": "", "stock": "", "other": "", "Stock-p1": "",
	} {
		c, ok := m.Counter(name)
		if ok != (want != "") || c.Name != want {
			t.Errorf("Counter(%q) = %q, %v; want %q", name, c.Name, ok, want)
		}
	}
	if c, _ := m.Counter("stock-p1"); !c.Pattern() || c.Prefix() != "stock-" || c.Threshold != 20 || c.Grant != 10 {
		t.Errorf("stock-p1 is declared by %+v", c)
	}
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]uint64{"4096": 4096, "64KiB": 64 << 10, "128MiB": 128 << 20, "1GB": 1e9, "2 GiB": 2 << 30} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "12XB", "-1", "9999999999999MiB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) succeeded", in)
		}
	}
}

func TestBackends(t *testing.T) {
	t.Parallel()
	fn := "[[function]]\nname = \"f\"\nmodule = \"f.wasm\"\nexecutor = \"verge\"\nroutes = [\"/\"]\n"
	m, err := ParseManifest("/x/verge.toml", []byte("name = \"a\"\n"+fn+`
[[backend]]
name = "origin"
url = "HTTPS://API.Example.com/"
connect_timeout = "500ms"
first_byte_timeout = "5s"
timeout = "30s"
ca_file = "certs/ca.pem"
sni = "Origin.Example.com"
max_body = "64MiB"

[[backend]]
name = "local"
url = "http://127.0.0.1:8081"
allow_private = true

[[backend]]
name = "v6"
url = "http://[2606:4700::1111]:8080"
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Backend{
		{Name: "origin", URL: "https://api.example.com", ConnectTimeout: 500 * time.Millisecond, FirstByteTimeout: 5 * time.Second,
			Timeout: 30 * time.Second, CAFile: filepath.FromSlash("/x/certs/ca.pem"), SNI: "origin.example.com", MaxBody: 64 << 20},
		{Name: "local", URL: "http://127.0.0.1:8081", AllowPrivate: true},
		{Name: "v6", URL: "http://[2606:4700::1111]:8080"},
	}
	if len(m.Backends) != len(want) {
		t.Fatalf("backends: %+v", m.Backends)
	}
	for i := range want {
		if m.Backends[i] != want[i] {
			t.Errorf("backend[%d] = %+v, want %+v", i, m.Backends[i], want[i])
		}
	}
	if m, err := ParseManifest("/x/verge.toml", []byte("name = \"a\"\n"+fn)); err != nil || m.Backends != nil {
		t.Fatalf("no backends: %+v %v", m, err)
	}
}

func TestBackendErrors(t *testing.T) {
	t.Parallel()
	app := "name = \"a\"\n[[function]]\nname = \"f\"\nmodule = \"f.wasm\"\nexecutor = \"verge\"\nroutes = [\"/\"]\n"
	be := func(fields string) string { return app + "[[backend]]\nname = \"o\"\n" + fields }
	cases := []struct{ name, toml, want string }{
		{"no name", app + "[[backend]]\nurl = \"https://a.example\"\n", `backend[0].name: "" is not a valid backend name`},
		{"twice", be("url = \"https://a.example\"\n") + "[[backend]]\nname = \"o\"\nurl = \"https://b.example\"\n", `backend[1].name: backend "o" is defined twice`},
		{"no url", be(""), "backend[0].url: missing"},
		{"scheme", be("url = \"ftp://a.example\"\n"), "the scheme must be http or https"},
		{"no host", be("url = \"https://\"\n"), "has no host"},
		{"credentials", be("url = \"https://u:p@a.example\"\n"), "holds credentials"},
		{"path", be("url = \"https://a.example/api\"\n"), "a backend is an origin"},
		{"query", be("url = \"https://a.example?x=1\"\n"), "a backend is an origin"},
		{"port", be("url = \"https://a.example:99999\"\n"), `port "99999" is not 1-65535`},
		{"bad host", be("url = \"https://a b.example\"\n"), "is not a URL"},
		{"loopback", be("url = \"http://127.0.0.1:8080\"\n"), `backend[0].url: "127.0.0.1" is a loopback address; a backend reaches public addresses only unless it sets allow_private = true`},
		{"localhost", be("url = \"http://localhost:8080\"\n"), `"localhost" is a loopback name`},
		{"private", be("url = \"http://10.1.2.3\"\n"), "a private address"},
		{"link-local", be("url = \"http://169.254.169.254\"\n"), "a link-local address"},
		{"cgnat", be("url = \"http://100.64.0.1\"\n"), "carrier-grade NAT"},
		{"v6 loopback", be("url = \"http://[::1]:80\"\n"), "a loopback address"},
		{"mapped", be("url = \"http://[::ffff:10.0.0.1]\"\n"), "a private address"},
		{"timeout", be("url = \"https://a.example\"\ntimeout = \"soon\"\n"), `backend[0].timeout: "soon" is not a positive duration`},
		{"negative", be("url = \"https://a.example\"\nconnect_timeout = \"-1s\"\n"), `backend[0].connect_timeout: "-1s" is not a positive duration`},
		{"max_body", be("url = \"https://a.example\"\nmax_body = \"big\"\n"), `backend[0].max_body: "big" is not a positive size`},
		{"ca over http", be("url = \"http://a.example\"\nca_file = \"ca.pem\"\n"), "backend[0].ca_file: only applies to an https backend"},
		{"sni over http", be("url = \"http://a.example\"\nsni = \"a.example\"\n"), "backend[0].sni: only applies to an https backend"},
		{"sni ip", be("url = \"https://a.example\"\nsni = \"1.2.3.4\"\n"), `backend[0].sni: "1.2.3.4" is not a host name`},
		{"unknown field", be("url = \"https://a.example\"\nretries = 3\n"), "backend.retries: unknown field"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseManifest("/x/verge.toml", []byte(c.toml))
			var me *ManifestError
			if !errors.As(err, &me) {
				t.Fatalf("got %v, want a *ManifestError", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q should contain %q", err, c.want)
			}
		})
	}
}

func TestForbiddenAddress(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"0.0.0.0", "0.1.2.3", "127.0.0.1", "127.255.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1",
		"169.254.169.254", "100.64.0.1", "100.127.255.254", "192.0.0.8", "192.0.2.1", "198.18.0.1", "198.51.100.7",
		"203.0.113.9", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
		"::", "::1", "::ffff:127.0.0.1", "::ffff:192.168.0.1", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1",
		"2001:db8::1", "2001::1", "2002:7f00:1::1", "64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b:1::1", "fec0::1", "100::1"} {
		if ForbiddenAddress(netip.MustParseAddr(s)) == "" {
			t.Errorf("%s is allowed, want forbidden", s)
		}
	}
	for _, s := range []string{"1.1.1.1", "8.8.8.8", "93.184.216.34", "100.63.255.255", "100.128.0.1", "172.32.0.1",
		"2606:4700::1111", "2a00:1450:4001::200e", "64:ff9b::808:808", "::ffff:8.8.8.8"} {
		if why := ForbiddenAddress(netip.MustParseAddr(s)); why != "" {
			t.Errorf("%s is forbidden (%s), want allowed", s, why)
		}
	}
}
