package store

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// On-disk key layout. Every key starts with a one-byte tag naming its
// keyspace. Variable-length components are length-prefixed (uvarint), which
// makes the sequence of components a prefix-free code: the prefix of one
// (app, collection) pair can never be a prefix of another pair's keys, whatever
// bytes the names contain (separators, NULs, empty strings). That is what keeps
// one app's List from ever reaching another app's documents.
//
//	'd' uvarint(len app) app uvarint(len coll) coll doc   -> framed document state
//	'l' uvarint(len origin) origin seq(8 bytes BE)        -> framed log entry
//	's' uvarint(len origin) origin                        -> framed highest contiguous seq
//	'v'                                                   -> framed store format version
//
// The document name is the last component and is stored raw so that
// documents of one collection sort bytewise by name (List's order). Sequence
// numbers are big-endian so that one origin's log sorts by seq.
const (
	tagDoc     = 'd'
	tagLog     = 'l'
	tagSeq     = 's'
	tagVersion = 'v'
)

// Limits on names. They bound what a key costs and what a hostile name can
// make us allocate; upper layers are expected to impose tighter rules.
const (
	MaxNameLen = 255  // app, collection and origin names, in bytes
	MaxDocLen  = 1024 // document names, in bytes
)

// ErrInvalidKey is returned (wrapped) for names the store cannot hold.
var ErrInvalidKey = errors.New("invalid key")

// Key addresses one document.
type Key struct{ App, Collection, Doc string }

func (k Key) String() string { return fmt.Sprintf("%q/%q/%q", k.App, k.Collection, k.Doc) }

func (k Key) validate() error {
	switch {
	case len(k.App) > MaxNameLen:
		return fmt.Errorf("store: %w: app name is %d bytes, the limit is %d", ErrInvalidKey, len(k.App), MaxNameLen)
	case len(k.Collection) > MaxNameLen:
		return fmt.Errorf("store: %w: collection name is %d bytes, the limit is %d", ErrInvalidKey, len(k.Collection), MaxNameLen)
	case k.Doc == "":
		// An empty document name would be indistinguishable from List's
		// "start from the beginning" cursor.
		return fmt.Errorf("store: %w: empty document name", ErrInvalidKey)
	case len(k.Doc) > MaxDocLen:
		return fmt.Errorf("store: %w: document name is %d bytes, the limit is %d", ErrInvalidKey, len(k.Doc), MaxDocLen)
	}
	return nil
}

func validOrigin(origin string) error {
	if origin == "" || len(origin) > MaxNameLen {
		return fmt.Errorf("store: %w: origin must be 1..%d bytes, got %d", ErrInvalidKey, MaxNameLen, len(origin))
	}
	return nil
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// collPrefix is the prefix shared by all documents of (app, coll).
func collPrefix(app, coll string) []byte {
	b := make([]byte, 0, 1+2+len(app)+2+len(coll)+32)
	b = append(b, tagDoc)
	b = appendStr(b, app)
	return appendStr(b, coll)
}

func docKey(k Key) []byte { return append(collPrefix(k.App, k.Collection), k.Doc...) }

func originPrefix(tag byte, origin string) []byte {
	b := make([]byte, 0, 1+2+len(origin)+8)
	b = append(b, tag)
	return appendStr(b, origin)
}

func logKey(origin string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(originPrefix(tagLog, origin), seq)
}

func seqKey(origin string) []byte { return originPrefix(tagSeq, origin) }

var versionKey = []byte{tagVersion}

// prefixEnd returns the smallest key greater than every key with prefix p.
// Every prefix we build starts with a tag byte below 0xff, so there is one.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	panic("store: prefixEnd of an all-0xff prefix") // unreachable: tags are < 0xff
}

// readStr decodes one length-prefixed component of b.
func readStr(b []byte) (s string, rest []byte, ok bool) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) {
		return "", nil, false
	}
	return string(b[w : w+int(n)]), b[w+int(n):], true
}

// parseDocKey decodes a 'd' key; used to name keys in corruption reports.
func parseDocKey(b []byte) (Key, bool) {
	if len(b) == 0 || b[0] != tagDoc {
		return Key{}, false
	}
	app, rest, ok := readStr(b[1:])
	if !ok {
		return Key{}, false
	}
	coll, rest, ok := readStr(rest)
	if !ok {
		return Key{}, false
	}
	return Key{app, coll, string(rest)}, true
}

// parseOriginKey decodes the origin of an 'l' or 's' key and what follows it.
func parseOriginKey(b []byte, tag byte) (origin string, rest []byte, ok bool) {
	if len(b) == 0 || b[0] != tag {
		return "", nil, false
	}
	return readStr(b[1:])
}

func parseLogKey(b []byte) (origin string, seq uint64, ok bool) {
	origin, rest, ok := parseOriginKey(b, tagLog)
	if !ok || len(rest) != 8 {
		return "", 0, false
	}
	return origin, binary.BigEndian.Uint64(rest), true
}

// describeKey renders any on-disk key for error messages.
func describeKey(b []byte) string {
	if k, ok := parseDocKey(b); ok {
		return "document " + k.String()
	}
	if o, seq, ok := parseLogKey(b); ok {
		return fmt.Sprintf("log entry (origin %q, seq %d)", o, seq)
	}
	if o, rest, ok := parseOriginKey(b, tagSeq); ok && len(rest) == 0 {
		return fmt.Sprintf("sequence record of origin %q", o)
	}
	if len(b) == 1 && b[0] == tagVersion {
		return "format record"
	}
	return fmt.Sprintf("key %q", b)
}
