package wasmbin

// DataSegment is an active data segment: Data is written at Offset of
// memory 0 when a module is instantiated.
type DataSegment struct {
	Offset uint32
	Data   []byte
}

// StripActiveData returns wasm without its data (and data count) section,
// and the segments it held, in order, when every segment is active, for
// memory 0, at a constant offset: a host that writes them into memory
// itself, or restores memory from a snapshot, instantiates the stripped
// module without copying them, and does not keep a copy in the runtime's
// decoded module. ok is false, and wasm is returned, when any segment is of
// another kind; memory.init and data.drop must not be used (see Instrument).
// The segments' bytes share wasm's array.
func StripActiveData(wasm []byte) (out []byte, segs []DataSegment, ok bool) {
	secs, err := parseSections(wasm)
	if err != nil {
		return wasm, nil, false
	}
	var data *section
	for i := range secs {
		if secs[i].id == secData {
			if data != nil {
				return wasm, nil, false
			}
			data = &secs[i]
		}
	}
	if data == nil {
		return wasm, nil, true
	}
	body := wasm[data.body:data.end]
	parsed, err := parseData(body)
	if err != nil {
		return wasm, nil, false
	}
	segs = make([]DataSegment, 0, len(parsed))
	for _, s := range parsed {
		if s.kind != segMergeable {
			return wasm, nil, false
		}
		segs = append(segs, DataSegment{Offset: s.off, Data: body[s.data : s.data+s.size : s.data+s.size]})
	}
	out = make([]byte, 0, len(wasm)-(data.end-data.start))
	out = append(out, wasm[:8]...)
	for _, s := range secs {
		if s.id != secData && s.id != secDataCount {
			out = append(out, wasm[s.start:s.end]...)
		}
	}
	return out, segs, true
}
