package verge

import (
	"errors"
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
