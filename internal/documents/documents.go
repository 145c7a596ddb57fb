// Package documents is the document service of one PoP: JSON documents addressed
// by (app, collection, key), edited with batches of path operations, kept as
// CRDT states (package crdt) in the PoP's durable store (internal/store).
//
// Every write decodes the document's state, applies the operations as this
// PoP's replica, and hands the new state and the delta to store.Update, which
// writes both atomically and returns only once they are durable (fsynced,
// shared with concurrent writers). A method that returns nil has made its
// write durable; one that returns an error has changed nothing.
//
// Apps are isolated by construction: an app reaches documents only through
// the collections its manifest declares (SetApp), and the store's keys encode
// (app, collection, key) prefix-free, so no name, however crafted, reaches
// another app's documents.
package documents

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/crdt"
	"github.com/verge-edge/verge/internal/store"
)

// Limits.
const (
	DefaultMaxDocBytes = 1 << 20 // encoded CRDT state of one document
	MaxKeyBytes        = store.MaxDocLen
	DefaultListLimit   = store.DefaultListLimit
	MaxListLimit       = 1000
)

// Errors are wrapped with the specifics; test with errors.Is.
var (
	ErrUnknownApp        = errors.New("unknown app")
	ErrUnknownCollection = errors.New("unknown collection")
	ErrNotFound          = errors.New("document not found")
	ErrInvalid           = errors.New("invalid request")
	ErrTooLarge          = errors.New("document too large")
)

// Options configures a Service.
type Options struct {
	// Replica is this PoP's replica id in every document's causal context.
	// Two PoPs that edit the same documents must use different ids.
	Replica crdt.ReplicaID
	// MaxDocBytes bounds a document's encoded state (default DefaultMaxDocBytes).
	MaxDocBytes int
	// Written, if set, is told of every durable write: the context it was
	// made in and its entry in the store's log (replication follows the
	// write's trace with it).
	Written func(ctx context.Context, k store.Key, seq uint64)
	// Quota, if set, is an app's stored-bytes quota at this PoP (≤ 0:
	// none): a local write that would take the app's documents past it
	// fails with a *QuotaError (ErrQuota) and writes nothing (quota.go).
	Quota func(app string) int64
}

// Service is the document service of one PoP. Its methods are safe for
// concurrent use.
type Service struct {
	st      *store.Store
	replica crdt.ReplicaID
	maxDoc  int
	written func(ctx context.Context, k store.Key, seq uint64)
	quota   func(app string) int64

	usageMu sync.Mutex
	usage   map[string]*usage // app's stored bytes (quota.go)

	rendered renderCache // documents' JSON by their state (rendered.go)

	mu   sync.RWMutex
	apps map[string]map[string]verge.Collection
}

// New returns the document service over st, the PoP's store, which its
// owner opens and closes. st's MaxValueBytes must be at least
// StoreValueBytes(opts.MaxDocBytes).
func New(st *store.Store, opts Options) *Service {
	if opts.MaxDocBytes <= 0 {
		opts.MaxDocBytes = DefaultMaxDocBytes
	}
	return &Service{st: st, replica: opts.Replica, maxDoc: opts.MaxDocBytes, written: opts.Written, quota: opts.Quota,
		usage: map[string]*usage{}, apps: make(map[string]map[string]verge.Collection)}
}

// StoreValueBytes is the store's per-value bound that documents of up to
// maxDoc bytes need: a delta is at most about the size of the state it
// produced (a root set carries the whole document).
func StoreValueBytes(maxDoc int) int { return 2*maxDoc + 64<<10 }

// SetApp registers m's app and its collections, replacing what an earlier
// manifest of the same app declared. Documents of collections no longer
// declared stay on disk but cannot be reached.
func (s *Service) SetApp(m *verge.Manifest) {
	colls := make(map[string]verge.Collection, len(m.Collections))
	for _, c := range m.Collections {
		colls[c.Name] = c
	}
	s.mu.Lock()
	s.apps[m.Name] = colls
	s.mu.Unlock()
}

// Collections returns app's declared collections, sorted by name, with their
// scopes and regions.
func (s *Service) Collections(app string) ([]verge.Collection, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	colls, ok := s.apps[app]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownApp, app)
	}
	out := make([]verge.Collection, 0, len(colls))
	for _, c := range colls {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Apps returns the names of the registered apps, sorted.
func (s *Service) Apps() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.apps))
	for name := range s.apps {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// Collection returns the declaration of app's collection.
func (s *Service) Collection(app, coll string) (verge.Collection, error) {
	s.mu.RLock()
	colls, ok := s.apps[app]
	c, found := colls[coll]
	s.mu.RUnlock()
	switch {
	case !ok:
		return verge.Collection{}, fmt.Errorf("%w %q: no app of that name is loaded here", ErrUnknownApp, app)
	case !found:
		return verge.Collection{}, fmt.Errorf("%w %q: app %q does not declare it; add a [[collection]] to its verge.toml", ErrUnknownCollection, coll, app)
	}
	return c, nil
}

func (s *Service) key(app, coll, key string) (store.Key, error) {
	if _, err := s.Collection(app, coll); err != nil {
		return store.Key{}, err
	}
	if err := checkKey(key); err != nil {
		return store.Key{}, err
	}
	return store.Key{App: app, Collection: coll, Doc: key}, nil
}

func checkKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty document key", ErrInvalid)
	case len(key) > MaxKeyBytes:
		return fmt.Errorf("%w: document key is %d bytes, the limit is %d", ErrInvalid, len(key), MaxKeyBytes)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: document key is not valid UTF-8", ErrInvalid)
	}
	return nil
}

// Get returns the document as JSON (object keys sorted), as of the latest
// durable write: a write is visible once its writer is acknowledged.
func (s *Service) Get(app, coll, key string) (doc []byte, found bool, err error) {
	k, err := s.key(app, coll, key)
	if err != nil {
		return nil, false, err
	}
	state, ok, err := s.st.Get(k)
	if err != nil || !ok {
		return nil, false, err
	}
	if doc, ok := s.rendered.get(k, state); ok {
		return doc, true, nil
	}
	d, err := decode(k, state)
	if err != nil {
		return nil, false, err
	}
	v := d.Value()
	if m, ok := v.(map[string]any); ok && len(m) == 0 {
		return nil, false, nil // deleted (see empty)
	}
	doc, err = json.Marshal(v)
	if err != nil {
		return nil, false, fmt.Errorf("document %s: rendering JSON: %w", k, err)
	}
	return s.rendered.put(k, state, doc), true, nil
}

// Put replaces the whole document (creating it if absent) with doc, which
// must be a JSON object, and returns the document as stored. Invalid UTF-8
// and escaped lone surrogates are refused (crdt.CheckJSONText), not replaced.
func (s *Service) Put(ctx context.Context, app, coll, key string, doc []byte) ([]byte, error) {
	if !json.Valid(doc) {
		return nil, fmt.Errorf("%w: the document is not valid JSON", ErrInvalid)
	}
	if err := crdt.CheckJSONText(doc); err != nil {
		return nil, fmt.Errorf("%w: the document is %w", ErrInvalid, err)
	}
	if first := firstByte(doc); first != '{' {
		return nil, fmt.Errorf("%w: a document must be a JSON object, got %s", ErrInvalid, jsonKind(first))
	}
	return s.Update(ctx, app, coll, key, []crdt.Op{{Op: "set", Path: "", Value: doc}})
}

// Update applies ops to the document atomically (creating it as {} first if
// absent) and returns the document after them. Either every op applies or
// none does; the error then names the failing op's index and path.
// ctx bounds the wait for the document's lock, not the fsync.
func (s *Service) Update(ctx context.Context, app, coll, key string, ops []crdt.Op) ([]byte, error) {
	k, err := s.key(app, coll, key)
	if err != nil {
		return nil, err
	}
	if len(ops) == 0 {
		return nil, fmt.Errorf("%w: no operations", ErrInvalid)
	}
	var out, stored []byte
	var grown int64 // bytes reserved against the app's quota
	entry, err := s.st.Update(ctx, k, func(state []byte) ([]byte, []byte, error) {
		d := crdt.NewDoc()
		if state != nil {
			var err error
			if d, err = decode(k, state); err != nil {
				return nil, nil, err
			}
		}
		delta, err := d.Apply(s.replica, time.Now().UnixNano(), ops...)
		if errors.Is(err, crdt.ErrTooLarge) {
			return nil, nil, &kindError{ErrTooLarge, err}
		}
		if err != nil {
			return nil, nil, &kindError{ErrInvalid, err}
		}
		newState, err := d.MarshalBinary()
		if err != nil {
			return nil, nil, fmt.Errorf("document %s: encoding: %w", k, err)
		}
		if len(newState) > s.maxDoc {
			return nil, nil, fmt.Errorf("%w: the document would take %d bytes encoded, the limit is %d; split it into several documents",
				ErrTooLarge, len(newState), s.maxDoc)
		}
		// The decoder bounds how many elements a few bytes may expand to
		// (run-length encoding, tombstones of removed elements), so a
		// small encoding can still be refused on read. Never store what
		// cannot be read back: the document would be lost to its users.
		if _, err := crdt.DecodeDoc(newState); err != nil {
			if !errors.Is(err, crdt.ErrExpansion) {
				return nil, nil, fmt.Errorf("document %s: refusing to store a state that does not decode (a bug in package crdt): %w", k, err)
			}
			return nil, nil, &kindError{ErrTooLarge, fmt.Errorf(
				"the document would no longer be readable (%v); it holds too many elements, counting removed ones not yet collected: split it into several documents", err)}
		}
		enc, err := delta.MarshalBinary()
		if err != nil {
			return nil, nil, fmt.Errorf("document %s: encoding the delta: %w", k, err)
		}
		if out, err = d.JSON(); err != nil {
			return nil, nil, fmt.Errorf("document %s: rendering JSON: %w", k, err)
		}
		if grown, err = s.reserve(k, len(state), len(newState)); err != nil {
			return nil, nil, err
		}
		stored = newState
		return newState, enc, nil
	})
	if err != nil {
		s.release(k.App, grown)
	}
	if errors.Is(err, store.ErrTooLarge) {
		return nil, fmt.Errorf("%w: %w", ErrTooLarge, err)
	}
	if err != nil {
		return nil, err
	}
	if s.written != nil {
		s.written(ctx, k, entry.Seq)
	}
	if string(out) != "{}" { // an empty document reads as not found: Get does not look for it
		out = s.rendered.put(k, stored, out)
	}
	return out, nil
}

// Delete removes the document durably. found is false, and nothing is
// written, if there was no such document.
//
// A deletion is a CRDT operation (the root becomes empty) and the state is
// kept: its causal context is what lets peers apply the removal, and what
// keeps this replica's event numbers increasing if the document is created
// again. A removal concurrent with an update elsewhere keeps that update's
// keys (add-wins). A document whose root is empty reads as not found.
func (s *Service) Delete(ctx context.Context, app, coll, key string) (found bool, err error) {
	k, err := s.key(app, coll, key)
	if err != nil {
		return false, err
	}
	_, err = s.st.Update(ctx, k, func(state []byte) ([]byte, []byte, error) {
		if state == nil {
			return nil, nil, nil // nothing to delete: no write
		}
		d, err := decode(k, state)
		if err != nil {
			return nil, nil, err
		}
		if empty(d) {
			return nil, nil, nil
		}
		found = true
		delta, err := d.Apply(s.replica, time.Now().UnixNano(), crdt.Op{Op: "set", Path: "", Value: json.RawMessage("{}")})
		if err != nil {
			return nil, nil, fmt.Errorf("document %s: deleting: %w", k, err)
		}
		newState, err := d.MarshalBinary()
		if err != nil {
			return nil, nil, fmt.Errorf("document %s: encoding: %w", k, err)
		}
		enc, err := delta.MarshalBinary()
		if err != nil {
			return nil, nil, fmt.Errorf("document %s: encoding the delta: %w", k, err)
		}
		return newState, enc, nil
	})
	if err != nil {
		return false, err
	}
	return found, nil
}

// empty reports whether d reads as a deleted (or never written) document.
func empty(d *crdt.Doc) bool {
	m, ok := d.Value().(map[string]any)
	return ok && len(m) == 0
}

// List returns up to limit keys of the collection that sort after `after`
// (bytewise), in order, and the cursor of the next page ("" when there is
// none). limit ≤ 0 means DefaultListLimit; above MaxListLimit it is refused
// (ErrInvalid).
func (s *Service) List(app, coll, after string, limit int) (keys []string, next string, err error) {
	if _, err := s.Collection(app, coll); err != nil {
		return nil, "", err
	}
	if len(after) > MaxKeyBytes {
		return nil, "", fmt.Errorf("%w: the cursor is %d bytes, the limit is %d", ErrInvalid, len(after), MaxKeyBytes)
	}
	if limit > MaxListLimit {
		return nil, "", fmt.Errorf("%w: limit %d is above the maximum of %d keys per page", ErrInvalid, limit, MaxListLimit)
	}
	if limit <= 0 {
		limit = DefaultListLimit
	}
	// Deleted documents keep their state (see Delete) and are skipped, so a
	// page may take a few store pages to fill.
	for len(keys) < limit {
		var page []string
		page, next, err = s.st.List(app, coll, after, limit-len(keys))
		if err != nil {
			return nil, "", err
		}
		for _, key := range page {
			state, ok, err := s.st.Get(store.Key{App: app, Collection: coll, Doc: key})
			if err != nil {
				return nil, "", err
			}
			if ok && len(state) > 0 {
				d, err := decode(store.Key{App: app, Collection: coll, Doc: key}, state)
				if err != nil {
					return nil, "", err
				}
				if !empty(d) {
					keys = append(keys, key)
				}
			}
		}
		if next == "" {
			break
		}
		after = next
	}
	if keys == nil && err == nil {
		keys = []string{}
	}
	return keys, next, err
}

// kindError classifies err as kind (for errors.Is) without prefixing its
// message: the crdt package's messages already say what is wrong.
type kindError struct{ kind, err error }

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

func decode(k store.Key, state []byte) (*crdt.Doc, error) {
	d, err := crdt.DecodeDoc(state)
	if err != nil {
		// The store's checksum matched, so these are the bytes we wrote:
		// a bug or a format this build cannot read, not disk damage.
		return nil, fmt.Errorf("document %s: cannot decode its stored state (written by an incompatible build?): %w", k, err)
	}
	return d, nil
}

func firstByte(b []byte) byte {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c
	}
	return 0
}

func jsonKind(first byte) string {
	switch first {
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}
