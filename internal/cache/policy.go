package cache

// The rules of RFC 9111 as pure functions of headers and times: what a
// Cache-Control header says, whether a response may be stored, how long it
// is fresh, how old it is, which stored variant a request selects, and
// whether a client's conditional request is answered 304. Nothing here
// locks, reads a clock or does I/O.

import (
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// directives is a parsed Cache-Control header. Durations are -1 when the
// directive is absent.
type directives struct {
	noStore, noCache, private, public    bool
	mustRevalidate, proxyRevalidate      bool
	onlyIfCached, maxStaleAny, immutable bool
	maxAge, sMaxAge, maxStale, minFresh  time.Duration
	staleWhileRevalidate, staleIfError   time.Duration
}

func noDirectives() directives {
	return directives{maxAge: -1, sMaxAge: -1, maxStale: -1, minFresh: -1, staleWhileRevalidate: -1, staleIfError: -1}
}

// parseCacheControl parses every Cache-Control line of h. Unknown
// directives are ignored (RFC 9111 5.2.3); a directive given twice keeps
// its first value; a malformed number makes the directive count as
// "already stale" (0), the conservative reading the RFC asks for.
func parseCacheControl(values []string) directives {
	d := noDirectives()
	for _, line := range values {
		for len(line) > 0 {
			var item string
			item, line = nextDirective(line)
			name, arg, hasArg := strings.Cut(item, "=")
			name = strings.TrimSpace(name)
			arg = strings.Trim(strings.TrimSpace(arg), `"`)
			switch strings.ToLower(name) {
			case "no-store":
				d.noStore = true
			case "no-cache":
				// A qualified no-cache="Set-Cookie" allows storing without
				// the named fields; we do not strip them, so we treat it
				// like the unqualified form: always revalidate.
				d.noCache = true
			case "private":
				// Qualified or not: a shared cache does not store it.
				d.private = true
			case "public":
				d.public = true
			case "must-revalidate":
				d.mustRevalidate = true
			case "proxy-revalidate":
				d.proxyRevalidate = true
			case "only-if-cached":
				d.onlyIfCached = true
			case "immutable":
				d.immutable = true
			case "max-age":
				setSeconds(&d.maxAge, arg, hasArg)
			case "s-maxage":
				setSeconds(&d.sMaxAge, arg, hasArg)
			case "min-fresh":
				setSeconds(&d.minFresh, arg, hasArg)
			case "stale-while-revalidate":
				setSeconds(&d.staleWhileRevalidate, arg, hasArg)
			case "stale-if-error":
				setSeconds(&d.staleIfError, arg, hasArg)
			case "max-stale":
				if !hasArg {
					d.maxStaleAny = true
				} else {
					setSeconds(&d.maxStale, arg, hasArg)
				}
			}
		}
	}
	return d
}

// nextDirective splits off the first comma-separated item, respecting
// quoted strings (a quoted list of field names holds commas).
func nextDirective(s string) (item, rest string) {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			quoted = !quoted
		case '\\':
			if quoted {
				i++
			}
		case ',':
			if !quoted {
				return strings.TrimSpace(s[:i]), s[i+1:]
			}
		}
	}
	return strings.TrimSpace(s), ""
}

// maxDelta caps delta-seconds: RFC 9111 1.2.2 says to use 2^31 for larger
// values, and durations past it would overflow when added to times.
const maxDelta = 1<<31 - 1

func setSeconds(dst *time.Duration, arg string, hasArg bool) {
	if *dst >= 0 {
		return // the first occurrence wins
	}
	n, err := strconv.ParseInt(arg, 10, 64)
	switch {
	case !hasArg || err != nil && !isDigits(arg) || n < 0:
		*dst = 0
	case err != nil || n > maxDelta: // all digits but too large
		*dst = maxDelta * time.Second
	default:
		*dst = time.Duration(n) * time.Second
	}
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// requestDirectives are the Cache-Control of a request, with Pragma:
// no-cache read as no-cache when there is no Cache-Control (RFC 9111 5.4).
func requestDirectives(h http.Header) directives {
	cc := h.Values("Cache-Control")
	if len(cc) == 0 {
		d := noDirectives()
		for _, p := range h.Values("Pragma") {
			if strings.Contains(strings.ToLower(p), "no-cache") {
				d.noCache = true
			}
		}
		return d
	}
	return parseCacheControl(cc)
}

// heuristicStatus are the statuses RFC 9110 15.1 calls heuristically
// cacheable: they may be stored without explicit freshness.
func heuristicStatus(code int) bool {
	switch code {
	case 200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// storability says whether a response may be stored by a shared cache
// (RFC 9111 3 and 3.5) and, if not, why (for tests and logs).
// Reasons not to store that belong to the request, not to the URL's
// response: they do not mark the URL for hit-for-pass (pass.go).
const (
	whyAuthorization  = "authorization"
	whyRequestNoStore = "request no-store"
)

func storability(reqHeader http.Header, reqCC directives, code int, h http.Header, cc directives) string {
	switch {
	case code < 200 || code == http.StatusPartialContent || code == http.StatusNotModified:
		// Ranges are passed through, never assembled; 304s only update.
		return "status " + strconv.Itoa(code)
	case cc.noStore:
		return "no-store"
	case reqCC.noStore:
		return whyRequestNoStore
	case cc.private:
		return "private"
	case reqHeader.Get("Authorization") != "" && !cc.public && !cc.mustRevalidate && cc.sMaxAge < 0:
		return whyAuthorization
	case h.Get("Set-Cookie") != "":
		// RFC 9111 allows it, but a shared cache that stores one visitor's
		// cookie hands it to every other visitor; CDNs refuse by default.
		return "set-cookie"
	}
	for _, v := range h.Values("Vary") {
		for _, f := range strings.Split(v, ",") {
			if strings.TrimSpace(f) == "*" {
				return "vary *"
			}
		}
	}
	explicit := cc.sMaxAge >= 0 || cc.maxAge >= 0 || h.Get("Expires") != "" || cc.public
	if !explicit && !heuristicStatus(code) {
		return "no explicit freshness for status " + strconv.Itoa(code)
	}
	return ""
}

// freshnessLifetime is how long a response stays fresh (RFC 9111 4.2.1) for
// a shared cache: s-maxage, then max-age, then Expires minus Date, then the
// heuristic: a tenth of the time since Last-Modified, at most heuristicMax,
// for heuristically cacheable statuses only.
func freshnessLifetime(code int, h http.Header, cc directives, date time.Time, heuristicMax time.Duration) time.Duration {
	switch {
	case cc.sMaxAge >= 0:
		return cc.sMaxAge
	case cc.maxAge >= 0:
		return cc.maxAge
	}
	if exp := h.Get("Expires"); exp != "" {
		t, err := http.ParseTime(exp)
		if err != nil {
			return 0 // an invalid Expires (e.g. "0") means already expired
		}
		return max(t.Sub(date), 0)
	}
	if !heuristicStatus(code) || heuristicMax <= 0 {
		return 0
	}
	lm, err := http.ParseTime(h.Get("Last-Modified"))
	if err != nil || !lm.Before(date) {
		return 0
	}
	return min(date.Sub(lm)/10, heuristicMax)
}

// initialAge is corrected_initial_age (RFC 9111 4.2.3): how old the
// response was when it arrived, from its Date, its Age and how long the
// exchange took.
func initialAge(h http.Header, date, reqTime, respTime time.Time) time.Duration {
	apparent := max(respTime.Sub(date), 0)
	var ageValue time.Duration
	if n, err := strconv.ParseInt(strings.TrimSpace(h.Get("Age")), 10, 64); err == nil && n > 0 {
		ageValue = time.Duration(min(n, maxDelta)) * time.Second
	}
	corrected := ageValue + max(respTime.Sub(reqTime), 0)
	return max(apparent, corrected)
}

// dateOf is the response's Date, or when it has none (or a bad one) the
// time it was received, which RFC 9110 6.6.1 lets a recipient assume.
func dateOf(h http.Header, respTime time.Time) time.Time {
	if d, err := http.ParseTime(h.Get("Date")); err == nil {
		return d
	}
	return respTime
}

// varyFields are the request fields a response varies on, canonical,
// in order, deduplicated.
func varyFields(h http.Header) []string {
	var out []string
	for _, v := range h.Values("Vary") {
		for _, f := range strings.Split(v, ",") {
			f = textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(f))
			if f == "" {
				continue
			}
			dup := false
			for _, o := range out {
				dup = dup || o == f
			}
			if !dup {
				out = append(out, f)
			}
		}
	}
	return out
}

// varyValue is a request field's value as the secondary key sees it: every
// line joined by ", ", with spaces around commas removed, so "gzip,br" and
// "gzip, br" select the same variant (RFC 9111 4.1 allows normalising).
// A missing field is distinct from an empty one.
func varyValue(h http.Header, field string) string {
	vs := h[field]
	if vs == nil {
		return "\x00absent"
	}
	var b strings.Builder
	for i, v := range vs {
		if i > 0 {
			b.WriteByte(',')
		}
		for j, part := range strings.Split(v, ",") {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strings.TrimSpace(part))
		}
	}
	return b.String()
}

// hopByHop are fields that describe one connection, never stored or
// forwarded (RFC 9110 7.6.1), plus the ones the cache computes itself.
var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Transfer-Encoding", "Upgrade",
	"Trailer", "Proxy-Authenticate", "Proxy-Authorization"}

// storedHeader is the header a cache stores for a response: without the
// connection's fields, those the Connection header names, and Age (the
// cache computes it), X-Cache (the cache sets it) or the per-request fields.
func storedHeader(h http.Header, perRequest []string) http.Header {
	out := h.Clone()
	for _, c := range h.Values("Connection") {
		for _, f := range strings.Split(c, ",") {
			out.Del(strings.TrimSpace(f))
		}
	}
	for _, f := range hopByHop {
		out.Del(f)
	}
	out.Del("Age")
	out.Del(HeaderXCache)
	for _, f := range perRequest {
		delete(out, f)
	}
	return out
}

// mergeNotModified updates a stored header with a 304's (RFC 9111 3.2):
// every field the 304 carries replaces the stored one, except those of the
// connection and Content-Length, which describes the stored body.
func mergeNotModified(stored, fresh http.Header, perRequest []string) http.Header {
	out := stored.Clone()
	upd := storedHeader(fresh, perRequest)
	upd.Del("Content-Length")
	for k, v := range upd {
		out[k] = v
	}
	out.Del("Age")
	return out
}

// etagsMatch is the weak comparison of RFC 9110 8.8.3.2: W/"x" matches "x".
func etagsMatch(a, b string) bool {
	a, b = strings.TrimPrefix(a, "W/"), strings.TrimPrefix(b, "W/")
	return a != "" && a == b && strings.HasPrefix(a, `"`)
}

// notModified evaluates a client's If-None-Match and If-Modified-Since
// against a stored 200 (RFC 9110 13.2.2): true means answer 304.
func notModified(req http.Header, etag, lastModified string) bool {
	if inm := req["If-None-Match"]; len(inm) > 0 {
		if etag == "" {
			return false
		}
		for _, line := range inm {
			for _, t := range strings.Split(line, ",") {
				t = strings.TrimSpace(t)
				if t == "*" || etagsMatch(t, etag) {
					return true
				}
			}
		}
		return false // If-Modified-Since is ignored when If-None-Match is present
	}
	v := req["If-Modified-Since"]
	if len(v) == 0 || lastModified == "" {
		return false // the common case: no date to parse
	}
	ims, err := http.ParseTime(v[0])
	if err != nil {
		return false
	}
	lm, err := http.ParseTime(lastModified)
	return err == nil && !lm.After(ims)
}

// notModifiedHeader is what a 304 made from a stored response carries
// (RFC 9110 15.4.5): the fields that would update a cache, not the
// representation's metadata.
func notModifiedHeader(stored http.Header) http.Header {
	out := http.Header{}
	for _, f := range []string{"Cache-Control", "Content-Location", "Date", "Etag", "Expires", "Last-Modified", "Vary"} {
		if v, ok := stored[f]; ok {
			out[f] = v
		}
	}
	return out
}

// surrogateKeys are the purge keys of a response (Surrogate-Key, space
// separated, possibly over several lines), deduplicated.
func surrogateKeys(h http.Header) []string {
	var out []string
	for _, line := range h.Values(HeaderSurrogateKey) {
		for _, k := range strings.Fields(line) {
			dup := false
			for _, o := range out {
				dup = dup || o == k
			}
			if !dup {
				out = append(out, k)
			}
		}
	}
	return out
}
