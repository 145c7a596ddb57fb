package crdt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// maxDepth bounds nesting in values, paths and decoded bytes so that hostile
// input cannot exhaust the goroutine stack (a fatal error, not a panic).
const maxDepth = 512

// node is one value written into a slot by a set (or created inside such a
// value). It is identified by the dot of the event that created it; a remove
// or an overwrite deletes it and records its dot in the causal context, which
// is all the "tombstone" a map needs.
type node struct {
	id Dot
	x  *nodeExt // nil for most nodes: those created inside a fresh container never compete
	// val is nil (JSON null), bool, int64, float64, string, *object, *list,
	// *fragList (only inside deltas) or *counter.
	val any
}

// nodeExt holds what only slot-competing values need, keeping node at 32 bytes.
type nodeExt struct {
	ts  int64 // HLC time of the write
	sib *node // next concurrent value in the same slot, in winner-first order
}

func newNode(id Dot, ts int64) *node {
	n := &node{id: id}
	if ts != 0 {
		n.x = &nodeExt{ts: ts}
	}
	return n
}

func (n *node) time() int64 {
	if n.x == nil {
		return 0
	}
	return n.x.ts
}

func (n *node) setTime(ts int64) {
	if n.x == nil {
		if ts == 0 {
			return
		}
		n.x = &nodeExt{}
	}
	n.x.ts = ts
}

func (n *node) sibling() *node {
	if n.x == nil {
		return nil
	}
	return n.x.sib
}

func (n *node) setSib(s *node) {
	if n.x == nil {
		if s == nil {
			return
		}
		n.x = &nodeExt{}
	}
	n.x.sib = s
}

// packed is an object value kept in its binary encoding (value ids
// included) until something reads or edits inside it. Objects written as a
// whole and never edited inside (the items of a cart) are most of a small
// document, and a node per field with its key and boxed value costs four
// times the encoding. Only objects without arrays and without concurrent
// values inside are packed, so packing hides nothing from GC or from the
// element count; the encoding is the one an unpacked object would write,
// so replicas agree byte for byte whichever form they hold.
type packed struct{ enc string }

// pack replaces an object value by its encoding when it qualifies.
func pack(n *node) {
	o, ok := n.val.(*object)
	if !ok || !packable(o) {
		return
	}
	w := writer{b: make([]byte, 0, 64)}
	w.value(o)
	n.val = &packed{string(w.b)}
}

// maxPacked bounds the size of a packed object (roughly, in encoded bytes).
// Packing is for the small objects a document is made of; the bound also
// keeps packing nested objects level by level (each level re-encodes what
// is below it) linear in the input.
const maxPacked = 512

func packable(o *object) bool {
	budget := maxPacked
	return packFits(o, &budget)
}

func packFits(o *object, budget *int) bool {
	for _, f := range o.fields {
		h := f.head
		if *budget -= len(f.key) + 8; *budget < 0 || h.sibling() != nil {
			return false
		}
		switch v := h.val.(type) {
		case string:
			if *budget -= len(v); *budget < 0 {
				return false
			}
		case *object:
			if !packFits(v, budget) {
				return false
			}
		case *packed:
			if *budget -= len(v.enc); *budget < 0 {
				return false
			}
		case *list, *fragList:
			return false
		}
	}
	return true
}

// unpack decodes a packed object; the encoding is this package's own, so
// it cannot fail.
func (p *packed) unpack() *object {
	r := newReader([]byte(p.enc))
	o, _ := r.value(0).(*object)
	if r.err != nil || o == nil {
		panic("crdt: corrupt packed object: " + fmt.Sprint(r.err))
	}
	return o
}

// expand turns a packed value of a document node back into an object, in
// place, before something edits inside it.
func expand(n *node) {
	if p, ok := n.val.(*packed); ok {
		n.val = p.unpack()
	}
}

// objOf returns the object of a delta node without changing the node:
// deltas are immutable and may be merged into several documents at once.
func objOf(n *node) (*object, bool) {
	switch v := n.val.(type) {
	case *object:
		return v, true
	case *packed:
		return v.unpack(), true
	}
	return nil, false
}

// object is a JSON object: fields sorted by key. A sorted slice beats a Go
// map by hundreds of bytes for the small objects documents are made of.
type object struct {
	fields []field
}

type field struct {
	key  string
	head *node // winner first; never nil in a document (empty slots are deleted)
}

func (o *object) find(key string) (int, bool) {
	return slices.BinarySearchFunc(o.fields, key, func(f field, k string) int { return strings.Compare(f.key, k) })
}

func (o *object) get(key string) *node {
	if i, ok := o.find(key); ok {
		return o.fields[i].head
	}
	return nil
}

// put sets the slot of key; a nil head deletes the key.
func (o *object) put(key string, head *node) {
	i, ok := o.find(key)
	switch {
	case ok && head == nil:
		o.fields = slices.Delete(o.fields, i, i+1)
	case ok:
		o.fields[i].head = head
	case head != nil:
		o.fields = slices.Insert(o.fields, i, field{key, head})
	}
}

// counter is a number that has been incremented: an immutable base (the value
// that was set) plus a PN counter of per-replica increments and decrements,
// each only ever growing, so concurrent increments add up and a join is a
// pointwise max.
type counter struct {
	base     any // int64 or float64; int64(0) for implicit counters
	implicit bool
	ents     []ctrEnt // sorted by replica
}

type ctrEnt struct {
	R        ReplicaID
	Inc, Dec uint64
}

func (c *counter) entry(r ReplicaID) (int, bool) {
	return slices.BinarySearchFunc(c.ents, r, func(e ctrEnt, r ReplicaID) int { return cmpReplica(e.R, r) })
}

func (c *counter) add(r ReplicaID, n int64) {
	i, ok := c.entry(r)
	if !ok {
		c.ents = slices.Insert(c.ents, i, ctrEnt{R: r})
	}
	if n >= 0 {
		c.ents[i].Inc += uint64(n)
	} else {
		c.ents[i].Dec += uint64(-(n + 1)) + 1
	}
}

func (c *counter) join(o *counter) {
	for _, e := range o.ents {
		i, ok := c.entry(e.R)
		if !ok {
			c.ents = slices.Insert(c.ents, i, e)
			continue
		}
		c.ents[i].Inc = max(c.ents[i].Inc, e.Inc)
		c.ents[i].Dec = max(c.ents[i].Dec, e.Dec)
	}
}

// net is the exact sum of the increments minus the decrements.
func (c *counter) net() int128 {
	var s int128
	for _, e := range c.ents {
		s = s.addUint(e.Inc).subUint(e.Dec)
	}
	return s
}

// value is the counter's JSON value, computed exactly: base plus net, an
// int64 when base is an integer and the result fits, else a float64. Apply
// refuses increments that would take an integer outside int64 (see
// checkIncrement), but merging concurrent increments from several replicas
// can: the value then reads as the nearest float64, as a JSON integer
// beyond int64 does, and reads as an int64 again once decrements bring it
// back. The value is a function of the state, so replicas agree on it.
func (c *counter) value() any {
	if f, ok := c.base.(float64); ok {
		return f + c.net().float64()
	}
	b, _ := c.base.(int64)
	return c.net().addInt(b).number()
}

func (c *counter) clone() *counter {
	return &counter{base: c.base, implicit: c.implicit, ents: slices.Clone(c.ents)}
}

// beats orders the values of a slot: the head of a slot is its visible value.
// Explicit writes beat implicit counters (created by an increment of a missing
// field); then the later HLC time wins, then the higher replica id, then the
// later event. The order is total, so every replica picks the same winner.
func beats(a, b *node) bool {
	ai, bi := isImplicit(a), isImplicit(b)
	if ai != bi {
		return bi
	}
	if at, bt := a.time(), b.time(); at != bt {
		return at > bt
	}
	if a.id.R != b.id.R {
		return a.id.R > b.id.R
	}
	return a.id.S > b.id.S
}

func isImplicit(n *node) bool {
	c, ok := n.val.(*counter)
	return ok && c.implicit
}

// insertSorted adds n to the slot list starting at head and returns the new head.
func insertSorted(head, n *node) *node {
	if head == nil || beats(n, head) {
		n.setSib(head)
		return n
	}
	p := head
	for p.sibling() != nil && beats(p.sibling(), n) {
		p = p.sibling()
	}
	n.setSib(p.sibling())
	p.setSib(n)
	return head
}

// slotValue is the JSON value of a slot: the winner's value, or the sum of
// all implicit counters when no explicit value exists (two PoPs incrementing
// a missing field must both count).
func slotValue(head *node) any {
	if head == nil {
		return nil
	}
	if isImplicit(head) {
		return implicitSum(head).number()
	}
	return nodeValue(head)
}

// implicitSum is the exact sum of a slot of implicit counters (their bases
// are 0).
func implicitSum(head *node) int128 {
	var s int128
	for n := head; n != nil; n = n.sibling() {
		s = s.add(n.val.(*counter).net())
	}
	return s
}

func nodeValue(n *node) any {
	switch v := n.val.(type) {
	case *packed:
		return nodeValue(&node{val: v.unpack()})
	case *object:
		m := make(map[string]any, len(v.fields))
		for _, f := range v.fields {
			m[f.key] = slotValue(f.head)
		}
		return m
	case *list:
		out := make([]any, 0, v.visible())
		v.each(func(e *elem) bool {
			if e.head != nil {
				out = append(out, slotValue(e.head))
			}
			return true
		})
		return out
	case *counter:
		return v.value()
	default:
		return v
	}
}

// kindName names a node's JSON type for error messages.
func kindName(n *node) string {
	if n == nil {
		return "nothing"
	}
	switch n.val.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case int64, float64, *counter:
		return "a number"
	case string:
		return "a string"
	case *object, *packed:
		return "an object"
	case *list, *fragList:
		return "an array"
	}
	return "an unknown value"
}

// ---- JSON input ----

// parseValue decodes one JSON value. Numbers become int64 when they are
// integers that fit, float64 otherwise. Invalid UTF-8 and escaped lone
// surrogates are refused (see CheckJSONText). The fast paths (integers,
// literals, plain ASCII strings) keep single-value appends allocation-light.
func parseValue(raw []byte) (any, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, errors.New("missing value")
	}
	switch raw[0] {
	case 'n':
		if string(raw) == "null" {
			return nil, nil
		}
	case 't':
		if string(raw) == "true" {
			return true, nil
		}
	case 'f':
		if string(raw) == "false" {
			return false, nil
		}
	case '"':
		if s, ok := plainString(raw); ok {
			return s, nil
		}
	default:
		if isPlainInt(raw) {
			if v, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
				return v, nil
			}
		}
	}
	if !json.Valid(raw) {
		var v any
		err := json.Unmarshal(raw, &v) // for its error message
		if err == nil {
			err = errors.New("invalid")
		}
		return nil, fmt.Errorf("value is not valid JSON: %v", err)
	}
	if err := CheckJSONText(raw); err != nil {
		return nil, fmt.Errorf("value is %w", err)
	}
	p := jsonParser{b: raw}
	return p.value(0)
}

// jsonParser builds values from input json.Valid has accepted, without the
// reflection and intermediate allocations of encoding/json. Strings with
// escapes or non-ASCII bytes go through encoding/json, so the result is
// always what json.Unmarshal would produce (a repeated key keeps its last
// value; parseValue has refused the input json.Unmarshal would alter with
// U+FFFD).
type jsonParser struct {
	b   []byte
	off int
}

func (p *jsonParser) ws() {
	for p.off < len(p.b) {
		switch p.b[p.off] {
		case ' ', '\t', '\n', '\r':
			p.off++
		default:
			return
		}
	}
}

func (p *jsonParser) value(depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("value nests deeper than %d levels", maxDepth)
	}
	p.ws()
	switch c := p.b[p.off]; c {
	case '{':
		p.off++
		m := map[string]any{}
		p.ws()
		if p.b[p.off] == '}' {
			p.off++
			return m, nil
		}
		for {
			p.ws()
			k, err := p.str()
			if err != nil {
				return nil, err
			}
			p.ws()
			p.off++ // ':'
			v, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			m[k] = v
			p.ws()
			if p.b[p.off] == '}' {
				p.off++
				return m, nil
			}
			p.off++ // ','
		}
	case '[':
		p.off++
		a := []any{}
		p.ws()
		if p.b[p.off] == ']' {
			p.off++
			return a, nil
		}
		for {
			v, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
			p.ws()
			if p.b[p.off] == ']' {
				p.off++
				return a, nil
			}
			p.off++ // ','
		}
	case '"':
		return p.str()
	case 't':
		p.off += 4
		return true, nil
	case 'f':
		p.off += 5
		return false, nil
	case 'n':
		p.off += 4
		return nil, nil
	default:
		start := p.off
		for p.off < len(p.b) && strings.IndexByte("+-.0123456789eE", p.b[p.off]) >= 0 {
			p.off++
		}
		return parseNumber(string(p.b[start:p.off]))
	}
}

func (p *jsonParser) str() (string, error) {
	start := p.off // at the opening quote
	p.off++
	simple := true
	for {
		c := p.b[p.off]
		if c == '"' {
			break
		}
		if c == '\\' {
			simple = false
			p.off++
		} else if c >= 0x80 {
			simple = false
		}
		p.off++
	}
	p.off++
	if simple {
		return string(p.b[start+1 : p.off-1]), nil
	}
	var s string
	if err := json.Unmarshal(p.b[start:p.off], &s); err != nil {
		return "", fmt.Errorf("value is not valid JSON: %v", err)
	}
	return s, nil
}

func isPlainInt(b []byte) bool {
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 19 || (b[0] == '0' && len(b) > 1) {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func plainString(b []byte) (string, bool) {
	if len(b) < 2 || b[len(b)-1] != '"' {
		return "", false
	}
	s := b[1 : len(b)-1]
	for _, c := range s {
		if c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			return "", false
		}
	}
	return string(s), true
}

func parseNumber(s string) (any, error) {
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return i, nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) {
		return nil, fmt.Errorf("number %s does not fit a float64", s)
	}
	return f, nil
}

// ---- building nodes from values ----

// builder hands out dots for the nodes a value needs.
type builder struct {
	a *applier
}

func (b builder) next() (Dot, error) { return b.a.next() }

// build turns a parsed JSON value into a node tree. Only the top node gets an
// HLC time: nodes inside a fresh container can never have a concurrent rival,
// because any other write to their slots must first see them.
func (b builder) build(v any, id Dot, ts int64, depth int) (*node, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("value nests deeper than %d levels", maxDepth)
	}
	n := newNode(id, ts)
	switch x := v.(type) {
	case map[string]any:
		o := &object{fields: make([]field, 0, len(x))}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			d, err := b.next()
			if err != nil {
				return nil, err
			}
			c, err := b.build(x[k], d, 0, depth+1)
			if err != nil {
				return nil, err
			}
			o.fields = append(o.fields, field{k, c})
		}
		n.val = o
		pack(n)
	case []any:
		if err := b.a.reserve(len(x)); err != nil {
			return nil, err
		}
		l := newList()
		var prev *elem
		for _, e := range x {
			d, err := b.next()
			if err != nil {
				return nil, err
			}
			c, err := b.build(e, d, 0, depth+1)
			if err != nil {
				return nil, err
			}
			el := &elem{id: d, head: c}
			l.attachRight(prev, el)
			prev = el
		}
		n.val = l
	default:
		n.val = v
	}
	return n, nil
}

// cloneNode deep-copies a node (and, with sibs, its rivals) into delta form:
// lists become fragLists that carry every element with its position.
func cloneNode(n *node) *node {
	c := newNode(n.id, n.time())
	switch v := n.val.(type) {
	case *object:
		o := &object{fields: make([]field, len(v.fields))}
		for i, f := range v.fields {
			o.fields[i] = field{f.key, cloneSlot(f.head)}
		}
		c.val = o
	case *list:
		c.val = v.toFrag()
	case *fragList:
		c.val = v.clone()
	case *counter:
		c.val = v.clone()
	default:
		c.val = v
	}
	return c
}

func cloneSlot(head *node) *node {
	var out, tail *node
	for n := head; n != nil; n = n.sibling() {
		c := cloneNode(n)
		if tail == nil {
			out = c
		} else {
			tail.setSib(c)
		}
		tail = c
	}
	return out
}

type objectStub struct {
	n   node
	o   object
	buf [1]field
}

type listStub struct {
	n   node
	l   fragList
	buf [1]fragElem
}

// stub returns an empty copy of a container node: the path a delta carries
// down to the value it changes. Stubs carry no HLC time: the receiver has
// already seen (or removed) every node a stub names, since it has applied
// the delta's dependencies, and only ever matches stubs by id.
func stub(n *node) *node {
	switch n.val.(type) {
	case *object, *packed:
		b := &objectStub{n: node{id: n.id}}
		b.o.fields = b.buf[:0]
		b.n.val = &b.o
		return &b.n
	case *list:
		// one allocation for the common "append to an array" delta
		b := &listStub{n: node{id: n.id}}
		b.l.elems = b.buf[:0]
		b.n.val = &b.l
		return &b.n
	}
	s := &node{id: n.id}
	switch v := n.val.(type) {
	case *counter:
		s.val = &counter{base: v.base, implicit: v.implicit}
	default:
		s.val = v
	}
	return s
}
