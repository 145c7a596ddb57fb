// Package verge holds the domain types of Verge: an app's manifest, its
// functions, their limits and its collections. Everything that does I/O lives
// in internal/ packages; the CLI lives in cmd/verge.
package verge

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// ManifestFile is the name of an app's manifest inside its directory.
const ManifestFile = "verge.toml"

// Manifest is a parsed and validated verge.toml.
type Manifest struct {
	Name string
	Dir  string // absolute directory of the manifest; module paths are relative to it
	Path string // absolute path of the manifest file
	// Domains are host names the app answers besides NAME.localhost.
	Domains []string
	// Health is the path of the app's health route ("" none): during a
	// rollout, a PoP calls it itself when too few requests judge a version.
	Health string
	// Placement is where the app runs: at every PoP (PlacementEdge), or
	// only at the central PoP (PlacementCentral), every other PoP
	// forwarding its requests there as a single-region deployment would.
	Placement   Placement
	Functions   []Function
	Collections []Collection
	Counters    []Counter
	// Backends are the origins its functions may fetch from (backend.go).
	Backends []Backend
}

// Placement is where an app's requests run.
type Placement string

const (
	PlacementEdge    Placement = "edge"    // at the PoP that receives them (the default)
	PlacementCentral Placement = "central" // at the central PoP, forwarded there from every other
)

// ParsePlacement parses "edge" or "central".
func ParsePlacement(s string) (Placement, error) {
	switch Placement(s) {
	case PlacementEdge, PlacementCentral:
		return Placement(s), nil
	}
	return "", fmt.Errorf("%q is not a placement; expected \"edge\" (at every PoP, the default) or \"central\" (only at the central PoP)", s)
}

// Counter is one [[counter]] of a manifest: a bounded stock kept at the
// central PoP, with a hybrid threshold. While more than Threshold remain at
// the centre, each PoP holds up to Grant units in escrow and takes from them
// locally, with no WAN round trip; at or below it every take goes to the
// centre. A stock that is not declared is taken at the centre every time.
//
// A Name ending in "*" is a pattern: it declares every stock whose name
// starts with what precedes the "*" ("stock-*": "stock-p1", "stock-p2",
// ...), all with the same threshold and grant, so that a catalogue of
// thousands of products needs one declaration.
type Counter struct {
	Name      string
	Threshold int64 // ≥ 0
	Grant     int64 // units a PoP holds in escrow at a time; > 0
}

// Pattern reports whether c declares every stock whose name starts with
// Prefix() rather than one stock.
func (c Counter) Pattern() bool { return strings.HasSuffix(c.Name, "*") }

// Prefix is the part of a pattern's name before the "*" (a plain name for
// a counter that is not a pattern).
func (c Counter) Prefix() string { return strings.TrimSuffix(c.Name, "*") }

// Matches reports whether the stock called name is declared by c.
func (c Counter) Matches(name string) bool {
	if c.Pattern() {
		return len(name) > len(c.Prefix()) && strings.HasPrefix(name, c.Prefix())
	}
	return name == c.Name
}

// Counter returns the declaration of the stock called name: the counter
// declared with exactly that name, else the pattern with the longest prefix
// that matches it. ok is false for a stock that is not declared.
func (m *Manifest) Counter(name string) (c Counter, ok bool) {
	for _, d := range m.Counters {
		switch {
		case !d.Matches(name):
		case !d.Pattern():
			return d, true
		case !ok || len(d.Prefix()) > len(c.Prefix()):
			c, ok = d, true
		}
	}
	return c, ok
}

// Executor selects how a function's module is run.
type Executor string

const (
	// ExecutorWAGI runs a WASI command module per request with the CGI contract.
	ExecutorWAGI Executor = "wagi"
	// ExecutorVerge runs a reactor module speaking Verge's host ABI, from a warm pool.
	ExecutorVerge Executor = "verge"
)

// Isolation selects whether a verge-executor function reuses instances.
type Isolation string

const (
	IsolationPooled Isolation = "pooled" // warm instances, one request at a time each
	IsolationStrict Isolation = "strict" // a fresh instance for every request
)

// FunctionKind is where and how a function runs.
type FunctionKind string

const (
	// KindHTTP functions serve requests at every PoP.
	KindHTTP FunctionKind = "http"
	// KindCentral functions run only at the central PoP, next to the single
	// point of truth; other PoPs forward their routes there.
	KindCentral FunctionKind = "central"
	// KindRoom functions are durable realtime rooms: one live instance per
	// room id in the whole network, at the room's owner PoP, reached over
	// WebSockets at every PoP (docs/rooms.md).
	KindRoom FunctionKind = "room"
)

// RoomOptions are a room function's [function.room] settings. The zero
// value of a field means its default (DefaultRoomOptions).
type RoomOptions struct {
	// HibernateAfter: a live room with no event for this long gives its
	// Wasm instance back; its sockets stay open (default 10 s).
	HibernateAfter time.Duration
	// MaxConnections bounds the sockets of one room (default 10,000).
	MaxConnections int
	// MaxAppConnections bounds the sockets of all rooms of the function at
	// one PoP (default 100,000).
	MaxAppConnections int
	// MaxMessage is the largest message a client may send (default 1 MiB);
	// a larger frame closes its socket with code 1009.
	MaxMessage int64
	// MessagesPerSecond is how many messages one socket may send per second
	// (default 1,000, bursts of as many): past it the PoP stops reading
	// from the socket until the rate allows.
	MessagesPerSecond int
	// IdleTimeout closes a socket that sent nothing, not even a pong, for
	// this long (default 60 s); PingInterval is how often the PoP pings
	// (default 20 s).
	IdleTimeout, PingInterval time.Duration
	// Placement is where a room is placed when it is first used:
	// "first-client" (default: the PoP of its first client), "central" (the
	// central PoP), or a region name (a PoP of that region).
	Placement string
}

// DefaultRoomOptions are the settings of a room function that sets none.
var DefaultRoomOptions = RoomOptions{
	HibernateAfter:    10 * time.Second,
	MaxConnections:    10_000,
	MaxAppConnections: 100_000,
	MaxMessage:        1 << 20,
	MessagesPerSecond: 1000,
	IdleTimeout:       60 * time.Second,
	PingInterval:      20 * time.Second,
	Placement:         "first-client",
}

// WithDefaults returns o with every zero field set from DefaultRoomOptions.
func (o RoomOptions) WithDefaults() RoomOptions {
	d := DefaultRoomOptions
	if o.HibernateAfter == 0 {
		o.HibernateAfter = d.HibernateAfter
	}
	if o.MaxConnections == 0 {
		o.MaxConnections = d.MaxConnections
	}
	if o.MaxAppConnections == 0 {
		o.MaxAppConnections = d.MaxAppConnections
	}
	if o.MaxMessage == 0 {
		o.MaxMessage = d.MaxMessage
	}
	if o.MessagesPerSecond == 0 {
		o.MessagesPerSecond = d.MessagesPerSecond
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = d.IdleTimeout
	}
	if o.PingInterval == 0 {
		o.PingInterval = d.PingInterval
	}
	if o.Placement == "" {
		o.Placement = d.Placement
	}
	return o
}

// Function is one [[function]] of a manifest.
type Function struct {
	App       string // the app's name: documents are the app's own
	Name      string
	Module    string // absolute path of the .wasm file
	Executor  Executor
	Kind      FunctionKind
	Isolation Isolation
	Routes    []string
	Build     string // shell command run in Manifest.Dir before loading, may be empty
	Env       map[string]string
	Limits    Limits
	// Room holds a room function's settings (Kind == KindRoom).
	Room RoomOptions
}

// Limits bound what one request may use. The zero value of a field means
// "use the default"; see DefaultLimits.
type Limits struct {
	CPUTime         time.Duration // guest CPU time per request, enforced inside tight loops too
	WallTime        time.Duration // wall time per request, including waiting for an instance
	Memory          uint64        // linear memory per instance, bytes
	RequestBody     int64         // bytes
	ResponseBody    int64         // bytes
	MaxInstances    int           // concurrent instances of the function
	RecycleAfter    int           // requests served before a pooled instance is replaced
	MemoryHighWater uint64        // a pooled instance whose memory grew past this is replaced
}

// DefaultLimits are the limits of a function that sets none, chosen to match
// what Fastly Compute gives a request (50 ms CPU, 128 MiB).
var DefaultLimits = Limits{
	CPUTime:         50 * time.Millisecond,
	WallTime:        10 * time.Second,
	Memory:          128 << 20,
	RequestBody:     8 << 20,
	ResponseBody:    16 << 20,
	MaxInstances:    64,
	RecycleAfter:    10000,
	MemoryHighWater: 64 << 20,
}

// WithDefaults returns l with every zero field set from DefaultLimits.
func (l Limits) WithDefaults() Limits {
	d := DefaultLimits
	if l.CPUTime == 0 {
		l.CPUTime = d.CPUTime
	}
	if l.WallTime == 0 {
		l.WallTime = d.WallTime
	}
	if l.Memory == 0 {
		l.Memory = d.Memory
	}
	if l.RequestBody == 0 {
		l.RequestBody = d.RequestBody
	}
	if l.ResponseBody == 0 {
		l.ResponseBody = d.ResponseBody
	}
	if l.MaxInstances == 0 {
		l.MaxInstances = d.MaxInstances
	}
	if l.RecycleAfter == 0 {
		l.RecycleAfter = d.RecycleAfter
	}
	if l.MemoryHighWater == 0 {
		l.MemoryHighWater = min(d.MemoryHighWater, l.Memory)
	}
	return l
}

// ScopeKind is how far a collection's documents replicate.
type ScopeKind string

const (
	// ScopeLocal documents stay at the PoP that wrote them (backed up at
	// the centre) and follow their user to another PoP.
	ScopeLocal ScopeKind = "local"
	// ScopeGroup documents replicate among a named group of PoPs.
	ScopeGroup ScopeKind = "group"
	// ScopeGlobal documents replicate to every PoP.
	ScopeGlobal ScopeKind = "global"
)

// Scope is a collection's replication scope.
type Scope struct {
	Kind  ScopeKind
	Group string // the group name when Kind is ScopeGroup
}

func (s Scope) String() string {
	if s.Kind == ScopeGroup {
		return "group:" + s.Group
	}
	return string(s.Kind)
}

// ParseScope parses "local", "global" or "group:NAME".
func ParseScope(s string) (Scope, error) {
	switch {
	case s == string(ScopeLocal) || s == string(ScopeGlobal):
		return Scope{Kind: ScopeKind(s)}, nil
	case strings.HasPrefix(s, "group:") && nameRE.MatchString(s[len("group:"):]):
		return Scope{Kind: ScopeGroup, Group: s[len("group:"):]}, nil
	}
	return Scope{}, fmt.Errorf("%q is not a scope; expected \"local\", \"global\" or \"group:NAME\" (NAME: letters, digits, - and _)", s)
}

// Collection is one [[collection]] of a manifest.
type Collection struct {
	Name    string
	Scope   Scope
	Regions []string // empty: any region may hold a replica
}

// ManifestError names the file and field at fault and what was expected.
type ManifestError struct {
	File  string
	Field string // e.g. "function[0].executor"; empty for syntax errors
	Msg   string
}

func (e *ManifestError) Error() string {
	if e.Field == "" {
		return e.File + ": " + e.Msg
	}
	return e.File + ": " + e.Field + ": " + e.Msg
}

// The TOML shapes, kept apart from the domain types so that the domain types
// can hold parsed values (durations, sizes, absolute paths).
type rawManifest struct {
	Name       string          `toml:"name"`
	Domains    []string        `toml:"domains"`
	Health     string          `toml:"health"`
	Placement  string          `toml:"placement"`
	Function   []rawFunction   `toml:"function"`
	Collection []rawCollection `toml:"collection"`
	Counter    []rawCounter    `toml:"counter"`
	Backend    []rawBackend    `toml:"backend"`
}

type rawCounter struct {
	Name      string `toml:"name"`
	Threshold int64  `toml:"threshold"`
	Grant     int64  `toml:"grant"`
}

type rawFunction struct {
	Name      string            `toml:"name"`
	Module    string            `toml:"module"`
	Executor  string            `toml:"executor"`
	Kind      string            `toml:"kind"`
	Isolation string            `toml:"isolation"`
	Routes    []string          `toml:"routes"`
	Build     string            `toml:"build"`
	Env       map[string]string `toml:"env"`
	Limits    rawLimits         `toml:"limits"`
	Room      *rawRoom          `toml:"room"`
}

type rawRoom struct {
	HibernateAfter    string `toml:"hibernate_after"`
	MaxConnections    int    `toml:"max_connections"`
	MaxAppConnections int    `toml:"max_app_connections"`
	MaxMessage        string `toml:"max_message"`
	MessagesPerSecond int    `toml:"messages_per_second"`
	IdleTimeout       string `toml:"idle_timeout"`
	PingInterval      string `toml:"ping_interval"`
	Placement         string `toml:"placement"`
}

type rawLimits struct {
	CPUTime         string `toml:"cpu_time"`
	WallTime        string `toml:"wall_time"`
	Memory          string `toml:"memory"`
	RequestBody     string `toml:"request_body"`
	ResponseBody    string `toml:"response_body"`
	MaxInstances    int    `toml:"max_instances"`
	RecycleAfter    int    `toml:"recycle_after"`
	MemoryHighWater string `toml:"memory_high_water"`
}

type rawCollection struct {
	Name    string   `toml:"name"`
	Scope   string   `toml:"scope"`
	Regions []string `toml:"regions"`
}

var (
	nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_-]{0,62}$`)
	// counterPrefixRE: what precedes the "*" of a counter pattern.
	counterPrefixRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_-]{0,61}$`)
	domainRE        = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$`)
)

// LoadManifest reads and validates the manifest at path, which is either a
// verge.toml file or a directory holding one.
func LoadManifest(path string) (*Manifest, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		path = filepath.Join(path, ManifestFile)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no app manifest at %s: create a %s (see docs/manifest.md)", abs, ManifestFile)
		}
		return nil, err
	}
	return ParseManifest(abs, data)
}

// ParseManifest validates a manifest's bytes; file is its absolute path, used
// to resolve module paths and to name the file in errors.
func ParseManifest(file string, data []byte) (*Manifest, error) {
	var raw rawManifest
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &ManifestError{File: file, Msg: fmt.Sprintf("line %d: %s", pe.Position.Line, pe.Message)}
		}
		// Type mismatches ("expected string, got integer") name the key already.
		return nil, &ManifestError{File: file, Msg: strings.TrimPrefix(err.Error(), "toml: ")}
	}
	if und := md.Undecoded(); len(und) > 0 {
		return nil, &ManifestError{File: file, Field: und[0].String(), Msg: "unknown field; see docs/manifest.md for the fields Verge reads"}
	}
	m := &Manifest{Name: raw.Name, Path: file, Dir: filepath.Dir(file)}
	bad := func(field, format string, args ...any) error {
		return &ManifestError{File: file, Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	if !nameRE.MatchString(raw.Name) {
		return nil, bad("name", "%q is not a valid app name; expected 1-63 letters, digits, - or _, starting with a letter or digit", raw.Name)
	}
	if len(raw.Function) == 0 {
		return nil, bad("function", "no [[function]] defined; an app needs at least one")
	}
	m.Placement = PlacementEdge
	if raw.Placement != "" {
		p, err := ParsePlacement(raw.Placement)
		if err != nil {
			return nil, bad("placement", "%v", err)
		}
		m.Placement = p
	}
	seenDomain := map[string]bool{}
	for i, d := range raw.Domains {
		d = strings.ToLower(d)
		if !domainRE.MatchString(d) || strings.HasSuffix(d, ".localhost") {
			return nil, bad(fmt.Sprintf("domains[%d]", i), "%q is not a host name; expected e.g. \"shop.example.com\" (NAME.localhost is always the app's)", raw.Domains[i])
		}
		if seenDomain[d] {
			return nil, bad(fmt.Sprintf("domains[%d]", i), "%q is listed twice", d)
		}
		seenDomain[d] = true
		m.Domains = append(m.Domains, d)
	}
	if raw.Health != "" {
		if !strings.HasPrefix(raw.Health, "/") || strings.ContainsAny(raw.Health, "?# \t") {
			return nil, bad("health", "%q is not a path; expected e.g. \"/healthz\"", raw.Health)
		}
		m.Health = raw.Health
	}
	names := map[string]bool{}
	routes := map[string]string{}
	for i, rf := range raw.Function {
		at := func(f string) string { return fmt.Sprintf("function[%d].%s", i, f) }
		fn := Function{App: raw.Name, Name: rf.Name, Build: rf.Build, Env: rf.Env}
		if !nameRE.MatchString(rf.Name) {
			return nil, bad(at("name"), "%q is not a valid function name; expected 1-63 letters, digits, - or _", rf.Name)
		}
		if names[rf.Name] {
			return nil, bad(at("name"), "function %q is defined twice", rf.Name)
		}
		names[rf.Name] = true
		if rf.Module == "" {
			hint := ""
			if rf.Build != "" {
				hint = "; module must name the file the build command produces"
			}
			return nil, bad(at("module"), "missing; expected the path of a .wasm file relative to the manifest%s", hint)
		}
		fn.Module = rf.Module
		if !filepath.IsAbs(fn.Module) {
			fn.Module = filepath.Join(m.Dir, fn.Module)
		}
		switch Executor(rf.Executor) {
		case ExecutorWAGI, ExecutorVerge:
			fn.Executor = Executor(rf.Executor)
		case "":
			return nil, bad(at("executor"), "missing; expected \"wagi\" or \"verge\"")
		default:
			return nil, bad(at("executor"), "%q is not an executor; expected \"wagi\" or \"verge\"", rf.Executor)
		}
		switch FunctionKind(rf.Kind) {
		case "", KindHTTP:
			fn.Kind = KindHTTP
		case KindCentral:
			fn.Kind = KindCentral
		case KindRoom:
			fn.Kind = KindRoom
			if Executor(rf.Executor) != ExecutorVerge {
				return nil, bad(at("executor"), "a room function runs on the verge executor (its events are calls into a live instance); expected \"verge\"")
			}
			if rf.Isolation == string(IsolationStrict) {
				return nil, bad(at("isolation"), "a room keeps one live instance; strict isolation does not apply to rooms")
			}
			for j, r := range rf.Routes {
				if !strings.HasSuffix(r, "/*") {
					return nil, bad(fmt.Sprintf("function[%d].routes[%d]", i, j), "%q: a room function's routes are prefixes ending in \"/*\"; the path segment after the prefix is the room id", r)
				}
			}
		default:
			return nil, bad(at("kind"), "%q is not a function kind; expected \"http\", \"central\" or \"room\"", rf.Kind)
		}
		if rf.Room != nil && fn.Kind != KindRoom {
			return nil, bad(at("room"), "[function.room] applies to kind = \"room\" functions only")
		}
		if fn.Kind == KindRoom {
			ro, err := parseRoom(rf.Room, func(f string) string { return at("room." + f) }, bad)
			if err != nil {
				return nil, err
			}
			fn.Room = ro
		}
		switch Isolation(rf.Isolation) {
		case "", IsolationPooled:
			fn.Isolation = IsolationPooled
		case IsolationStrict:
			fn.Isolation = IsolationStrict
		default:
			return nil, bad(at("isolation"), "%q is not an isolation mode; expected \"pooled\" or \"strict\"", rf.Isolation)
		}
		if fn.Executor == ExecutorWAGI && fn.Isolation == IsolationPooled && rf.Isolation != "" {
			return nil, bad(at("isolation"), "the wagi executor always uses a fresh instance per request; remove isolation or use executor = \"verge\"")
		}
		if len(rf.Routes) == 0 {
			return nil, bad(at("routes"), "no routes; expected a list like [\"/hello\", \"/hello/*\"]")
		}
		for j, r := range rf.Routes {
			if err := checkRoute(r); err != nil {
				return nil, bad(fmt.Sprintf("function[%d].routes[%d]", i, j), "%v", err)
			}
			if other, dup := routes[r]; dup {
				return nil, bad(fmt.Sprintf("function[%d].routes[%d]", i, j), "route %q is already served by function %q", r, other)
			}
			routes[r] = rf.Name
			fn.Routes = append(fn.Routes, r)
		}
		for k := range rf.Env {
			if k == "" || strings.ContainsAny(k, "=\x00") {
				return nil, bad(at("env"), "%q is not a valid environment variable name", k)
			}
		}
		lim, err := parseLimits(rf.Limits, func(f string) string { return at("limits." + f) }, bad)
		if err != nil {
			return nil, err
		}
		fn.Limits = lim
		m.Functions = append(m.Functions, fn)
	}
	colls := map[string]bool{}
	for i, rc := range raw.Collection {
		at := func(f string) string { return fmt.Sprintf("collection[%d].%s", i, f) }
		if !nameRE.MatchString(rc.Name) {
			return nil, bad(at("name"), "%q is not a valid collection name; expected 1-63 letters, digits, - or _", rc.Name)
		}
		if colls[rc.Name] {
			return nil, bad(at("name"), "collection %q is defined twice", rc.Name)
		}
		colls[rc.Name] = true
		if rc.Scope == "" {
			return nil, bad(at("scope"), "missing; expected \"local\", \"global\" or \"group:NAME\"")
		}
		sc, err := ParseScope(rc.Scope)
		if err != nil {
			return nil, bad(at("scope"), "%v", err)
		}
		for j, r := range rc.Regions {
			if !nameRE.MatchString(r) {
				return nil, bad(fmt.Sprintf("collection[%d].regions[%d]", i, j), "%q is not a valid region name", r)
			}
		}
		m.Collections = append(m.Collections, Collection{Name: rc.Name, Scope: sc, Regions: rc.Regions})
	}
	counters := map[string]bool{}
	for i, rc := range raw.Counter {
		at := func(f string) string { return fmt.Sprintf("counter[%d].%s", i, f) }
		if prefix, pattern := strings.CutSuffix(rc.Name, "*"); pattern {
			if !counterPrefixRE.MatchString(prefix) {
				return nil, bad(at("name"), "%q is not a valid counter pattern; expected 1-62 letters, digits, - or _ followed by one \"*\" (e.g. \"stock-*\")", rc.Name)
			}
		} else if !nameRE.MatchString(rc.Name) {
			return nil, bad(at("name"), "%q is not a valid counter name; expected 1-63 letters, digits, - or _, or a prefix and \"*\" for a pattern", rc.Name)
		}
		if counters[rc.Name] {
			return nil, bad(at("name"), "counter %q is defined twice", rc.Name)
		}
		counters[rc.Name] = true
		if rc.Threshold < 0 {
			return nil, bad(at("threshold"), "%d: must be ≥ 0", rc.Threshold)
		}
		if rc.Grant <= 0 {
			return nil, bad(at("grant"), "missing or %d: the units a PoP holds in escrow at a time, > 0", rc.Grant)
		}
		m.Counters = append(m.Counters, Counter{Name: rc.Name, Threshold: rc.Threshold, Grant: rc.Grant})
	}
	if m.Backends, err = parseBackends(raw.Backend, m.Dir, bad); err != nil {
		return nil, err
	}
	return m, nil
}

func parseRoom(r *rawRoom, at func(string) string, bad func(string, string, ...any) error) (RoomOptions, error) {
	var o RoomOptions
	if r == nil {
		return o.WithDefaults(), nil
	}
	dur := func(field, s string, dst *time.Duration) error {
		if s == "" {
			return nil
		}
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return bad(at(field), "%q is not a positive duration; expected e.g. \"10s\"", s)
		}
		*dst = d
		return nil
	}
	for _, e := range []error{
		dur("hibernate_after", r.HibernateAfter, &o.HibernateAfter),
		dur("idle_timeout", r.IdleTimeout, &o.IdleTimeout),
		dur("ping_interval", r.PingInterval, &o.PingInterval),
	} {
		if e != nil {
			return o, e
		}
	}
	if r.MaxMessage != "" {
		n, err := ParseSize(r.MaxMessage)
		if err != nil || n == 0 || n > 64<<20 {
			return o, bad(at("max_message"), "%q is not a size between 1 byte and 64MiB", r.MaxMessage)
		}
		o.MaxMessage = int64(n)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"max_connections", r.MaxConnections}, {"max_app_connections", r.MaxAppConnections}, {"messages_per_second", r.MessagesPerSecond}} {
		if f.v < 0 {
			return o, bad(at(f.name), "%d: expected a positive number", f.v)
		}
	}
	o.MaxConnections, o.MaxAppConnections, o.MessagesPerSecond = r.MaxConnections, r.MaxAppConnections, r.MessagesPerSecond
	if r.Placement != "" {
		if r.Placement != "first-client" && r.Placement != "central" && !nameRE.MatchString(r.Placement) {
			return o, bad(at("placement"), "%q is not a placement; expected \"first-client\", \"central\" or a region name", r.Placement)
		}
		o.Placement = r.Placement
	}
	return o.WithDefaults(), nil
}

// checkRoute accepts "/exact" and "/prefix/*" routes; "*" only as the last segment.
func checkRoute(r string) error {
	if !strings.HasPrefix(r, "/") {
		return fmt.Errorf("%q must start with /", r)
	}
	if i := strings.IndexByte(r, '*'); i >= 0 && (i != len(r)-1 || !strings.HasSuffix(r, "/*")) {
		return fmt.Errorf("%q: a wildcard is only allowed as a final \"/*\" segment", r)
	}
	if strings.ContainsAny(r, "?# \t") {
		return fmt.Errorf("%q: a route is a path; it cannot hold a query, a fragment or spaces", r)
	}
	return nil
}

func parseLimits(r rawLimits, at func(string) string, bad func(string, string, ...any) error) (Limits, error) {
	var l Limits
	var err error
	dur := func(field, s string, dst *time.Duration) {
		if err != nil || s == "" {
			return
		}
		d, perr := time.ParseDuration(s)
		if perr != nil || d <= 0 {
			err = bad(at(field), "%q is not a positive duration; expected e.g. \"50ms\" or \"2s\"", s)
			return
		}
		*dst = d
	}
	size := func(field, s string, dst *uint64) {
		if err != nil || s == "" {
			return
		}
		n, perr := ParseSize(s)
		if perr != nil || n == 0 {
			err = bad(at(field), "%q is not a positive size; expected e.g. \"128MiB\", \"64KiB\" or a number of bytes", s)
			return
		}
		*dst = n
	}
	var reqBody, respBody uint64
	dur("cpu_time", r.CPUTime, &l.CPUTime)
	dur("wall_time", r.WallTime, &l.WallTime)
	size("memory", r.Memory, &l.Memory)
	size("request_body", r.RequestBody, &reqBody)
	size("response_body", r.ResponseBody, &respBody)
	size("memory_high_water", r.MemoryHighWater, &l.MemoryHighWater)
	if err != nil {
		return l, err
	}
	l.RequestBody, l.ResponseBody = int64(reqBody), int64(respBody)
	if l.Memory > 4<<30 {
		return l, bad(at("memory"), "%d bytes exceeds the 4 GiB a 32-bit Wasm memory can address", l.Memory)
	}
	if r.MaxInstances < 0 {
		return l, bad(at("max_instances"), "%d: expected a positive number", r.MaxInstances)
	}
	if r.RecycleAfter < 0 {
		return l, bad(at("recycle_after"), "%d: expected a positive number", r.RecycleAfter)
	}
	l.MaxInstances, l.RecycleAfter = r.MaxInstances, r.RecycleAfter
	return l.WithDefaults(), nil
}

var sizeUnits = map[string]uint64{"": 1, "B": 1, "KB": 1000, "KiB": 1 << 10, "MB": 1000 * 1000, "MiB": 1 << 20, "GB": 1000 * 1000 * 1000, "GiB": 1 << 30}

// ParseSize parses sizes like "128MiB", "64KiB", "1GB" or "4096".
func ParseSize(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 || i > 12 {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	var n uint64
	for _, c := range s[:i] {
		n = n*10 + uint64(c-'0')
	}
	unit, ok := sizeUnits[strings.TrimSpace(s[i:])]
	if !ok {
		units := make([]string, 0, len(sizeUnits))
		for u := range sizeUnits {
			if u != "" {
				units = append(units, u)
			}
		}
		sort.Strings(units)
		return 0, fmt.Errorf("invalid size unit in %q; expected one of %s", s, strings.Join(units, ", "))
	}
	return n * unit, nil
}
