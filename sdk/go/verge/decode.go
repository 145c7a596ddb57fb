package verge

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// decodeFast is Collection.Get's decoder for the shapes documents are most
// often read into. encoding/json's reflection costs tens of microseconds per
// document in a Go guest, more than the host's whole read; this does the
// same without it. It handles only well-formed input whose result is certain
// and reports false for anything else (a syntax error, a value of another
// type, a number out of range, a lone surrogate, invalid UTF-8, null): the
// caller then runs encoding/json, which gives its own result and error.
// Because nothing is written to v before the whole document has been
// accepted, that fallback sees v as the caller left it.
func decodeFast(doc []byte, v any) bool {
	d := decoder{b: doc}
	switch v := v.(type) {
	case *map[string]int64:
		return decodeMap(&d, v, (*decoder).int64)
	case *map[string]int:
		return decodeMap(&d, v, func(d *decoder) (int, bool) { n, ok := d.int64(); return int(n), ok && int64(int(n)) == n })
	case *map[string]float64:
		return decodeMap(&d, v, (*decoder).float64)
	case *map[string]string:
		return decodeMap(&d, v, (*decoder).string)
	case *map[string]bool:
		return decodeMap(&d, v, (*decoder).bool)
	case *map[string]any:
		return decodeMap(&d, v, (*decoder).any)
	case *any:
		// encoding/json decodes into what a non-nil interface points to.
		if v == nil || *v != nil {
			return false
		}
		x, ok := d.any()
		if ok = ok && d.end(); ok {
			*v = x
		}
		return ok
	case *json.RawMessage:
		// RawMessage keeps the value's bytes, which are the document's
		// own when nothing surrounds them.
		if v == nil || len(doc) == 0 || isSpace(doc[0]) || isSpace(doc[len(doc)-1]) || !json.Valid(doc) {
			return false
		}
		*v = append((*v)[:0], doc...)
		return true
	}
	return false
}

// decodeMap decodes a JSON object of values that elem reads into *m,
// adding to the map already there as encoding/json does.
func decodeMap[T any](d *decoder, m *map[string]T, elem func(*decoder) (T, bool)) bool {
	if m == nil {
		return false
	}
	out := *m
	if out == nil {
		out = map[string]T{}
	}
	// Entries go to a map of their own until the whole object is accepted.
	fresh, merge := out, len(out) > 0
	if merge {
		fresh = map[string]T{}
	}
	if !d.object(func(k string) bool {
		x, ok := elem(d)
		fresh[k] = x
		return ok
	}) || !d.end() {
		if !merge {
			clear(out) // a map of the caller's that was empty stays so
		}
		return false
	}
	if merge {
		for k, x := range fresh {
			out[k] = x
		}
	}
	*m = out
	return true
}

// maxDepth bounds the nesting the fast path follows (encoding/json's own
// limit is 10000); deeper documents go to encoding/json.
const maxDepth = 64

type decoder struct {
	b     []byte
	i     int
	depth int
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (d *decoder) space() {
	for d.i < len(d.b) && isSpace(d.b[d.i]) {
		d.i++
	}
}

// end reports whether only whitespace is left.
func (d *decoder) end() bool {
	d.space()
	return d.i == len(d.b)
}

// peek returns the next non-space byte, 0 at the end.
func (d *decoder) peek() byte {
	d.space()
	if d.i == len(d.b) {
		return 0
	}
	return d.b[d.i]
}

// object reads an object, calling field for each key with d at its value.
func (d *decoder) object(field func(key string) bool) bool {
	if d.peek() != '{' {
		return false
	}
	d.i++
	if d.depth++; d.depth > maxDepth {
		return false
	}
	if d.peek() == '}' {
		d.i++
		d.depth--
		return true
	}
	for {
		k, ok := d.string()
		if !ok || d.peek() != ':' {
			return false
		}
		d.i++
		if !field(k) {
			return false
		}
		switch d.peek() {
		case ',':
			d.i++
		case '}':
			d.i++
			d.depth--
			return true
		default:
			return false
		}
	}
}

// string reads a string as encoding/json would, except that it gives up on
// what encoding/json replaces with U+FFFD (invalid UTF-8, lone surrogates).
func (d *decoder) string() (string, bool) {
	if d.peek() != '"' {
		return "", false
	}
	d.i++
	start := d.i
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			s := string(d.b[start:d.i])
			d.i++
			return s, true
		case c == '\\':
			return d.escaped(start)
		case c < 0x20:
			return "", false
		case c < utf8.RuneSelf:
			d.i++
		default:
			r, n := utf8.DecodeRune(d.b[d.i:])
			if r == utf8.RuneError && n == 1 {
				return "", false
			}
			d.i += n
		}
	}
	return "", false
}

// escaped finishes a string that started at start and has an escape at d.i.
func (d *decoder) escaped(start int) (string, bool) {
	out := append(make([]byte, 0, d.i-start+16), d.b[start:d.i]...)
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			return string(out), true
		case c == '\\':
			if d.i+1 >= len(d.b) {
				return "", false
			}
			e := d.b[d.i+1]
			d.i += 2
			switch e {
			case '"', '\\', '/':
				out = append(out, e)
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				if d.i+4 > len(d.b) {
					return "", false
				}
				r, err := strconv.ParseUint(string(d.b[d.i:d.i+4]), 16, 32)
				if err != nil || r >= 0xD800 && r < 0xE000 {
					return "", false
				}
				d.i += 4
				out = utf8.AppendRune(out, rune(r))
			default:
				return "", false
			}
		case c < 0x20:
			return "", false
		case c < utf8.RuneSelf:
			out = append(out, c)
			d.i++
		default:
			r, n := utf8.DecodeRune(d.b[d.i:])
			if r == utf8.RuneError && n == 1 {
				return "", false
			}
			out = append(out, d.b[d.i:d.i+n]...)
			d.i += n
		}
	}
	return "", false
}

// number returns the text of a number that follows JSON's grammar.
func (d *decoder) number() ([]byte, bool) {
	d.space()
	start := d.i
	if d.i < len(d.b) && d.b[d.i] == '-' {
		d.i++
	}
	switch {
	case d.i < len(d.b) && d.b[d.i] == '0':
		d.i++
	case d.digits() == 0:
		return nil, false
	}
	if d.i < len(d.b) && d.b[d.i] == '.' {
		d.i++
		if d.digits() == 0 {
			return nil, false
		}
	}
	if d.i < len(d.b) && (d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		d.i++
		if d.i < len(d.b) && (d.b[d.i] == '+' || d.b[d.i] == '-') {
			d.i++
		}
		if d.digits() == 0 {
			return nil, false
		}
	}
	return d.b[start:d.i], true
}

func (d *decoder) digits() int {
	n := 0
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		d.i++
		n++
	}
	return n
}

// int64 reads an integer; fractions, exponents and values out of range are
// errors in encoding/json, so they are left to it.
func (d *decoder) int64() (int64, bool) {
	s, ok := d.number()
	if !ok {
		return 0, false
	}
	neg := s[0] == '-'
	if neg {
		s = s[1:]
	}
	// Magnitudes up to 2^63 fit a uint64 without wrapping: 19 digits at
	// most, and the 20-digit ones are all out of range.
	if len(s) > 19 {
		return 0, false
	}
	var u uint64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false // a fraction or an exponent
		}
		u = u*10 + uint64(c-'0')
	}
	switch {
	case neg && u <= 1<<63:
		return int64(-u), true
	case !neg && u < 1<<63:
		return int64(u), true
	}
	return 0, false
}

func (d *decoder) float64() (float64, bool) {
	s, ok := d.number()
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(s), 64)
	return f, err == nil
}

func (d *decoder) bool() (bool, bool) {
	switch {
	case d.literal("true"):
		return true, true
	case d.literal("false"):
		return false, true
	}
	return false, false
}

func (d *decoder) literal(s string) bool {
	d.space()
	if len(d.b)-d.i >= len(s) && string(d.b[d.i:d.i+len(s)]) == s {
		d.i += len(s)
		return true
	}
	return false
}

// any reads a value as encoding/json decodes into an empty interface.
func (d *decoder) any() (any, bool) {
	switch c := d.peek(); {
	case c == '{':
		m := map[string]any{}
		ok := d.object(func(k string) bool {
			x, ok := d.any()
			m[k] = x
			return ok
		})
		return m, ok
	case c == '[':
		return d.array()
	case c == '"':
		return d.string()
	case c == 't' || c == 'f':
		return d.bool()
	case c == 'n':
		return nil, d.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		return d.float64()
	}
	return nil, false
}

func (d *decoder) array() (any, bool) {
	d.i++ // '['
	if d.depth++; d.depth > maxDepth {
		return nil, false
	}
	a := []any{}
	if d.peek() == ']' {
		d.i++
		d.depth--
		return a, true
	}
	for {
		x, ok := d.any()
		if !ok {
			return nil, false
		}
		a = append(a, x)
		switch d.peek() {
		case ',':
			d.i++
		case ']':
			d.i++
			d.depth--
			return a, true
		default:
			return nil, false
		}
	}
}
