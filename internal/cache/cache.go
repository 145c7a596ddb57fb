// Package cache is the HTTP cache of a PoP, shared by all its apps and
// following RFC 9111 as a shared cache: freshness (s-maxage, max-age,
// Expires, a Last-Modified heuristic), Age, Vary, no-store, no-cache,
// private, must-revalidate, conditional revalidation (ETag and
// Last-Modified, 304s merged into the stored response), stale-while-
// revalidate and stale-if-error (RFC 5861). On top of the RFC: request
// collapsing (one origin request for any number of concurrent misses),
// purge by Surrogate-Key, by URL or of a whole app, hard or soft, a memory
// budget in bytes with LRU eviction and an optional disk tier.
//
// Bodies stream: a response is sent to its first client while it fills the
// cache, every other client of it reads the same bytes as they arrive, and
// an object larger than the per-object limit passes through without being
// held (see body.go).
//
// Two users: a function's outbound fetch calls Do with the origin as a
// function (internal/fetch), and the gateway wraps a function with Handler
// so that responses the function marks cacheable are served without
// running it. Keys are per app: apps never see each other's entries.
package cache

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Header fields the cache reads or writes.
const (
	// HeaderXCache says how the cache answered: one of the Label values.
	HeaderXCache = "X-Cache"
	// HeaderSurrogateKey tags a response with purge keys, separated by
	// spaces. The Handler strips it before the client sees the response.
	HeaderSurrogateKey = "Surrogate-Key"
)

// X-Cache labels.
const (
	Hit          = "HIT"            // fresh from the cache (or collapsed behind another request's miss)
	Miss         = "MISS"           // fetched from the origin (and stored, if it may be)
	Stale        = "STALE"          // stale, served while it is revalidated in the background
	Revalidated  = "REVALIDATED"    // stale, confirmed by the origin with a 304
	StaleIfError = "STALE-IF-ERROR" // stale, served because the origin failed
	Pass         = "PASS"           // not cacheable: straight from the origin, not stored
)

// labelHdr is the X-Cache value of each label, made once (never modified).
var labelHdr = map[string][]string{Hit: {Hit}, Miss: {Miss}, Stale: {Stale}, Revalidated: {Revalidated},
	StaleIfError: {StaleIfError}, Pass: {Pass}}

// Origin is where a miss goes: it sends req and returns the response, whose
// body the cache reads and closes. It must honour ctx. Requests for the same
// key may reach it concurrently only after a purge or for different variants.
type Origin func(ctx context.Context, req *http.Request) (*http.Response, error)

// Options configure a Cache. Zero values take the defaults.
type Options struct {
	// MemoryBytes is the memory budget: bodies, headers and per-entry
	// overhead of complete entries (default 256 MiB). Least recently used
	// entries go beyond it (to disk, when there is a disk tier).
	MemoryBytes int64
	// MaxObjectBytes is the largest body stored (default 8 MiB, at most a
	// quarter of MemoryBytes); larger ones pass through, streamed.
	MaxObjectBytes int64
	// Dir enables the disk tier: entries evicted from memory are written
	// there, one file each, and found again after a restart.
	Dir string
	// DiskBytes bounds the disk tier (default 1 GiB).
	DiskBytes int64
	// Now is the clock (default time.Now); tests inject one.
	Now func() time.Time
	// MaxWaiters bounds the requests collapsed behind one miss (default
	// 1024); more go to the origin on their own.
	MaxWaiters int
	// MaxVariants bounds the variants (Vary) kept per URL (default 16).
	MaxVariants int
	// HeuristicMax caps heuristic freshness (default 24h); negative
	// disables the heuristic: only explicit freshness is used.
	HeuristicMax time.Duration
	// PassWindow is how far ahead of its slowest reader a body that passes
	// through may be read from the origin (default 1 MiB).
	PassWindow int64
	// OriginTimeout bounds an origin exchange the cache makes on behalf of
	// several requests (a collapsed miss, a background revalidation), head
	// and body, since no single client's deadline applies (default 2 min).
	OriginTimeout time.Duration
	// StaleOnOpen marks every entry found on disk at Open as purged softly:
	// it is revalidated before it is served. A PoP that cannot know which
	// purges it missed while it was down sets it.
	StaleOnOpen bool
	// PerRequest names response fields that describe one exchange, not
	// the resource (a request id): they are never stored, and an answer
	// from an entry carries the caller's own (set on the ResponseWriter
	// before Handler runs) or, for the request whose miss produced the
	// entry, the origin's.
	PerRequest []string
	Logger     *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.MemoryBytes <= 0 {
		o.MemoryBytes = 256 << 20
	}
	if o.MaxObjectBytes <= 0 {
		o.MaxObjectBytes = 8 << 20
	}
	o.MaxObjectBytes = min(o.MaxObjectBytes, max(o.MemoryBytes/4, 1))
	if o.DiskBytes <= 0 {
		o.DiskBytes = 1 << 30
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxWaiters <= 0 {
		o.MaxWaiters = 1024
	}
	if o.MaxVariants <= 0 {
		o.MaxVariants = 16
	}
	if o.HeuristicMax == 0 {
		o.HeuristicMax = 24 * time.Hour
	}
	if o.OriginTimeout <= 0 {
		o.OriginTimeout = 2 * time.Minute
	}
	if o.PassWindow <= 0 {
		o.PassWindow = 1 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	pr := make([]string, len(o.PerRequest))
	for i, f := range o.PerRequest {
		pr[i] = http.CanonicalHeaderKey(f)
	}
	o.PerRequest = pr
	return o
}

// Cache is an HTTP cache shared by the apps of a PoP. It is safe for
// concurrent use.
type Cache struct {
	opts Options
	now  func() time.Time

	mu      sync.Mutex
	apps    map[string]*appIndex
	flights map[string]*flight
	lru     list.List // complete entries in memory, most recently used first
	memUsed int64
	disk    *diskTier
	// work for after the lock: files to delete, entries to write to disk
	trash []string
	spill []spillItem

	// Hit-for-pass marks (pass.go): app → primary key → until when.
	passes    map[string]map[string]time.Time
	passMarks int

	stats stats
}

// appIndex is one app's entries.
type appIndex struct {
	slots  map[string]*slot               // primary key (host + path?query) → variants
	byPath map[string]map[string]struct{} // path?query → primary keys, for purges by path
	tags   map[string]map[*entry]struct{} // Surrogate-Key → entries
}

// slot holds the stored variants of one URL, newest first.
type slot struct{ variants []*entry }

// entry is one stored response.
type entry struct {
	app, primary, path string
	varyFields         []string
	varyVals           []string
	status             int
	header             http.Header // as stored: no connection fields, no Age
	// fields are header's fields as a client gets them (no purge tags,
	// no per-request fields, no Content-Length), made once under c.mu.
	fields             []field
	tags               []string
	respTime           time.Time
	initialAge         time.Duration
	lifetime           time.Duration
	swr, sie           time.Duration // -1 when absent
	mustRevalidate     bool          // must-revalidate, proxy-revalidate or s-maxage: never served stale
	noCache            bool          // validated before every use
	authOK             bool          // may answer requests with Authorization
	etag, lastModified string
	purgedAge          time.Duration // -1; else the age at which a soft purge made it stale

	body *body // nil when only on disk
	size int64 // body bytes, once complete
	// Header values made once, so that a hit allocates none (under c.mu).
	lengthHdr []string // Content-Length, once complete
	ageHdr    []string // the last Age served
	ageSecs   int64
	cost      int64 // counted in memUsed while in the LRU
	lru       *list.Element
	indexed   bool
	disk      *diskFile // a copy on disk
}

// field is a header field with its values capped, so that an append by
// whoever receives it copies instead of writing into the entry.
type field struct {
	key  string
	vals []string
}

// clientFields are the fields of a stored header a client gets. Content-
// Length is left out: each answer sets its own.
func clientFields(h http.Header, perRequest []string) []field {
	out := make([]field, 0, len(h))
	for k, v := range h {
		if k == HeaderSurrogateKey || k == "Surrogate-Control" || k == "Content-Length" || slices.Contains(perRequest, k) {
			continue
		}
		out = append(out, field{k, v[:len(v):len(v)]})
	}
	return out
}

// perRequestFields are h's per-request fields (Options.PerRequest).
func perRequestFields(h http.Header, perRequest []string) []field {
	var out []field
	for _, k := range perRequest {
		if v := h[k]; len(v) > 0 {
			out = append(out, field{k, v[:len(v):len(v)]})
		}
	}
	return out
}

// perEntry approximates the memory an entry costs beside its body and
// header bytes (structs, maps, list element).
const perEntry = 512

func (e *entry) age(now time.Time) time.Duration {
	return max(e.initialAge+now.Sub(e.respTime), 0)
}

// life is the freshness lifetime, cut short by a soft purge.
func (e *entry) life() time.Duration {
	if e.purgedAge >= 0 {
		return min(e.lifetime, e.purgedAge)
	}
	return e.lifetime
}

func (e *entry) headerCost() int64 {
	n := int64(perEntry + len(e.primary) + len(e.path))
	for k, vs := range e.header {
		for _, v := range vs {
			n += int64(len(k) + len(v) + 16)
		}
	}
	return n
}

func (e *entry) varyMatches(h http.Header) bool {
	for i, f := range e.varyFields {
		if varyValue(h, f) != e.varyVals[i] {
			return false
		}
	}
	return true
}

// flight is one origin request that concurrent misses of a key share.
type flight struct {
	app     string
	done    chan struct{}
	waiters int
	// set before done is closed:
	e     *entry         // the response to share, or nil
	label string         // how the leader's response is labelled
	err   error          // the origin's error, shared unless it is a context's
	resp  *http.Response // a response only the leader may have (not shareable)
	// leaderGone is set when the leader stopped waiting; resp is then
	// closed by whoever sees it last.
	leaderGone bool
	// detached: a purge happened while the origin was asked; the response
	// is given to those already waiting but not stored.
	detached bool
	// staleBody is the body of the entry being revalidated, taken when the
	// flight started (the entry may leave memory meanwhile).
	staleBody *body
	// readers are attached to e's body for the requests waiting, one each.
	readers []*bodyReader
	// markPass: a response that cannot be stored marks its URL for
	// hit-for-pass (the function cache's flights, pass.go).
	markPass bool
	// own are the per-request fields of the origin's response, for the
	// leader's answer alone.
	own []field
}

type stats struct {
	hits, misses, stale, revalidated, staleIfError, passes, collapsed atomic.Int64
	originRequests, evictions, diskWrites, diskReads, diskCorrupt     atomic.Int64
}

// Stats are counters since the cache was created.
type Stats struct {
	Hits, Misses, Stale, Revalidated, StaleIfError, Passes int64
	Collapsed                                              int64 // requests served by another request's origin fetch
	OriginRequests                                         int64
	Evictions                                              int64 // entries evicted from memory
	DiskWrites, DiskReads, DiskCorrupt                     int64
	Entries                                                int   // entries indexed (memory and disk)
	MemoryBytes, DiskBytes                                 int64 // in use
}

// New returns a memory-only cache; with opts.Dir use Open.
func New(opts Options) *Cache {
	opts = opts.withDefaults()
	c := &Cache{opts: opts, now: opts.Now, apps: map[string]*appIndex{}, flights: map[string]*flight{}}
	return c
}

// Open returns a cache with a disk tier in opts.Dir (created if missing),
// indexing the entries a previous run left there. Files that are not
// entries of this format, or are damaged, are removed and counted.
func Open(opts Options) (*Cache, error) {
	c := New(opts)
	if c.opts.Dir == "" {
		return c, nil
	}
	d, err := openDisk(c, c.opts.Dir, c.opts.DiskBytes)
	if err != nil {
		return nil, err
	}
	c.disk = d
	return c, nil
}

// Close stops the disk tier's writer after writing to it what memory holds
// that it has not (within its budget), so that a restart finds it.
// Responses being read stay valid.
func (c *Cache) Close() error {
	if c.disk == nil {
		return nil
	}
	c.mu.Lock()
	var items []spillItem
	for el := c.lru.Back(); el != nil; el = el.Prev() { // least recent first: the most recent end up first in the disk's LRU
		if e := el.Value.(*entry); e.disk == nil && e.size <= c.disk.maxObject {
			items = append(items, spillItem{e, e.body, metaOf(e), 0})
		}
	}
	c.unlock()
	c.disk.close(items)
	return nil
}

// Stats returns the counters and sizes.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	n := 0
	for _, a := range c.apps {
		for _, s := range a.slots {
			n += len(s.variants)
		}
	}
	mem := c.memUsed
	var disk int64
	if c.disk != nil {
		disk = c.disk.used
	}
	c.mu.Unlock()
	s := &c.stats
	return Stats{Hits: s.hits.Load(), Misses: s.misses.Load(), Stale: s.stale.Load(), Revalidated: s.revalidated.Load(),
		StaleIfError: s.staleIfError.Load(), Passes: s.passes.Load(), Collapsed: s.collapsed.Load(),
		OriginRequests: s.originRequests.Load(), Evictions: s.evictions.Load(), DiskWrites: s.diskWrites.Load(),
		DiskReads: s.diskReads.Load(), DiskCorrupt: s.diskCorrupt.Load(), Entries: n, MemoryBytes: mem, DiskBytes: disk}
}

// unlock releases c.mu, then does the file work decided under it.
func (c *Cache) unlock() {
	trash, spill := c.trash, c.spill
	c.trash, c.spill = nil, nil
	c.mu.Unlock()
	if c.disk != nil && (len(trash) > 0 || len(spill) > 0) {
		c.disk.handle(trash, spill)
	}
}

// keyOf is a request's primary key (host and path?query: the target URI
// without its scheme) and its path?query alone. It appends to buf, so that
// a lookup allocates nothing: a map index by string(buf) does not copy.
func keyOf(buf []byte, req *http.Request) (primary []byte, path string) {
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	path = pathOf(req)
	buf = appendHostKey(buf, host)
	return append(buf, path...), path
}

func pathOf(req *http.Request) string {
	if u := req.RequestURI; u != "" && u[0] == '/' {
		return u
	}
	p := req.URL.EscapedPath()
	if p == "" {
		p = "/"
	}
	if req.URL.RawQuery != "" {
		p += "?" + req.URL.RawQuery
	}
	return p
}

// appendHostKey appends hostKey(h) without allocating.
func appendHostKey(dst []byte, h string) []byte {
	h = strings.TrimSuffix(strings.TrimSuffix(h, ":80"), ":443")
	for i := 0; i < len(h); i++ {
		c := h[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// ---- the index ----

func (c *Cache) appLocked(app string) *appIndex {
	a := c.apps[app]
	if a == nil {
		a = &appIndex{slots: map[string]*slot{}, byPath: map[string]map[string]struct{}{}, tags: map[string]map[*entry]struct{}{}}
		c.apps[app] = a
	}
	return a
}

// lookupLocked finds the stored variant the request selects.
func (c *Cache) lookupLocked(app string, primary []byte, h http.Header, auth bool) *entry {
	a := c.apps[app]
	if a == nil {
		return nil
	}
	s := a.slots[string(primary)]
	if s == nil {
		return nil
	}
	for _, e := range s.variants {
		if e.varyMatches(h) && (!auth || e.authOK) {
			return e
		}
	}
	return nil
}

// insertLocked indexes e, replacing the variants the request that fetched
// it would have selected.
func (c *Cache) insertLocked(e *entry, reqHeader http.Header) {
	a := c.appLocked(e.app)
	s := a.slots[e.primary]
	if s == nil {
		s = &slot{}
		a.slots[e.primary] = s
		ps := a.byPath[e.path]
		if ps == nil {
			ps = map[string]struct{}{}
			a.byPath[e.path] = ps
		}
		ps[e.primary] = struct{}{}
	}
	for i := len(s.variants) - 1; i >= 0; i-- {
		if v := s.variants[i]; v.varyMatches(reqHeader) {
			c.removeLocked(v)
		}
	}
	if s = a.slots[e.primary]; s == nil { // removing the last variant dropped the slot
		c.insertLocked(e, reqHeader)
		return
	}
	s.variants = append([]*entry{e}, s.variants...)
	for _, t := range e.tags {
		m := a.tags[t]
		if m == nil {
			m = map[*entry]struct{}{}
			a.tags[t] = m
		}
		m[e] = struct{}{}
	}
	e.indexed = true
	if len(s.variants) > c.opts.MaxVariants {
		c.removeLocked(s.variants[len(s.variants)-1])
	}
}

// removeLocked forgets e everywhere: index, LRU, disk.
func (c *Cache) removeLocked(e *entry) {
	if !e.indexed {
		return
	}
	e.indexed = false
	a := c.apps[e.app]
	if s := a.slots[e.primary]; s != nil {
		for i, v := range s.variants {
			if v == e {
				s.variants = append(s.variants[:i:i], s.variants[i+1:]...)
				break
			}
		}
		if len(s.variants) == 0 {
			delete(a.slots, e.primary)
			if ps := a.byPath[e.path]; ps != nil {
				delete(ps, e.primary)
				if len(ps) == 0 {
					delete(a.byPath, e.path)
				}
			}
		}
	}
	for _, t := range e.tags {
		if m := a.tags[t]; m != nil {
			delete(m, e)
			if len(m) == 0 {
				delete(a.tags, t)
			}
		}
	}
	if e.lru != nil {
		c.lru.Remove(e.lru)
		e.lru = nil
		c.memUsed -= e.cost
	}
	if e.disk != nil {
		c.disk.forgetLocked(e)
	}
	if len(a.slots) == 0 {
		delete(c.apps, e.app)
	}
}

// settled is the body's news: e's body is complete and kept, or it is not.
func (c *Cache) settled(e *entry, kept bool, size int64) {
	c.mu.Lock()
	defer c.unlock()
	if !e.indexed {
		return
	}
	if !kept {
		c.removeLocked(e)
		return
	}
	e.size = size
	c.accountLocked(e)
}

// accountLocked puts an entry whose body is in memory into the LRU and
// evicts what no longer fits.
func (c *Cache) accountLocked(e *entry) {
	if e.lru != nil {
		c.lru.MoveToFront(e.lru)
		return
	}
	e.cost = e.size + e.headerCost()
	e.lengthHdr = []string{strconv.FormatInt(e.size, 10)}
	c.memUsed += e.cost
	e.lru = c.lru.PushFront(e)
	for c.memUsed > c.opts.MemoryBytes && c.lru.Len() > 1 {
		v := c.lru.Back().Value.(*entry)
		c.lru.Remove(v.lru)
		v.lru = nil
		c.memUsed -= v.cost
		c.stats.evictions.Add(1)
		switch {
		case v.disk != nil:
			v.body = nil // the disk copy stays
		case c.disk != nil && v.size <= c.disk.maxObject && c.disk.pendingBytes+v.cost <= max(c.opts.MemoryBytes/8, v.cost):
			// Written after the lock, and served from memory until then.
			// What waits for the disk is bounded (an eighth of the budget,
			// or one entry), so a slow disk costs entries, not memory.
			c.disk.pendingBytes += v.cost
			c.disk.pending++
			c.spill = append(c.spill, spillItem{v, v.body, metaOf(v), v.cost})
		default:
			c.removeLocked(v)
		}
	}
}

// ---- serving ----

// served is how a request is answered: a stored entry (with a reader on
// its body), or a response straight from the origin.
type served struct {
	e           *entry
	label       string
	age         time.Duration
	notModified bool        // answer the client's conditional request with 304
	body        *bodyReader // nil for HEAD and 304, and when chunks are set
	chunks      [][]byte    // a complete body, for writing without a reader
	lengthHdr   []string    // Content-Length, when known
	ageHdr      []string
	resp        *http.Response // passed through: not from an entry
	own         []field        // per-request fields of the origin's answer (the leader of a miss)
	straight    bool           // hit-for-pass: the caller runs its handler itself (pass.go)
}

// serveLocked prepares the answer from e, reading its body with r (a
// reader attached for a collapsed request) or a new reader. ok is false
// when e's body is not in memory (on disk) or its beginning is gone (it
// passes through); r is closed then, and whenever it is not needed.
func (c *Cache) serveLocked(ctx context.Context, req *http.Request, e *entry, now time.Time, label string, r *bodyReader, direct bool) (served, bool) {
	if e.body == nil {
		closeReader(r)
		return served{}, false
	}
	s := served{e: e, label: label, age: e.age(now)}
	if e.fields == nil {
		e.fields = clientFields(e.header, c.opts.PerRequest)
	}
	if e.lru != nil {
		c.lru.MoveToFront(e.lru)
	} else if _, ok := e.body.complete(); ok && e.indexed {
		// Evicted but still queued for the disk: it is back in use.
		c.accountLocked(e)
	}
	if secs := int64(s.age / time.Second); e.ageHdr == nil || secs != e.ageSecs {
		e.ageHdr, e.ageSecs = []string{strconv.FormatInt(secs, 10)}, secs
	}
	s.ageHdr, s.lengthHdr = e.ageHdr, e.lengthHdr
	if e.status == http.StatusOK && notModified(req.Header, e.etag, e.lastModified) || req.Method == http.MethodHead {
		s.notModified = req.Method != http.MethodHead
		closeReader(r)
		return s, true
	}
	if direct && r == nil && e.lru != nil {
		// Complete and accounted: its chunks never change again.
		s.chunks = e.body.chunks
		return s, true
	}
	if r == nil {
		var err error
		if r, err = e.body.reader(ctx); err != nil {
			return served{}, false
		}
	}
	r.ctx = ctx
	s.body = r
	return s, true
}

func closeReader(r *bodyReader) {
	if r != nil {
		r.Close()
	}
}

// header is the header of an answer from an entry. Its value slices may
// be shared with the entry, capped so that an append copies.
func (s served) header() http.Header {
	var h http.Header
	if s.notModified {
		h = notModifiedHeader(s.e.header)
	} else {
		h = s.e.header.Clone() // with its purge tags: a function may pass them on
		switch n := s.e.body.knownLength(); {
		case s.lengthHdr != nil:
			h["Content-Length"] = s.lengthHdr[:1:1]
		case n >= 0:
			h["Content-Length"] = []string{strconv.FormatInt(n, 10)}
		default:
			delete(h, "Content-Length")
		}
	}
	for _, f := range s.own {
		h[f.key] = f.vals
	}
	h["Age"] = s.ageHdr[:1:1]
	h[HeaderXCache] = labelHdr[s.label][:1:1]
	return h
}

func (s served) status() int {
	if s.notModified {
		return http.StatusNotModified
	}
	return s.e.status
}

// Do answers req from the cache or through origin, storing what may be
// stored, and returns a response whose body the caller must close. The
// request's own Cache-Control is honoured (no-cache, max-age, max-stale,
// min-fresh, only-if-cached, no-store, stale-if-error): a function asks
// for what it needs. Methods other than GET and HEAD go to the origin, and
// a successful unsafe one (POST, PUT, DELETE...) invalidates the URL.
func (c *Cache) Do(ctx context.Context, app string, req *http.Request, origin Origin) (*http.Response, error) {
	s, err := c.get(ctx, app, req, origin, true, false)
	if err != nil {
		return nil, err
	}
	if s.resp != nil {
		return s.resp, nil
	}
	code := s.status()
	resp := &http.Response{
		Status: statusLine(code), StatusCode: code,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: s.header(), Body: http.NoBody, ContentLength: 0, Request: req,
	}
	if s.body != nil {
		resp.Body = s.body
		resp.ContentLength = s.e.body.knownLength()
	} else if req.Method == http.MethodHead && !s.notModified {
		resp.ContentLength = s.e.body.knownLength()
	}
	return resp, nil
}

// statusLines are "200 OK" and the like, made once.
var statusLines = func() (out [600]string) {
	for i := range out {
		out[i] = fmt.Sprintf("%d %s", i, http.StatusText(i))
	}
	return out
}()

func statusLine(code int) string {
	if code >= 0 && code < len(statusLines) {
		return statusLines[code]
	}
	return fmt.Sprintf("%d %s", code, http.StatusText(code))
}

// verdict is what a stored entry can do for a request.
type verdict int

const (
	useFresh     verdict = iota
	useStale             // stale but acceptable as is (the request's max-stale)
	useSWR               // stale: serve it and revalidate in the background
	mustValidate         // ask the origin (conditionally when it has validators)
)

func judge(e *entry, now time.Time, rq directives) verdict {
	age, life := e.age(now), e.life()
	if !e.noCache && age < life && !rq.noCache &&
		(rq.maxAge < 0 || age <= rq.maxAge) && (rq.minFresh < 0 || life-age >= rq.minFresh) {
		return useFresh
	}
	if e.noCache || e.mustRevalidate || rq.noCache {
		return mustValidate
	}
	staleness := age - life
	if staleness >= 0 && (rq.maxStaleAny || rq.maxStale >= 0 && staleness <= rq.maxStale) {
		return useStale
	}
	if staleness >= 0 && e.swr >= 0 && staleness < e.swr {
		return useSWR
	}
	return mustValidate
}

// staleIfError reports whether e may answer in place of an origin error
// (RFC 5861: the response's stale-if-error, or the request's).
func staleIfError(e *entry, now time.Time, rq directives) bool {
	if e.mustRevalidate {
		return false
	}
	staleness := e.age(now) - e.life()
	return staleness < max(e.sie, rq.staleIfError) || staleness < 0
}

// get decides how to answer req. honor says whether the request's own
// Cache-Control counts (a function's fetch) or not (the public's requests
// to the gateway, which must not be able to empty the cache).
func (c *Cache) get(ctx context.Context, app string, req *http.Request, origin Origin, honor, direct bool) (served, error) {
	switch {
	case req.Method != http.MethodGet && req.Method != http.MethodHead:
		return c.unsafe(ctx, app, req, origin)
	case len(req.Header["Range"]) > 0 || len(req.Header["If-Range"]) > 0:
		return c.pass(ctx, req, origin)
	}
	rq := noDirectives()
	if honor {
		rq = requestDirectives(req.Header)
	}
	var kb [256]byte
	pk, path := keyOf(kb[:0], req)
	auth := len(req.Header["Authorization"]) > 0
	var primary, fk string // made on a miss only: a hit allocates no key
	for attempt := 0; attempt < 4; attempt++ {
		now := c.now()
		c.mu.Lock()
		e := c.lookupLocked(app, pk, req.Header, auth)
		var stale *entry
		if e != nil && e.body == nil && e.disk != nil {
			c.unlock()
			c.disk.load(e)
			continue
		}
		if e != nil {
			v := judge(e, now, rq)
			label := Hit
			switch v {
			case useStale:
				label = Stale
			case useSWR:
				label = Stale
				primary = string(pk)
				fk = app + "\x00" + primary
				c.revalidateLocked(fk, app, primary, path, req, e, origin)
			case mustValidate:
				stale = e
			}
			if v != mustValidate {
				if s, ok := c.serveLocked(ctx, req, e, now, label, nil, direct); ok {
					c.unlock()
					c.count(label)
					return s, nil
				}
				c.unlock()
				continue // its body is on its way out; look again
			}
		}
		if e == nil && direct && c.passMarkedLocked(app, pk, now) {
			c.unlock()
			c.count(Pass)
			return served{straight: true}, nil
		}
		if rq.onlyIfCached {
			c.unlock()
			return c.gatewayTimeout(req), nil
		}
		if req.Method == http.MethodHead && stale == nil {
			// A HEAD miss is passed on as a HEAD: fetching the body to
			// store it would cost the origin a GET nobody asked for.
			c.unlock()
			return c.pass(ctx, req, origin)
		}
		if fk == "" {
			primary = string(pk)
			fk = app + "\x00" + primary
		}
		f := c.flights[fk]
		if f != nil && f.waiters >= c.opts.MaxWaiters {
			c.unlock()
			break
		}
		leader := f == nil
		if leader {
			f = &flight{app: app, done: make(chan struct{}), markPass: direct}
			if stale != nil {
				f.staleBody = stale.body
			}
			c.flights[fk] = f
			go c.fetch(f, fk, app, primary, path, req.Clone(context.WithoutCancel(ctx)), rq, stale, origin)
		} else {
			f.waiters++
		}
		c.unlock()
		s, retry, err := c.await(ctx, f, req, leader, auth)
		if !retry {
			return s, err
		}
	}
	return c.pass(ctx, req, origin)
}

// await waits for a flight and takes its result: the shared entry (if it
// fits this request), the leader's own response, or its error. retry means
// look again: the result does not fit this request.
func (c *Cache) await(ctx context.Context, f *flight, req *http.Request, leader, auth bool) (served, bool, error) {
	select {
	case <-f.done:
	case <-ctx.Done():
		c.mu.Lock()
		select {
		case <-f.done: // it came anyway
		default:
			if leader {
				f.leaderGone = true
			} else {
				f.waiters--
			}
			c.unlock()
			return served{}, false, ctx.Err()
		}
		c.unlock()
	}
	c.mu.Lock()
	var r *bodyReader // attached for us when the flight was resolved
	if n := len(f.readers); n > 0 {
		r, f.readers = f.readers[n-1], f.readers[:n-1]
	}
	resp := f.resp
	if leader {
		f.resp = nil
	}
	c.unlock()
	if leader && resp != nil {
		if ctx.Err() != nil {
			resp.Body.Close()
			return served{}, false, ctx.Err()
		}
		c.count(Pass)
		return served{resp: resp}, false, nil
	}
	switch {
	case f.err != nil && (leader || !isContextErr(f.err)):
		closeReader(r)
		return served{}, false, f.err
	case f.err != nil || f.e == nil:
		// The leader's client left, or the response is not shareable (it is
		// private, say): ask on our own.
		closeReader(r)
		return served{}, true, nil
	}
	e := f.e
	if !e.varyMatches(req.Header) || auth && !e.authOK {
		closeReader(r)
		return served{}, true, nil
	}
	label := f.label
	if !leader && label != StaleIfError {
		label = Hit
		c.stats.collapsed.Add(1)
	}
	c.mu.Lock()
	s, ok := c.serveLocked(ctx, req, e, c.now(), label, r, false)
	c.unlock()
	if !ok {
		return served{}, true, nil
	}
	if leader {
		s.own = f.own
	}
	c.count(label)
	return s, false, nil
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

func (c *Cache) count(label string) {
	switch label {
	case Hit:
		c.stats.hits.Add(1)
	case Miss:
		c.stats.misses.Add(1)
	case Stale:
		c.stats.stale.Add(1)
	case Revalidated:
		c.stats.revalidated.Add(1)
	case StaleIfError:
		c.stats.staleIfError.Add(1)
	case Pass:
		c.stats.passes.Add(1)
	}
}

// resolve ends a flight: later requests no longer join it. Each request
// waiting for it gets a reader attached now, before the body's fill can
// drop anything (a body that passes through keeps what its slowest reader
// has not read, and must know its readers from the start).
func (c *Cache) resolve(f *flight, fk string, e *entry, label string, resp *http.Response, err error) {
	c.mu.Lock()
	if c.flights[fk] == f {
		delete(c.flights, fk)
	}
	f.e, f.label, f.resp, f.err = e, label, resp, err
	if f.leaderGone && resp != nil {
		resp.Body.Close()
		f.resp = nil
	}
	if e != nil && e.body != nil {
		parties := f.waiters
		if !f.leaderGone {
			parties++
		}
		for range parties {
			r, err := e.body.reader(context.Background())
			if err != nil {
				break
			}
			f.readers = append(f.readers, r)
		}
	}
	close(f.done)
	c.unlock()
}

// originRequest is req as the origin gets it on a miss: a GET without the
// client's conditionals (the cache wants a full response it can store and
// evaluates the client's validators itself), with the stored response's
// validators when there is one to revalidate.
func originRequest(req *http.Request, stale *entry) *http.Request {
	o := req.Clone(req.Context())
	o.Method = http.MethodGet
	for _, f := range []string{"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since"} {
		o.Header.Del(f)
	}
	if stale != nil {
		if stale.etag != "" {
			o.Header.Set("If-None-Match", stale.etag)
		}
		if stale.lastModified != "" {
			o.Header.Set("If-Modified-Since", stale.lastModified)
		}
	}
	return o
}

// cancelOnClose ends the origin request's context when its body is closed.
type cancelOnClose struct {
	rc     io.Reader
	closer func() error
	cancel context.CancelFunc
}

func (b *cancelOnClose) Read(p []byte) (int, error) { return b.rc.Read(p) }
func (b *cancelOnClose) Close() error {
	err := b.closer()
	b.cancel()
	return err
}

// fetch asks the origin for a flight and resolves it. It runs in its own
// goroutine with a context detached from the leader's: a leader whose
// client leaves does not fail the requests collapsed behind it, and the
// response still fills the cache. The origin's own timeouts bound it.
func (c *Cache) fetch(f *flight, fk, app, primary, path string, req *http.Request, rq directives, stale *entry, origin Origin) {
	resolved := false
	ctx, cancel := context.WithTimeout(req.Context(), c.opts.OriginTimeout)
	defer func() {
		if !resolved {
			// The origin panicked: nobody may wait forever.
			p := recover()
			cancel()
			c.opts.Logger.Error("cache: the origin panicked", "url", primary, "panic", p)
			c.resolve(f, fk, nil, "", nil, fmt.Errorf("cache: the origin for %s failed: %v", primary, p))
		}
	}()
	for try := 0; try < 2; try++ {
		oreq := originRequest(req, stale).WithContext(ctx)
		reqTime := c.now()
		c.stats.originRequests.Add(1)
		resp, err := origin(ctx, oreq)
		respTime := c.now()
		if err == nil && resp.StatusCode == http.StatusNotModified && stale != nil {
			resp.Body.Close()
			if et := resp.Header.Get("Etag"); et != "" && stale.etag != "" && et != stale.etag {
				// The 304 validates another representation than ours
				// (RFC 9111 4.3.4): ask again, unconditionally.
				stale = nil
				continue
			}
			f.own = perRequestFields(resp.Header, c.opts.PerRequest)
			c.mu.Lock()
			e := c.refreshed(stale, f.staleBody, resp.Header, reqTime, respTime)
			if stale.indexed && !f.detached {
				c.replaceLocked(stale, e)
			}
			c.unlock()
			cancel()
			resolved = true
			c.resolve(f, fk, e, Revalidated, nil, nil)
			return
		}
		if stale != nil && (err != nil || serverError(resp.StatusCode)) {
			c.mu.Lock()
			var e entry
			ok := staleIfError(stale, respTime, rq)
			if ok {
				// A copy holding the body taken at the start: the entry
				// may have left memory meanwhile; the copy is not indexed.
				e = *stale
				e.body, e.lru, e.indexed, e.disk = f.staleBody, nil, false, nil
			}
			c.unlock()
			if ok {
				if err == nil {
					resp.Body.Close()
				}
				cancel()
				resolved = true
				c.resolve(f, fk, &e, StaleIfError, nil, nil)
				return
			}
		}
		if err != nil {
			cancel()
			resolved = true
			c.resolve(f, fk, nil, "", nil, err)
			return
		}
		resolved = true
		c.store(f, fk, app, primary, path, req, rq, stale, resp, reqTime, respTime, cancel)
		return
	}
}

func serverError(code int) bool {
	return code == 500 || code == 502 || code == 503 || code == 504
}

// store turns a full origin response into an entry (stored if it may be)
// and resolves the flight with it, or hands it to the leader alone.
func (c *Cache) store(f *flight, fk, app, primary, path string, req *http.Request, rq directives, stale *entry,
	resp *http.Response, reqTime, respTime time.Time, cancel context.CancelFunc) {
	cc := parseCacheControl(resp.Header.Values("Cache-Control"))
	why := storability(req.Header, rq, resp.StatusCode, resp.Header, cc)
	var e *entry
	if why == "" {
		e = c.newEntry(app, primary, path, req.Header, resp.StatusCode, resp.Header, cc, reqTime, respTime)
		if e.lifetime <= 0 && e.etag == "" && e.lastModified == "" {
			why = "stale on arrival and no validator"
		}
	}
	if why != "" {
		if f.markPass && resp.StatusCode < 500 && why != whyAuthorization && why != whyRequestNoStore {
			c.mu.Lock()
			if !f.detached {
				c.markPassLocked(app, primary, respTime)
			}
			c.unlock()
		}
		c.passOn(f, fk, stale, resp, cancel)
		return
	}
	length := resp.ContentLength
	if resp.StatusCode == http.StatusNoContent {
		length = 0
	}
	f.own = perRequestFields(resp.Header, c.opts.PerRequest)
	e.body = newBody(length, c.opts.MaxObjectBytes, c.opts.PassWindow, func(kept bool, size int64) { c.settled(e, kept, size) })
	c.mu.Lock()
	if !f.detached && length <= c.opts.MaxObjectBytes {
		c.insertLocked(e, req.Header)
	}
	c.unlock()
	c.resolve(f, fk, e, Miss, nil, nil) // attaches the waiting requests' readers first
	e.body.start(resp.Body, cancel)
}

// passOn gives a response that is not stored to the flight's leader alone.
func (c *Cache) passOn(f *flight, fk string, stale *entry, resp *http.Response, cancel context.CancelFunc) {
	if stale != nil {
		// The origin no longer lets this be stored: forget the old one.
		c.mu.Lock()
		c.removeLocked(stale)
		c.unlock()
	}
	resp.Body = &cancelOnClose{rc: resp.Body, closer: resp.Body.Close, cancel: cancel}
	if resp.Header == nil {
		resp.Header = http.Header{}
	}
	resp.Header.Set(HeaderXCache, Pass)
	c.resolve(f, fk, nil, Pass, resp, nil)
}

// newEntry computes what the cache needs to know of a response.
func (c *Cache) newEntry(app, primary, path string, reqHeader http.Header, code int, h http.Header, cc directives, reqTime, respTime time.Time) *entry {
	date := dateOf(h, respTime)
	e := &entry{
		app: app, primary: primary, path: path, status: code, header: storedHeader(h, c.opts.PerRequest),
		respTime: respTime, initialAge: initialAge(h, date, reqTime, respTime),
		lifetime: freshnessLifetime(code, h, cc, date, c.opts.HeuristicMax),
		swr:      cc.staleWhileRevalidate, sie: cc.staleIfError,
		// s-maxage implies proxy-revalidate for a shared cache (RFC 9111 5.2.2.10).
		mustRevalidate: cc.mustRevalidate || cc.proxyRevalidate || cc.sMaxAge >= 0,
		noCache:        cc.noCache,
		authOK:         cc.public || cc.mustRevalidate || cc.sMaxAge >= 0,
		etag:           h.Get("Etag"), lastModified: h.Get("Last-Modified"),
		tags:      surrogateKeys(h),
		purgedAge: -1,
	}
	e.varyFields = varyFields(h)
	for _, f := range e.varyFields {
		e.varyVals = append(e.varyVals, varyValue(reqHeader, f))
	}
	return e
}

// refreshed is a stale entry updated by a 304 (RFC 9111 4.3.4): the stored
// body, the merged header, and freshness computed anew from them.
func (c *Cache) refreshed(old *entry, b *body, h304 http.Header, reqTime, respTime time.Time) *entry {
	h := mergeNotModified(old.header, h304, c.opts.PerRequest)
	cc := parseCacheControl(h.Values("Cache-Control"))
	date := dateOf(h304, respTime)
	e := *old
	e.header = h
	e.respTime = respTime
	e.initialAge = initialAge(h304, date, reqTime, respTime)
	e.lifetime = freshnessLifetime(old.status, h, cc, date, c.opts.HeuristicMax)
	e.swr, e.sie = cc.staleWhileRevalidate, cc.staleIfError
	e.mustRevalidate = cc.mustRevalidate || cc.proxyRevalidate || cc.sMaxAge >= 0
	e.noCache = cc.noCache
	e.authOK = cc.public || cc.mustRevalidate || cc.sMaxAge >= 0
	e.etag, e.lastModified = h.Get("Etag"), h.Get("Last-Modified")
	e.tags = surrogateKeys(h)
	e.purgedAge = -1
	e.body = b
	e.fields = nil
	e.lru, e.cost, e.indexed, e.disk = nil, 0, false, nil
	return &e
}

// replaceLocked puts e, a refreshed copy of old, in old's place.
func (c *Cache) replaceLocked(old, e *entry) {
	reqHeader := http.Header{}
	for i, f := range old.varyFields {
		if v := old.varyVals[i]; v != "\x00absent" {
			reqHeader[f] = []string{v}
		}
	}
	c.removeLocked(old)
	if e.body == nil {
		return
	}
	n, ok := e.body.complete()
	if !ok {
		return // revalidated while still filling: the next request refetches
	}
	e.size = n
	c.insertLocked(e, reqHeader)
	c.accountLocked(e)
}

// revalidateLocked starts one background revalidation of e (stale-while-
// revalidate), unless one is under way.
func (c *Cache) revalidateLocked(fk, app, primary, path string, req *http.Request, e *entry, origin Origin) {
	if c.flights[fk] != nil {
		return
	}
	f := &flight{app: app, done: make(chan struct{}), leaderGone: true, staleBody: e.body}
	c.flights[fk] = f
	go c.fetch(f, fk, app, primary, path, req.Clone(context.WithoutCancel(req.Context())), noDirectives(), e, origin)
}

// pass sends req to the origin, bypassing the cache.
func (c *Cache) pass(ctx context.Context, req *http.Request, origin Origin) (served, error) {
	c.stats.originRequests.Add(1)
	resp, err := origin(ctx, req)
	if err != nil {
		return served{}, err
	}
	if resp.Header == nil {
		resp.Header = http.Header{}
	}
	resp.Header.Set(HeaderXCache, Pass)
	c.count(Pass)
	return served{resp: resp}, nil
}

// unsafe sends a request with an unsafe method to the origin and, when it
// succeeds, invalidates the URL and the Location and Content-Location it
// names on the same host (RFC 9111 4.4).
func (c *Cache) unsafe(ctx context.Context, app string, req *http.Request, origin Origin) (served, error) {
	s, err := c.pass(ctx, req, origin)
	if err != nil || req.Method == http.MethodOptions || req.Method == http.MethodTrace || s.resp.StatusCode >= 400 {
		return s, err
	}
	c.invalidate(app, req, s.resp.Header)
	return s, nil
}

// invalidate removes the stored responses for the URL of req, whose unsafe
// method succeeded, and for the Location and Content-Location of its
// response header h on the same host (RFC 9111 4.4).
func (c *Cache) invalidate(app string, req *http.Request, h http.Header) {
	pk, _ := keyOf(nil, req)
	primary := string(pk)
	keys := []string{primary}
	host := primary[:len(primary)-len(pathOf(req))]
	for _, f := range []string{"Location", "Content-Location"} {
		if l := h.Get(f); l != "" {
			if u, err := req.URL.Parse(l); err == nil && (u.Host == "" || string(appendHostKey(nil, u.Host)) == host) {
				keys = append(keys, host+pathOfURL(u))
			}
		}
	}
	c.mu.Lock()
	if a := c.apps[app]; a != nil {
		for _, k := range keys {
			if sl := a.slots[k]; sl != nil {
				for _, e := range append([]*entry(nil), sl.variants...) {
					c.removeLocked(e)
				}
			}
		}
	}
	c.unlock()
}

func pathOfURL(u *url.URL) string {
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	if u.RawQuery != "" {
		p += "?" + u.RawQuery
	}
	return p
}

// gatewayTimeout is the answer to only-if-cached when nothing fits (RFC
// 9111 5.2.1.7).
func (c *Cache) gatewayTimeout(req *http.Request) served {
	return served{resp: &http.Response{
		Status: "504 Gateway Timeout", StatusCode: http.StatusGatewayTimeout, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{HeaderXCache: {Miss}, "Content-Length": {"0"}}, Body: http.NoBody, Request: req,
	}}
}
