package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Every value the store writes is framed:
//
//	version (1 byte) | crc32c (4 bytes, little-endian) | payload
//
// The checksum covers the key, the version byte and the payload. Pebble
// already checksums its blocks and WAL records; ours additionally catches
// values that were damaged before they reached Pebble (a bad DIMM, a bug) and
// values that ended up under the wrong key, and it lets a corruption report
// name the document it concerns.
const (
	frameV1     = 1
	frameHeader = 5
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt is wrapped by every error that reports damaged data. A store
// that returns it must not be trusted: restore the data directory from a
// backup or rebuild the PoP's replica from its peers.
var ErrCorrupt = errors.New("store is corrupt")

func frameSum(key []byte, version byte, payload []byte) uint32 {
	c := crc32.Update(0, castagnoli, key)
	c = crc32.Update(c, castagnoli, []byte{version})
	return crc32.Update(c, castagnoli, payload)
}

// appendFrame appends the framed payload to dst.
func appendFrame(dst, key, payload []byte) []byte {
	dst = append(dst, frameV1)
	dst = binary.LittleEndian.AppendUint32(dst, frameSum(key, frameV1, payload))
	return append(dst, payload...)
}

// putFrame writes the framed payload into dst, which is exactly
// frameHeader+len(payload) bytes long.
func putFrame(dst, key, payload []byte) {
	dst[0] = frameV1
	binary.LittleEndian.PutUint32(dst[1:5], frameSum(key, frameV1, payload))
	copy(dst[frameHeader:], payload)
}

// unframe verifies v (the value stored under key) and returns its payload,
// which aliases v.
func unframe(key, v []byte) ([]byte, error) {
	if len(v) < frameHeader {
		return nil, corruptf(key, "value is %d bytes, shorter than its %d-byte header", len(v), frameHeader)
	}
	if v[0] != frameV1 {
		return nil, corruptf(key, "unknown value format version %d (this build reads version %d)", v[0], frameV1)
	}
	want := binary.LittleEndian.Uint32(v[1:5])
	payload := v[frameHeader:]
	if got := frameSum(key, v[0], payload); got != want {
		return nil, corruptf(key, "checksum mismatch (stored %08x, computed %08x)", want, got)
	}
	return payload, nil
}

// corruptionError marks err as a report of damaged data: errors.Is(err,
// ErrCorrupt) holds without repeating "corrupt" in every message.
type corruptionError struct{ err error }

func (e *corruptionError) Error() string        { return e.err.Error() }
func (e *corruptionError) Unwrap() error        { return e.err }
func (e *corruptionError) Is(target error) bool { return target == ErrCorrupt }

func corruptf(key []byte, format string, args ...any) error {
	return &corruptionError{fmt.Errorf("%s: %s", describeKey(key), fmt.Sprintf(format, args...))}
}

// A log entry's payload: the document's key components, then the delta.
func appendEntryPayload(dst []byte, k Key, delta []byte) []byte {
	dst = appendStr(dst, k.App)
	dst = appendStr(dst, k.Collection)
	dst = appendStr(dst, k.Doc)
	return append(dst, delta...)
}

func parseEntryPayload(key, p []byte) (Key, []byte, error) {
	var k Key
	var ok bool
	if k.App, p, ok = readStr(p); ok {
		if k.Collection, p, ok = readStr(p); ok {
			k.Doc, p, ok = readStr(p)
		}
	}
	if !ok {
		return Key{}, nil, corruptf(key, "malformed log entry")
	}
	return k, append([]byte(nil), p...), nil
}
