package wasmbin

import "errors"

var (
	errLEBTruncated = errors.New("truncated LEB128")
	errLEBOverflow  = errors.New("LEB128 value overflows its type")
)

// readU32 decodes an unsigned LEB128 of at most 5 bytes, rejecting encodings
// whose unused high bits are set, as the spec requires.
func readU32(b []byte) (uint32, int, error) {
	var v uint32
	for i := 0; i < 5; i++ {
		if i >= len(b) {
			return 0, 0, errLEBTruncated
		}
		c := b[i]
		if i == 4 && c&0xf0 != 0 {
			return 0, 0, errLEBOverflow
		}
		v |= uint32(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return v, i + 1, nil
		}
	}
	return 0, 0, errLEBOverflow
}

// readS32 decodes a signed LEB128 of at most 5 bytes; in the fifth byte the
// unused bits must be a sign extension of bit 31.
func readS32(b []byte) (int32, int, error) {
	var v uint32
	for i := 0; i < 5; i++ {
		if i >= len(b) {
			return 0, 0, errLEBTruncated
		}
		c := b[i]
		if i == 4 {
			if c&0x80 != 0 {
				return 0, 0, errLEBOverflow
			}
			// Bits 4..6 of the last byte lie beyond bit 31: they must all
			// equal bit 3, the sign bit.
			if ext := c & 0x70; (c&0x08 == 0 && ext != 0) || (c&0x08 != 0 && ext != 0x70) {
				return 0, 0, errLEBOverflow
			}
			v |= uint32(c&0x0f) << 28
			return int32(v), 5, nil
		}
		v |= uint32(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			shift := 7 * (i + 1)
			if c&0x40 != 0 {
				v |= ^uint32(0) << shift
			}
			return int32(v), i + 1, nil
		}
	}
	return 0, 0, errLEBOverflow
}

// skipLEB skips a LEB128 of at most maxBytes bytes without interpreting it.
func skipLEB(b []byte, maxBytes int) (int, error) {
	for i := 0; i < maxBytes; i++ {
		if i >= len(b) {
			return 0, errLEBTruncated
		}
		if b[i]&0x80 == 0 {
			return i + 1, nil
		}
	}
	return 0, errLEBOverflow
}

func appendU32(dst []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(dst, c)
		}
		dst = append(dst, c|0x80)
	}
}

func appendS32(dst []byte, v int32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(dst, c)
		}
		dst = append(dst, c|0x80)
	}
}

func sizeU32(v uint32) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func sizeS32(v int32) int {
	var buf [5]byte
	return len(appendS32(buf[:0], v))
}
