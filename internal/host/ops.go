package host

import (
	"strconv"

	"github.com/verge-edge/verge/crdt"
)

// fastOps decodes operations in the form the SDKs write them, compactly:
// [{"op":"increment","path":"apple","value":1}], keys in that order, plain
// ASCII strings without escapes, and scalar values other than null. It
// reports false for anything else, and encoding/json decodes it instead:
// this only skips reflection (a few microseconds per update) where the
// result is certain to be the same. raw is the guest's memory, so what is
// kept is copied.
func fastOps(raw []byte) ([]crdt.Op, bool) {
	p := opsParser{b: raw}
	if !p.byte('[') {
		return nil, false
	}
	var ops []crdt.Op
	var values []byte // every op's value, in one copy
	type span struct{ from, to int }
	var spans []span
	for {
		var op crdt.Op
		var ok bool
		if !p.lit(`{"op":`) {
			return nil, false
		}
		if op.Op, ok = p.str(); !ok || !p.lit(`,"path":`) {
			return nil, false
		}
		if op.Path, ok = p.str(); !ok {
			return nil, false
		}
		if p.lit(`,"index":`) {
			n, ok := p.int()
			if !ok {
				return nil, false
			}
			op.Index = &n
		}
		sp := span{-1, -1}
		if p.lit(`,"value":`) {
			v, ok := p.scalar()
			if !ok {
				return nil, false
			}
			sp = span{len(values), len(values) + len(v)}
			values = append(values, v...)
		}
		if !p.byte('}') {
			return nil, false
		}
		ops, spans = append(ops, op), append(spans, sp)
		if p.byte(']') {
			break
		}
		if !p.byte(',') {
			return nil, false
		}
	}
	if p.i != len(p.b) {
		return nil, false
	}
	for i, sp := range spans {
		if sp.from >= 0 {
			ops[i].Value = values[sp.from:sp.to:sp.to]
		}
	}
	return ops, true
}

type opsParser struct {
	b []byte
	i int
}

func (p *opsParser) byte(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *opsParser) lit(s string) bool {
	if len(p.b)-p.i >= len(s) && string(p.b[p.i:p.i+len(s)]) == s {
		p.i += len(s)
		return true
	}
	return false
}

// strBytes returns a string's bytes with their quotes if it is plain ASCII.
func (p *opsParser) strBytes() ([]byte, bool) {
	start := p.i
	if !p.byte('"') {
		return nil, false
	}
	for ; p.i < len(p.b); p.i++ {
		switch c := p.b[p.i]; {
		case c == '"':
			p.i++
			return p.b[start:p.i], true
		case c < 0x20 || c == '\\' || c >= 0x80:
			return nil, false
		}
	}
	return nil, false
}

func (p *opsParser) str() (string, bool) {
	b, ok := p.strBytes()
	if !ok {
		return "", false
	}
	return string(b[1 : len(b)-1]), true
}

// number returns a number that follows JSON's grammar.
func (p *opsParser) number() ([]byte, bool) {
	start := p.i
	p.byte('-')
	switch {
	case p.byte('0'):
	case p.digits() == 0:
		return nil, false
	}
	if p.byte('.') && p.digits() == 0 {
		return nil, false
	}
	if p.byte('e') || p.byte('E') {
		if !p.byte('+') {
			p.byte('-')
		}
		if p.digits() == 0 {
			return nil, false
		}
	}
	return p.b[start:p.i], true
}

func (p *opsParser) digits() int {
	n := 0
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
		n++
	}
	return n
}

// int reads an index as encoding/json decodes a number into an int.
func (p *opsParser) int() (int, bool) {
	s, ok := p.number()
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(string(s), 10, 64)
	if err != nil || int64(int(n)) != n {
		return 0, false
	}
	return int(n), true
}

// scalar returns a number, a plain string or a boolean, as written.
func (p *opsParser) scalar() ([]byte, bool) {
	if p.i < len(p.b) {
		switch c := p.b[p.i]; {
		case c == '"':
			return p.strBytes()
		case c == 't' && p.lit("true"):
			return p.b[p.i-4 : p.i], true
		case c == 'f' && p.lit("false"):
			return p.b[p.i-5 : p.i], true
		case c == '-' || c >= '0' && c <= '9':
			return p.number()
		}
	}
	return nil, false
}
