package verge

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Backend is one [[backend]] of a manifest: an origin a function may fetch
// from (internal/fetch). A function reaches declared backends only, and a
// backend reaches public addresses only unless AllowPrivate is set.
type Backend struct {
	Name string
	// URL is the origin: "http" or "https", a host and an optional port,
	// without a path, query or credentials ("https://api.example.com").
	URL string
	// Timeouts; zero means internal/fetch's default (see docs/manifest.md).
	ConnectTimeout   time.Duration // establishing the connection (TCP and TLS)
	FirstByteTimeout time.Duration // from sending the request to the response's head
	Timeout          time.Duration // the whole exchange, body included
	// CAFile is the absolute path of a PEM bundle trusted instead of the
	// system roots (https only); "" means the system roots.
	CAFile string
	// SNI is the TLS server name sent and verified instead of the URL's host
	// (https only); "" means the URL's host.
	SNI string
	// AllowPrivate lets the backend resolve to loopback, private, link-local
	// and other non-public addresses (see ForbiddenAddress).
	AllowPrivate bool
	// MaxBody bounds each request and response body exchanged with the
	// backend, in bytes; 0 means no bound beyond the function's own limits.
	MaxBody int64
}

type rawBackend struct {
	Name             string `toml:"name"`
	URL              string `toml:"url"`
	ConnectTimeout   string `toml:"connect_timeout"`
	FirstByteTimeout string `toml:"first_byte_timeout"`
	Timeout          string `toml:"timeout"`
	CAFile           string `toml:"ca_file"`
	SNI              string `toml:"sni"`
	AllowPrivate     bool   `toml:"allow_private"`
	MaxBody          string `toml:"max_body"`
}

// parseBackends validates the [[backend]] tables; dir resolves ca_file.
func parseBackends(raw []rawBackend, dir string, bad func(string, string, ...any) error) ([]Backend, error) {
	var out []Backend
	seen := map[string]bool{}
	for i, rb := range raw {
		at := func(f string) string { return fmt.Sprintf("backend[%d].%s", i, f) }
		if !nameRE.MatchString(rb.Name) {
			return nil, bad(at("name"), "%q is not a valid backend name; expected 1-63 letters, digits, - or _", rb.Name)
		}
		if seen[rb.Name] {
			return nil, bad(at("name"), "backend %q is defined twice", rb.Name)
		}
		seen[rb.Name] = true
		b := Backend{Name: rb.Name, SNI: rb.SNI, AllowPrivate: rb.AllowPrivate}
		u, msg := checkBackendURL(rb.URL)
		if msg != "" {
			return nil, bad(at("url"), "%s", msg)
		}
		b.URL = u.String()
		if !rb.AllowPrivate {
			if why := literalHostForbidden(u.Hostname()); why != "" {
				return nil, bad(at("url"), "%q is %s; a backend reaches public addresses only unless it sets allow_private = true", u.Hostname(), why)
			}
		}
		for _, d := range []struct {
			field, s string
			dst      *time.Duration
		}{
			{"connect_timeout", rb.ConnectTimeout, &b.ConnectTimeout},
			{"first_byte_timeout", rb.FirstByteTimeout, &b.FirstByteTimeout},
			{"timeout", rb.Timeout, &b.Timeout},
		} {
			if d.s == "" {
				continue
			}
			v, err := time.ParseDuration(d.s)
			if err != nil || v <= 0 {
				return nil, bad(at(d.field), "%q is not a positive duration; expected e.g. \"500ms\" or \"15s\"", d.s)
			}
			*d.dst = v
		}
		if rb.MaxBody != "" {
			n, err := ParseSize(rb.MaxBody)
			if err != nil || n == 0 || n > 1<<62 {
				return nil, bad(at("max_body"), "%q is not a positive size; expected e.g. \"64MiB\" or a number of bytes", rb.MaxBody)
			}
			b.MaxBody = int64(n)
		}
		if rb.CAFile != "" {
			if u.Scheme != "https" {
				return nil, bad(at("ca_file"), "only applies to an https backend; the url is %q", b.URL)
			}
			b.CAFile = rb.CAFile
			if !filepath.IsAbs(b.CAFile) {
				b.CAFile = filepath.Join(dir, b.CAFile)
			}
		}
		if rb.SNI != "" {
			if u.Scheme != "https" {
				return nil, bad(at("sni"), "only applies to an https backend; the url is %q", b.URL)
			}
			if !sniRE.MatchString(strings.ToLower(rb.SNI)) {
				return nil, bad(at("sni"), "%q is not a host name; expected e.g. \"api.example.com\"", rb.SNI)
			}
			b.SNI = strings.ToLower(rb.SNI)
		}
		out = append(out, b)
	}
	return out, nil
}

// A TLS server name is a DNS name: letters, digits and hyphens in dotted
// labels (no IP literals: RFC 6066 forbids them in SNI).
var sniRE = domainRE

// checkBackendURL parses a backend's url, returning it normalised (lower-case
// scheme and host, no trailing slash) or what is wrong with it.
func checkBackendURL(s string) (*url.URL, string) {
	if s == "" {
		return nil, `missing; expected the origin's URL, e.g. "https://api.example.com"`
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Sprintf("%q is not a URL: %v", s, err)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Sprintf("%q: the scheme must be http or https", s)
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Sprintf("%q has no host; expected e.g. \"https://api.example.com\"", s)
	case u.User != nil:
		return nil, fmt.Sprintf("%q holds credentials; a function sends them as headers instead, so they stay out of the manifest", s)
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "", u.Opaque != "":
		return nil, fmt.Sprintf("%q: a backend is an origin (scheme, host and port); the function chooses the path and query of each request", s)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Sprintf("%q: port %q is not 1-65535", s, p)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return nil, fmt.Sprintf("%q: empty port", s)
	}
	host := strings.ToLower(u.Hostname())
	if _, err := netip.ParseAddr(host); err != nil && !hostRE.MatchString(host) {
		return nil, fmt.Sprintf("%q: %q is neither a host name nor an IP address", s, u.Hostname())
	}
	switch p := u.Port(); {
	case p != "":
		u.Host = net.JoinHostPort(host, p)
	case strings.Contains(host, ":"):
		u.Host = "[" + host + "]"
	default:
		u.Host = host
	}
	u.Path, u.RawPath = "", ""
	return u, ""
}

// hostRE accepts DNS names, including single labels ("localhost") and
// names with underscores, which private zones use.
var hostRE = regexp.MustCompile(`^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$`)

// literalHostForbidden says why a backend's host, when it is an IP literal
// or a localhost name, is not public ("" if it is, or is another name: names
// are checked on every connection, by internal/fetch).
func literalHostForbidden(host string) string {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return "a loopback name"
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return ""
	}
	return ForbiddenAddress(a)
}

// ForbiddenAddress says what kind of non-public address a is ("a loopback
// address", ...), or "" when a is a public unicast address a backend without
// allow_private may connect to. internal/fetch applies it to every address
// it dials, after resolving names itself.
func ForbiddenAddress(a netip.Addr) string {
	a = a.Unmap() // ::ffff:127.0.0.1 is 127.0.0.1
	switch {
	case !a.IsValid():
		return "not an address"
	case a.IsUnspecified():
		return "the unspecified address"
	case a.IsLoopback():
		return "a loopback address"
	case a.IsPrivate():
		return "a private address"
	case a.IsLinkLocalUnicast():
		return "a link-local address"
	case a.IsMulticast(), a.IsLinkLocalMulticast(), a.IsInterfaceLocalMulticast():
		return "a multicast address"
	}
	if a.Is6() && nat64.Contains(a) {
		// The well-known NAT64 prefix embeds an IPv4 address in its last
		// 32 bits: it is as public as that address.
		b := a.As16()
		return ForbiddenAddress(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
	}
	for _, r := range reserved {
		if r.p.Contains(a) {
			return r.what
		}
	}
	return ""
}

var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// reserved are the special-purpose ranges (IANA's registries) that are not
// covered by netip's predicates and must not be reached as public origins.
var reserved = func() []struct {
	p    netip.Prefix
	what string
} {
	var out []struct {
		p    netip.Prefix
		what string
	}
	add := func(what string, prefixes ...string) {
		for _, p := range prefixes {
			out = append(out, struct {
				p    netip.Prefix
				what string
			}{netip.MustParsePrefix(p), what})
		}
	}
	add("a \"this network\" address", "0.0.0.0/8")
	add("a shared (carrier-grade NAT) address", "100.64.0.0/10")
	add("a reserved address", "192.0.0.0/24", "192.88.99.0/24", "198.18.0.0/15", "240.0.0.0/4",
		"100::/64", "2001::/23", "64:ff9b:1::/48", "2002::/16", "fec0::/10", "5f00::/16")
	add("a documentation address", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "3fff::/20")
	add("a broadcast address", "255.255.255.255/32")
	add("a unique local address", "fc00::/7")
	return out
}()
