package crdt

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
)

// The reference model: plain Go JSON values and the obvious sequential
// semantics of each operation. When no two operations are concurrent, every
// replica must read exactly what the model reads.

func modelOp(root map[string]any, op Op) (map[string]any, error) {
	var v any
	if len(op.Value) > 0 {
		var err error
		if v, err = parseValue(op.Value); err != nil {
			return nil, err
		}
	}
	steps := splitPath(op.Path)
	if len(steps) == 0 {
		if op.Op != "set" {
			return nil, errors.New("root")
		}
		m, ok := v.(map[string]any)
		if !ok {
			return nil, errors.New("root must be object")
		}
		return deepCopy(m).(map[string]any), nil
	}
	// walk to the parent container
	var parent any = root
	for _, s := range steps[:len(steps)-1] {
		next, ok := child(parent, s)
		if !ok {
			return nil, errors.New("missing")
		}
		parent = next
	}
	last := steps[len(steps)-1]
	switch op.Op {
	case "set":
		return root, put(parent, last, deepCopy(v), false)
	case "remove":
		switch p := parent.(type) {
		case map[string]any:
			if _, ok := p[last]; !ok {
				return nil, errors.New("missing")
			}
			delete(p, last)
			return root, nil
		case []any:
			return nil, errors.New("index") // valid element removes are handled by modelRemoveElem
		}
		return nil, errors.New("not a container")
	case "increment":
		n, ok := v.(int64)
		if !ok {
			return nil, errors.New("not int")
		}
		cur, exists := child(parent, last)
		if !exists {
			if _, isObj := parent.(map[string]any); !isObj {
				return nil, errors.New("missing")
			}
			return root, put(parent, last, n, false)
		}
		switch c := cur.(type) {
		case int64:
			return root, put(parent, last, c+n, false)
		case float64:
			return root, put(parent, last, c+float64(n), false)
		}
		return nil, errors.New("not a number")
	case "insert", "append", "prepend":
		cur, ok := child(parent, last)
		if !ok {
			return nil, errors.New("missing")
		}
		arr, ok := cur.([]any)
		if !ok {
			return nil, errors.New("not array")
		}
		i := len(arr)
		switch op.Op {
		case "prepend":
			i = 0
		case "insert":
			if op.Index == nil || *op.Index < 0 || *op.Index > len(arr) {
				return nil, errors.New("index")
			}
			i = *op.Index
		}
		arr = append(arr[:i:i], append([]any{deepCopy(v)}, arr[i:]...)...)
		return root, put(parent, last, arr, true)
	}
	return nil, errors.New("unknown op")
}

func child(c any, s string) (any, bool) {
	switch p := c.(type) {
	case map[string]any:
		v, ok := p[s]
		return v, ok
	case []any:
		i, err := strconv.Atoi(s)
		if err != nil || i < 0 || i >= len(p) {
			return nil, false
		}
		return p[i], true
	}
	return nil, false
}

func put(c any, s string, v any, replace bool) error {
	switch p := c.(type) {
	case map[string]any:
		p[s] = v
		return nil
	case []any:
		i, err := strconv.Atoi(s)
		if err != nil || i < 0 || i >= len(p) {
			return errors.New("index")
		}
		p[i] = v
		return nil
	}
	return errors.New("not a container")
}

// modelRemove handles array element removal, which needs the array's holder.
func modelRemoveElem(root map[string]any, path string) (map[string]any, bool) {
	steps := splitPath(path)
	if len(steps) < 2 {
		return root, false
	}
	var holder any = root
	for _, s := range steps[:len(steps)-2] {
		h, ok := child(holder, s)
		if !ok {
			return root, false
		}
		holder = h
	}
	key := steps[len(steps)-2]
	arrAny, ok := child(holder, key)
	arr, isArr := arrAny.([]any)
	if !ok || !isArr {
		return root, false
	}
	i, err := strconv.Atoi(steps[len(steps)-1])
	if err != nil || i < 0 || i >= len(arr) {
		return root, false
	}
	arr = append(arr[:i:i], arr[i+1:]...)
	if put(holder, key, arr, true) != nil {
		return root, false
	}
	return root, true
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = deepCopy(e)
		}
		return a
	}
	return v
}

// modelApplyAll applies ops, handling array-element removes.
func modelApplyAll(root map[string]any, ops []Op) (map[string]any, error) {
	m := deepCopy(root).(map[string]any)
	for i, op := range ops {
		if op.Op == "remove" {
			if r, ok := modelRemoveElem(m, op.Path); ok {
				m = r
				continue
			}
		}
		var err error
		m, err = modelOp(m, op)
		if err != nil {
			return nil, fmt.Errorf("op %d: %w", i, err)
		}
	}
	return m, nil
}

func canon(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "ERR " + err.Error()
	}
	return string(b)
}

// ---- random operations ----

var keys = []string{"a", "b", "items", "n", "s"}

func randScalar(rng *rand.Rand) string {
	switch rng.IntN(7) {
	case 0:
		return "null"
	case 1:
		return "true"
	case 2:
		return strconv.Itoa(rng.IntN(200) - 100)
	case 3:
		return strconv.FormatFloat(float64(rng.IntN(1000))/8, 'g', -1, 64)
	case 4:
		return `"` + strings.Repeat(string(rune('p'+rng.IntN(5))), 1+rng.IntN(3)) + `"`
	case 5:
		return `"h\u00e9 \"q\""`
	default:
		return "false"
	}
}

func randValue(rng *rand.Rand, depth int) string {
	if depth > 2 {
		return randScalar(rng)
	}
	switch rng.IntN(5) {
	case 0:
		var parts []string
		for _, k := range rng.Perm(len(keys))[:rng.IntN(3)] {
			parts = append(parts, strconv.Quote(keys[k])+":"+randValue(rng, depth+1))
		}
		return "{" + strings.Join(parts, ",") + "}"
	case 1:
		var parts []string
		for range rng.IntN(4) {
			parts = append(parts, randValue(rng, depth+1))
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	return randScalar(rng)
}

// randPath walks the current value to a random existing container and
// returns a path into it: sometimes an existing child, sometimes a new key.
func randOp(rng *rand.Rand, v any) Op {
	var path []string
	cur := v
	for depth := 0; depth < 4; depth++ {
		switch c := cur.(type) {
		case map[string]any:
			k := keys[rng.IntN(len(keys))]
			next, ok := c[k]
			path = append(path, k)
			if !ok || rng.IntN(3) == 0 {
				return opAt(rng, path, next, ok)
			}
			cur = next
		case []any:
			if len(c) == 0 || rng.IntN(3) == 0 {
				return opAt(rng, path, c, true)
			}
			i := rng.IntN(len(c))
			path = append(path, strconv.Itoa(i))
			if rng.IntN(3) == 0 {
				return opAt(rng, path, c[i], true)
			}
			cur = c[i]
		default:
			return opAt(rng, path, cur, true)
		}
	}
	return opAt(rng, path, cur, true)
}

func opAt(rng *rand.Rand, path []string, cur any, exists bool) Op {
	p := strings.Join(path, ".")
	if rng.IntN(40) == 0 { // occasionally invalid on purpose
		return Op{Op: []string{"increment", "append", "remove", "set"}[rng.IntN(4)], Path: p + ".zz.9", Value: json.RawMessage("1")}
	}
	if arr, ok := cur.([]any); ok && exists {
		switch rng.IntN(5) {
		case 0:
			return Op{Op: "append", Path: p, Value: json.RawMessage(randValue(rng, 1))}
		case 1:
			return Op{Op: "prepend", Path: p, Value: json.RawMessage(randValue(rng, 1))}
		case 2, 3:
			i := rng.IntN(len(arr) + 1)
			return Op{Op: "insert", Path: p, Index: &i, Value: json.RawMessage(randValue(rng, 1))}
		}
	}
	switch cur.(type) {
	case int64, float64:
		if rng.IntN(2) == 0 {
			return Op{Op: "increment", Path: p, Value: json.RawMessage(strconv.Itoa(rng.IntN(11) - 5))}
		}
	}
	if !exists && rng.IntN(4) == 0 {
		return Op{Op: "increment", Path: p, Value: json.RawMessage(strconv.Itoa(rng.IntN(5) + 1))}
	}
	if exists && rng.IntN(4) == 0 {
		return Op{Op: "remove", Path: p}
	}
	if rng.IntN(50) == 0 {
		root := `{"items":[1,2],"n":0}`
		if rng.IntN(2) == 0 {
			root = `{}` // creates no value: the event alone carries the reset
		}
		return Op{Op: "set", Path: "", Value: json.RawMessage(root)}
	}
	return Op{Op: "set", Path: p, Value: json.RawMessage(randValue(rng, 0))}
}

func splitPath(path string) []string {
	if path == "" {
		return nil
	}
	return strings.Split(path, ".")
}
