// Package wasmbin rewrites WebAssembly binaries before they are compiled, to
// make instantiation cheaper. It understands only the sections it rewrites and
// copies every other section byte for byte.
package wasmbin

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
)

const (
	// GapThreshold is the largest run of zero bytes between two segments that
	// MergeDataSegments fills in to join them. A segment header costs 5-10
	// bytes of binary and one copy call at instantiation; a few KiB of zeros
	// cost a memmove at memory bandwidth. Beyond this the binary would grow
	// for no measurable gain, so the segments stay apart.
	GapThreshold = 4 << 10

	// MaxMergedBytes bounds the bytes of all merged segments together. A real
	// module never comes close; a hostile one could otherwise ask for up to
	// GapThreshold bytes of zeros per 5 bytes of input.
	MaxMergedBytes = 256 << 20
)

// Stats describes what MergeDataSegments did.
type Stats struct {
	SegmentsIn  int    // data segments in the input
	SegmentsOut int    // data segments in the output
	Merged      int    // constant-offset active segments folded into merged ones
	MergedOut   int    // merged segments written in their place
	FillBytes   uint64 // zero bytes added to join segments across gaps
	// KeptIndices is set when the code section may use memory.init or
	// data.drop, so every segment kept its index: the slots of merged
	// segments hold empty passive segments instead of disappearing.
	KeptIndices bool
}

// ErrTooLarge is returned (wrapped) when the merged segments would exceed
// MaxMergedBytes.
var ErrTooLarge = errors.New("merged data segments would exceed the size limit")

// maxModule keeps every offset in a uint32, output included.
const maxModule = 1 << 30

var wasmHeader = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

const (
	secImport    = 2
	secCode      = 10
	secData      = 11
	secDataCount = 12

	opEnd      = 0x0b
	opI32Const = 0x41
)

type section struct {
	id               byte
	start, body, end int // offsets in the module: header, body, end
}

type segKind uint8

const (
	segPassive   segKind = iota
	segMergeable         // active, memory 0, offset is a single i32.const
	segOther             // any other active segment: kept as is, and ordered against
)

// segment is kept small (28 bytes): a module may have one per 2 bytes.
type segment struct {
	start, end uint32 // encoding within the data section body
	data, size uint32 // bytes within the data section body
	off        uint32
	run        int32 // mergeable only: index of the run of mergeable segments
	cluster    int32 // mergeable only: merged segment it belongs to
	kind       segKind
}

type cluster struct {
	off, end uint64 // memory range written, end exclusive
	members  uint32
	pos      uint32 // offset of its bytes in the output
}

// MergeDataSegments returns wasm with its active data segments for memory 0
// whose offset is a constant i32.const folded into as few segments as
// possible. The memory of an instance of the result is byte-identical to that
// of an instance of the input, and instantiation fails for the same modules.
//
// Gaps of up to GapThreshold bytes between segments are filled with zeros;
// larger gaps start a new merged segment. Overlapping segments keep "later
// segment wins" semantics. Passive segments and active segments with any
// other offset are kept, and merged segments are placed so that every active
// segment is still applied in an order with the same result. The data count
// section is updated. Every other section is copied unchanged.
//
// When there is nothing to merge, the input slice itself is returned. On
// malformed input an error is returned and the caller should hand the
// original bytes to the runtime, which reports the precise problem.
func MergeDataSegments(wasm []byte) ([]byte, Stats, error) {
	var st Stats
	secs, err := parseSections(wasm)
	if err != nil {
		return nil, st, err
	}
	var imports, code, data, dataCount *section
	for i := range secs {
		s := &secs[i]
		var slot **section
		switch s.id {
		case secImport:
			slot = &imports
		case secCode:
			slot = &code
		case secData:
			slot = &data
		case secDataCount:
			slot = &dataCount
		default:
			continue
		}
		if *slot != nil {
			return nil, st, fmt.Errorf("wasmbin: section %d appears twice", s.id)
		}
		*slot = s
	}
	if data == nil {
		return wasm, st, nil
	}

	segs, err := parseData(wasm[data.body:data.end])
	if err != nil {
		return nil, st, err
	}
	st.SegmentsIn, st.SegmentsOut = len(segs), len(segs)
	if dataCount != nil {
		body := wasm[dataCount.body:dataCount.end]
		n, k, err := readU32(body)
		if err != nil || k != len(body) {
			return nil, st, errors.New("wasmbin: malformed data count section")
		}
		if int(n) != len(segs) {
			return nil, st, fmt.Errorf("wasmbin: data count section says %d segments, data section has %d", n, len(segs))
		}
	}

	// Instructions that name a data segment by index (memory.init, data.drop)
	// are only valid with a data count section. Without one, or when the code
	// cannot contain them, segments may be renumbered freely.
	keepIndices := dataCount != nil && code != nil && mayUseDataIndex(wasm[code.body:code.end])
	// Zero-filling a gap is only correct when nothing wrote there before:
	// memory defined by this module starts zeroed, and only segments applied
	// before the first non-mergeable active segment are known to be first.
	fillFirstRun := imports == nil || !mayImportMemory(wasm[imports.body:imports.end])

	// Split mergeable segments into runs separated by other active segments;
	// merging never moves data across one of those.
	// Every slice below is sized once from the number of mergeable
	// segments, keeping the working set a small multiple of the input.
	nMerge := 0
	for i := range segs {
		if segs[i].kind == segMergeable {
			nMerge++
		}
	}
	order := make([]int32, 0, nMerge) // mergeable segment indices, by index
	var runs [][]int32                // consecutive parts of order
	run, sawOther, fillable := -1, false, false
	for i := range segs {
		switch segs[i].kind {
		case segOther:
			run, sawOther = -1, true
		case segMergeable:
			if run < 0 {
				if len(runs) == 0 {
					fillable = fillFirstRun && !sawOther
				}
				runs = append(runs, order[len(order):len(order)])
				run = len(runs) - 1
			}
			segs[i].run = int32(run)
			order = append(order, int32(i))
			runs[run] = runs[run][:len(runs[run])+1]
		}
	}
	sortedAll := make([]int32, nMerge)

	clusters := make([]cluster, 0, nMerge)
	runClusters := make([][2]int, len(runs)) // [first, end) into clusters
	var covered uint64                       // bytes of merged segments some input segment writes
	for r, idx := range runs {
		gap := uint64(0)
		if r == 0 && fillable {
			gap = GapThreshold
		}
		sorted := sortedAll[:len(idx)]
		sortedAll = sortedAll[len(idx):]
		copy(sorted, idx)
		sort.Slice(sorted, func(a, b int) bool {
			sa, sb := &segs[sorted[a]], &segs[sorted[b]]
			if sa.off != sb.off {
				return sa.off < sb.off
			}
			return sorted[a] < sorted[b]
		})
		first := len(clusters)
		for _, i := range sorted {
			s := &segs[i]
			off, end := uint64(s.off), uint64(s.off)+uint64(s.size)
			if n := len(clusters); n > first && off <= clusters[n-1].end+gap {
				c := &clusters[n-1]
				if end > c.end {
					covered += end - max(off, c.end)
					c.end = end
				}
				c.members++
			} else {
				covered += end - off
				clusters = append(clusters, cluster{off: off, end: end, members: 1})
			}
			s.cluster = int32(len(clusters) - 1)
		}
		runClusters[r] = [2]int{first, len(clusters)}
	}
	var total uint64
	merged := false
	for i := range clusters {
		c := &clusters[i]
		total += c.end - c.off
		if total > MaxMergedBytes {
			return nil, st, fmt.Errorf("wasmbin: %w (%d bytes)", ErrTooLarge, MaxMergedBytes)
		}
		if c.members > 1 {
			merged = true
		}
	}
	if !merged {
		return wasm, st, nil
	}

	// Lay out the new data section: size it exactly first, so the output is
	// allocated once and the zero fill comes for free from make.
	outCount := 0
	bodySize := 0
	encCluster := func(c *cluster) int {
		span := uint32(c.end - c.off)
		return 1 + 1 + sizeS32(int32(uint32(c.off))) + 1 + sizeU32(span) + int(span)
	}
	for i := range segs {
		s := &segs[i]
		switch {
		case s.kind != segMergeable:
			outCount++
			bodySize += int(s.end - s.start)
		case keepIndices:
			outCount++
			k := position(runs[s.run], i)
			if rc := runClusters[s.run]; k < rc[1]-rc[0] {
				bodySize += encCluster(&clusters[rc[0]+k])
			} else {
				bodySize += 2 // empty passive segment
			}
		case int(runs[s.run][0]) == i:
			rc := runClusters[s.run]
			for c := rc[0]; c < rc[1]; c++ {
				outCount++
				bodySize += encCluster(&clusters[c])
			}
		}
	}
	bodySize += sizeU32(uint32(outCount))
	if bodySize > MaxMergedBytes+(data.end-data.body)+16 {
		return nil, st, fmt.Errorf("wasmbin: %w", ErrTooLarge)
	}
	size := len(wasm) - (data.end - data.start) + 1 + sizeU32(uint32(bodySize)) + bodySize
	if dataCount != nil {
		size += -(dataCount.end - dataCount.start) + 2 + sizeU32(uint32(outCount))
	}

	out := make([]byte, 0, size)
	out = append(out, wasm[:len(wasmHeader)]...)
	dbody := wasm[data.body:data.end]
	for i := range secs {
		s := &secs[i]
		switch s.id {
		case secDataCount:
			out = append(out, secDataCount, byte(sizeU32(uint32(outCount))))
			out = appendU32(out, uint32(outCount))
			continue
		case secData:
		default:
			out = append(out, wasm[s.start:s.end]...)
			continue
		}
		out = append(out, secData)
		out = appendU32(out, uint32(bodySize))
		out = appendU32(out, uint32(outCount))
		emit := func(c *cluster) {
			span := int(c.end - c.off)
			out = append(out, 0x00, opI32Const)
			out = appendS32(out, int32(uint32(c.off)))
			out = append(out, opEnd)
			out = appendU32(out, uint32(span))
			c.pos = uint32(len(out))
			if span > cap(out)-len(out) {
				return // caught by the size check below
			}
			out = out[:len(out)+span] // zeroed by make
		}
		for i := range segs {
			sg := &segs[i]
			switch {
			case sg.kind != segMergeable:
				out = append(out, dbody[sg.start:sg.end]...)
			case keepIndices:
				k := position(runs[sg.run], i)
				if rc := runClusters[sg.run]; k < rc[1]-rc[0] {
					emit(&clusters[rc[0]+k])
				} else {
					out = append(out, 0x01, 0x00)
				}
			case int(runs[sg.run][0]) == i:
				rc := runClusters[sg.run]
				for c := rc[0]; c < rc[1]; c++ {
					emit(&clusters[c])
				}
			}
		}
	}
	if len(out) != size {
		return nil, st, fmt.Errorf("wasmbin: internal error: wrote %d bytes, planned %d", len(out), size)
	}
	// Copy in index order so that where segments overlap the later one wins.
	for i := range segs {
		if s := &segs[i]; s.kind == segMergeable {
			c := &clusters[s.cluster]
			copy(out[uint64(c.pos)+uint64(s.off)-c.off:], dbody[s.data:s.data+s.size])
			st.Merged++
		}
	}
	st.MergedOut = len(clusters)
	st.SegmentsOut = outCount
	st.KeptIndices = keepIndices
	st.FillBytes = total - covered
	return out, st, nil
}

// position returns k such that run[k] == i; runs are sorted by index.
func position(run []int32, i int) int {
	return sort.Search(len(run), func(k int) bool { return int(run[k]) >= i })
}

func parseSections(b []byte) ([]section, error) {
	if len(b) > maxModule {
		return nil, fmt.Errorf("wasmbin: module of %d bytes is larger than %d", len(b), maxModule)
	}
	if len(b) < len(wasmHeader) || !bytes.Equal(b[:len(wasmHeader)], wasmHeader) {
		return nil, errors.New("wasmbin: not a WebAssembly 1.0 module (bad magic or version)")
	}
	var secs []section
	for p := len(wasmHeader); p < len(b); {
		start := p
		id := b[p]
		p++
		n, k, err := readU32(b[p:])
		if err != nil {
			return nil, fmt.Errorf("wasmbin: section at offset %d: size: %w", start, err)
		}
		p += k
		if uint64(n) > uint64(len(b)-p) {
			return nil, fmt.Errorf("wasmbin: section %d at offset %d: size %d exceeds the module", id, start, n)
		}
		secs = append(secs, section{id: id, start: start, body: p, end: p + int(n)})
		p += int(n)
	}
	return secs, nil
}

func parseData(body []byte) ([]segment, error) {
	count, p, err := readU32(body)
	if err != nil {
		return nil, fmt.Errorf("wasmbin: data section: count: %w", err)
	}
	// Every segment takes at least two bytes; never trust count for sizing.
	segs := make([]segment, 0, min(int(count), len(body)/2))
	for i := uint32(0); i < count; i++ {
		s, n, err := parseSegment(body[p:])
		if err != nil {
			return nil, fmt.Errorf("wasmbin: data segment %d: %w", i, err)
		}
		s.start, s.end = uint32(p), uint32(p+n)
		s.data += uint32(p)
		p += n
		segs = append(segs, s)
	}
	if p != len(body) {
		return nil, fmt.Errorf("wasmbin: data section: %d bytes after the last segment", len(body)-p)
	}
	return segs, nil
}

func parseSegment(b []byte) (segment, int, error) {
	var s segment
	flag, p, err := readU32(b)
	if err != nil {
		return s, 0, fmt.Errorf("flags: %w", err)
	}
	switch flag {
	case 0, 2:
		mem := uint32(0)
		if flag == 2 {
			var n int
			if mem, n, err = readU32(b[p:]); err != nil {
				return s, 0, fmt.Errorf("memory index: %w", err)
			}
			p += n
		}
		n, err := skipConstExpr(b[p:])
		if err != nil {
			return s, 0, fmt.Errorf("offset: %w", err)
		}
		expr := b[p : p+n]
		p += n
		s.kind = segOther
		if mem == 0 && expr[0] == opI32Const {
			if v, k, err := readS32(expr[1:]); err == nil && k+2 == len(expr) {
				s.kind, s.off = segMergeable, uint32(v)
			}
		}
	case 1:
		s.kind = segPassive
	default:
		return s, 0, fmt.Errorf("unknown flags %d", flag)
	}
	size, n, err := readU32(b[p:])
	if err != nil {
		return s, 0, fmt.Errorf("size: %w", err)
	}
	p += n
	if uint64(size) > uint64(len(b)-p) {
		return s, 0, fmt.Errorf("size %d exceeds the section", size)
	}
	s.data, s.size = uint32(p), size
	return s, p + int(size), nil
}

// skipConstExpr returns the length of the constant expression at the start of
// b, including its end opcode. It knows the opcodes wazero accepts in
// constant expressions; anything else is an error.
func skipConstExpr(b []byte) (int, error) {
	p := 0
	for {
		if p >= len(b) {
			return 0, errors.New("truncated constant expression")
		}
		op := b[p]
		p++
		var n int
		var err error
		switch op {
		case opEnd:
			return p, nil
		case opI32Const:
			_, n, err = readS32(b[p:])
		case 0x42: // i64.const
			n, err = skipLEB(b[p:], 10)
		case 0x43: // f32.const
			n = 4
		case 0x44: // f64.const
			n = 8
		case 0x23, 0xd2: // global.get, ref.func
			_, n, err = readU32(b[p:])
		case 0xd0: // ref.null heaptype
			n, err = skipLEB(b[p:], 5)
		case 0x6a, 0x6b, 0x6c, 0x7c, 0x7d, 0x7e: // extended-const arithmetic
		case 0xfd: // v128.const
			if p >= len(b) || b[p] != 0x0c {
				return 0, errors.New("unsupported vector opcode in constant expression")
			}
			n = 1 + 16
		default:
			return 0, fmt.Errorf("unsupported opcode 0x%02x in constant expression", op)
		}
		if err != nil {
			return 0, err
		}
		if n > len(b)-p {
			return 0, errors.New("truncated constant expression")
		}
		p += n
	}
}

// mayUseDataIndex reports whether code might contain memory.init (0xfc 8) or
// data.drop (0xfc 9). Decoding every instruction would tie this package to
// the whole instruction set; instead every byte position is tried, which
// finds every real occurrence (LEB128 padding included) at the price of
// rare false positives inside immediates, which only cost the index-keeping
// layout.
func mayUseDataIndex(code []byte) bool {
	for i := 0; i < len(code); i++ {
		if code[i] != 0xfc {
			continue
		}
		var v uint64
		for k := 0; k < 5 && i+1+k < len(code); k++ {
			c := code[i+1+k]
			v |= uint64(c&0x7f) << (7 * k)
			if c&0x80 == 0 {
				break
			}
		}
		if v32 := uint32(v); v32 == 8 || v32 == 9 {
			return true
		}
	}
	return false
}

// mayImportMemory reports whether the import section may import a memory.
// When the section cannot be read it answers true: the caller then only
// forgoes zero-filling, and the runtime reports the malformed section.
func mayImportMemory(body []byte) bool {
	count, p, err := readU32(body)
	if err != nil {
		return true
	}
	skipName := func() bool {
		n, k, err := readU32(body[p:])
		if err != nil || uint64(n) > uint64(len(body)-p-k) {
			return false
		}
		p += k + int(n)
		return true
	}
	skip := func(n int, err error) bool {
		if err != nil || n > len(body)-p {
			return false
		}
		p += n
		return true
	}
	valType := func() bool {
		if p >= len(body) {
			return false
		}
		c := body[p]
		p++
		if c == 0x63 || c == 0x64 { // (ref null? ht)
			return skip(skipLEB(body[p:], 5))
		}
		return true
	}
	limits := func() bool {
		if p >= len(body) {
			return false
		}
		flags := body[p]
		p++
		if !skip(skipLEB(body[p:], 10)) {
			return false
		}
		if flags&1 != 0 {
			return skip(skipLEB(body[p:], 10))
		}
		return true
	}
	for i := uint32(0); i < count; i++ {
		if !skipName() || !skipName() || p >= len(body) {
			return true
		}
		kind := body[p]
		p++
		ok := false
		switch kind {
		case 0x00: // func
			ok = skip(skipLEB(body[p:], 5))
		case 0x01: // table
			ok = valType() && limits()
		case 0x02: // memory
			return true
		case 0x03: // global
			ok = valType() && skip(1, nil)
		case 0x04: // tag
			ok = skip(1, nil) && skip(skipLEB(body[p:], 5))
		}
		if !ok {
			return true
		}
	}
	return false
}
