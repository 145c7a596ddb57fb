// Package harnesstest checks the results of the scenario benchmarks the way
// their readers consume them: as JSON.
package harnesstest

import (
	"encoding/json"
	"testing"

	"github.com/verge-edge/verge/bench/internal/harness"
)

// JSON round-trips r through its JSON form, which is what the harness
// prints and what readers of the benchmark consume. The object must have
// every one of fields and a "summary" that is r's summary line.
func JSON(t testing.TB, r harness.Result, fields ...string) map[string]any {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, f := range append(fields[:len(fields):len(fields)], "summary") {
		if _, ok := m[f]; !ok {
			t.Errorf("result has no %q: %s", f, b)
		}
	}
	if s, _ := m["summary"].(string); s == "" || s != r.SummaryLine() {
		t.Errorf("summary %q, SummaryLine() %q", m["summary"], r.SummaryLine())
	}
	return m
}

// Num is m[field], which must be a number.
func Num(t testing.TB, m map[string]any, field string) float64 {
	t.Helper()
	v, ok := m[field].(float64)
	if !ok {
		t.Fatalf("field %q is %T (%v), want a number", field, m[field], m[field])
	}
	return v
}

// Obj is m[field], which must be an object.
func Obj(t testing.TB, m map[string]any, field string) map[string]any {
	t.Helper()
	v, ok := m[field].(map[string]any)
	if !ok {
		t.Fatalf("field %q is %T (%v), want an object", field, m[field], m[field])
	}
	return v
}
