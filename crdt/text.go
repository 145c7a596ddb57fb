package crdt

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// ErrInvalidText is matched (errors.Is) by the errors of CheckJSONText.
var ErrInvalidText = errors.New("invalid JSON text")

// CheckJSONText checks that the JSON text b holds only what a document can
// keep exactly: it must be valid UTF-8 (RFC 8259 §8.1), and no string in it
// may escape a lone UTF-16 surrogate (a \ud800-\udbff not followed by an
// escaped \udc00-\udfff, or a \udc00-\udfff on its own), which stands for
// no character. encoding/json silently replaces both with U+FFFD, so a
// caller that decodes b with it (a request body, a guest's operations) must
// check the raw bytes first. The error names the first offence and its byte
// offset in b.
//
// Nothing else is checked: b may be malformed JSON in other ways, which is
// the JSON parser's to report.
func CheckJSONText(b []byte) error {
	inString := false
	for i := 0; i < len(b); {
		c := b[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				return fmt.Errorf("%w: not valid UTF-8 at byte %d", ErrInvalidText, i)
			}
			i += size
			continue
		}
		switch {
		case c == '"':
			inString = !inString
			i++
		case c == '\\' && inString && i+1 < len(b) && b[i+1] == 'u':
			r, ok := hex4(b, i+2)
			switch {
			case !ok || r < 0xd800 || r > 0xdfff:
				i += 2 // not a surrogate (or a malformed escape, for the parser)
			case r >= 0xdc00:
				return loneSurrogate(b, i)
			default:
				low, ok := rune(0), false
				if i+7 < len(b) && b[i+6] == '\\' && b[i+7] == 'u' {
					low, ok = hex4(b, i+8)
				}
				if !ok || low < 0xdc00 || low > 0xdfff {
					return loneSurrogate(b, i)
				}
				i += 12
			}
		case c == '\\' && inString && i+1 < len(b) && b[i+1] < utf8.RuneSelf:
			i += 2 // an escaped quote or backslash does not end the string
		default:
			i++
		}
	}
	return nil
}

func loneSurrogate(b []byte, i int) error {
	return fmt.Errorf(`%w: %s at byte %d is a lone UTF-16 surrogate; a string may escape a surrogate only as a pair, \ud800-\udbff then \udc00-\udfff`,
		ErrInvalidText, b[i:i+6], i)
}

// hex4 decodes the 4 hex digits at b[i:].
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
