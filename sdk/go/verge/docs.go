package verge

import (
	"encoding/json"
	"errors"
	"strconv"
)

// Documents are JSON values that every PoP can change locally and that merge
// without conflicts (see docs/data.md). Changes are operations on paths:
// "items" names a field, "items.0.qty" a field inside the first element of
// an array. A function reaches only its own app's documents.
//
//	carts := verge.Documents("carts")
//	err := carts.Update(userID, verge.Prepend("items", productID), verge.Increment("count", 1))

// Op is one change to a document; build it with Set, Insert, Append,
// Prepend, Remove or Increment.
type Op struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Index *int   `json:"index,omitempty"`
	Value any    `json:"value,omitempty"`
}

// Set writes value (any JSON-encodable Go value) at path; "" is the whole document.
func Set(path string, value any) Op { return Op{Op: "set", Path: path, Value: value} }

// Insert puts value into the array at path before position index.
func Insert(path string, index int, value any) Op {
	return Op{Op: "insert", Path: path, Index: &index, Value: value}
}

// Append adds value at the end of the array at path.
func Append(path string, value any) Op { return Op{Op: "append", Path: path, Value: value} }

// Prepend adds value at the start of the array at path.
func Prepend(path string, value any) Op { return Op{Op: "prepend", Path: path, Value: value} }

// Remove deletes the field or array element at path.
func Remove(path string) Op { return Op{Op: "remove", Path: path} }

// Increment adds n (negative to subtract) to the number at path; concurrent
// increments at different PoPs all count.
func Increment(path string, n int64) Op { return Op{Op: "increment", Path: path, Value: n} }

// ErrNotFound is returned for a document that does not exist; host errors
// reporting NOT_FOUND (e.g. Invoke of an unknown central function) match it.
var ErrNotFound = errors.New("verge: document not found")

// Collection is a named set of documents declared in verge.toml.
type Collection struct{ name string }

// Documents returns the collection called name.
func Documents(name string) Collection { return Collection{name: name} }

// docErr turns a status into an error carrying the host's message.
func docErr(call string, st uint32) error {
	if st == statusOK {
		return nil
	}
	if st == statusNotFound {
		return ErrNotFound
	}
	return explained(call, st)
}

// explained returns the error of a failed call with the host's message.
func explained(call string, st uint32) error {
	e := &HostError{Call: call, Status: st}
	buf := make([]byte, 256)
	n, s := sysLastError(buf)
	if s == statusTooSmall {
		buf = make([]byte, n)
		n, s = sysLastError(buf)
	}
	if s == statusOK {
		e.Msg = string(buf[:n])
	}
	return e
}

// GetJSON returns the document's JSON; found is false if it does not exist.
func (c Collection) GetJSON(key string) (doc []byte, found bool, err error) {
	doc, found, err = c.get(key)
	if found {
		doc = append([]byte(nil), doc...)
	}
	return doc, found, err
}

// docBuf receives documents; Get decodes them from it without a copy.
var docBuf = make([]byte, 0, 4096)

// get reads the document into docBuf.
func (c Collection) get(key string) (doc []byte, found bool, err error) {
	buf := docBuf[:cap(docBuf)]
	for i := 0; i < 4; i++ { // the document may grow between calls
		n, st := sysDocGet(c.name, key, buf)
		switch st {
		case statusOK:
			if cap(buf) <= 64<<10 {
				docBuf = buf[:0]
			}
			return buf[:n], true, nil
		case statusTooSmall:
			buf = make([]byte, n)
			continue
		case statusNotFound:
			return nil, false, nil
		}
		return nil, false, docErr("doc_get", st)
	}
	return nil, false, errors.New("verge: doc_get: the document kept growing while being read")
}

// Get decodes the document into v (as encoding/json does). Maps of
// string keys to int64, int, float64, string, bool or any, an empty *any
// and *json.RawMessage are decoded without encoding/json's reflection
// (decode.go), with the same results.
func (c Collection) Get(key string, v any) (found bool, err error) {
	doc, found, err := c.get(key)
	if err != nil || !found {
		return found, err
	}
	return true, unmarshal(doc, v)
}

// unmarshal is json.Unmarshal, taking the fast path where there is one.
func unmarshal(doc []byte, v any) error {
	if decodeFast(doc, v) {
		return nil
	}
	return json.Unmarshal(doc, v)
}

// opsBuf receives the encoding of the operations of an update.
var opsBuf []byte

// Update applies ops to the document atomically, creating it if needed, and
// returns once the change is durable at this PoP.
func (c Collection) Update(key string, ops ...Op) error {
	b, err := appendOps(opsBuf[:0], ops)
	if err != nil {
		return err
	}
	if cap(b) <= 64<<10 {
		opsBuf = b
	}
	return docErr("doc_update", sysDocUpdate(c.name, key, b))
}

// appendOps encodes ops as encoding/json would, without reflection for the
// common values (encoding/json costs tens of microseconds per call in a Go
// guest); other values go through encoding/json.
func appendOps(b []byte, ops []Op) ([]byte, error) {
	b = append(b, '[')
	for i, op := range ops {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"op":`...)
		b = appendJSONString(b, op.Op)
		b = append(b, `,"path":`...)
		b = appendJSONString(b, op.Path)
		if op.Index != nil {
			b = append(b, `,"index":`...)
			b = strconv.AppendInt(b, int64(*op.Index), 10)
		}
		if op.Value != nil {
			b = append(b, `,"value":`...)
			var err error
			if b, err = appendJSONValue(b, op.Value); err != nil {
				return nil, err
			}
		}
		b = append(b, '}')
	}
	return append(b, ']'), nil
}

func appendJSONValue(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case string:
		return appendJSONString(b, v), nil
	case int:
		return strconv.AppendInt(b, int64(v), 10), nil
	case int64:
		return strconv.AppendInt(b, v, 10), nil
	case int32:
		return strconv.AppendInt(b, int64(v), 10), nil
	case uint64:
		return strconv.AppendUint(b, v, 10), nil
	case uint32:
		return strconv.AppendUint(b, uint64(v), 10), nil
	case uint:
		return strconv.AppendUint(b, uint64(v), 10), nil
	case bool:
		return strconv.AppendBool(b, v), nil
	}
	j, err := json.Marshal(v)
	return append(b, j...), err
}

// appendJSONString quotes s as encoding/json does (HTML characters
// escaped, invalid UTF-8 replaced), taking a fast path for plain ASCII.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			j, _ := json.Marshal(s)
			return append(b, j...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// Put replaces the whole document with v, which must encode to a JSON object.
func (c Collection) Put(key string, v any) error { return c.Update(key, Set("", v)) }

// Delete removes the document; found is false if it did not exist.
func (c Collection) Delete(key string) (found bool, err error) {
	err = docErr("doc_delete", sysDocDelete(c.name, key))
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// List returns up to limit (1-1000) keys after the key `after` ("" for the
// first page), in order, and the `after` of the next page ("" at the end).
func (c Collection) List(after string, limit int) (keys []string, next string, err error) {
	buf := make([]byte, 4096)
	n, st := sysDocList(c.name, after, limit, buf)
	if st == statusTooSmall {
		buf = make([]byte, n)
		n, st = sysDocList(c.name, after, limit, buf)
	}
	if st != statusOK {
		return nil, "", docErr("doc_list", st)
	}
	b := buf[:n]
	count, b, ok := u32(b)
	if !ok || uint64(count)*4 > uint64(len(b)) {
		return nil, "", errors.New("verge: doc_list: malformed answer")
	}
	keys = make([]string, 0, count)
	for i := uint32(0); i < count; i++ {
		var k string
		if k, b, ok = str(b); !ok {
			return nil, "", errors.New("verge: doc_list: malformed answer")
		}
		keys = append(keys, k)
	}
	if next, _, ok = str(b); !ok {
		return nil, "", errors.New("verge: doc_list: malformed answer")
	}
	return keys, next, nil
}
