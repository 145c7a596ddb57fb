package main

import (
	"maps"
	"testing"
)

func TestParseLevels(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]map[string]int64{
		``:                                    {},
		`{}`:                                  {},
		`{"p001":100,"p002":-3, "p003" : 0 }`: {"p001": 100, "p002": -3, "p003": 0},
		`{"c001":1.8446744073709552e+19}`:     {"c001": 1<<63 - 1}, // past int64 after a merge: read as the nearest
	} {
		got, err := parseLevels([]byte(in))
		if err != nil || !maps.Equal(got, want) {
			t.Errorf("parseLevels(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{`[]`, `{"p001":"x"}`, `{p001:1}`, `{"p001" 1}`} {
		if got, err := parseLevels([]byte(in)); err == nil {
			t.Errorf("parseLevels(%q) = %v, accepted", in, got)
		}
	}
}

func TestProductStoredForm(t *testing.T) {
	t.Parallel()
	p := &product{ID: "p001", Name: "Acme Kettle", Category: "Kitchen", Brand: "Acme", Cents: 1999}
	got, err := parseProduct("p001", formatProduct(p))
	if err != nil || *got != *p {
		t.Fatalf("round trip: %+v, %v; want %+v", got, err, p)
	}
	if _, err := parseProduct("p002", "a|b|c"); err == nil {
		t.Fatal("a product of three fields was accepted")
	}
	if !plain("Café & Co") || plain("a|b") || plain("tab\there") {
		t.Fatal("plain")
	}
	if string(productHead(p)) != `{"id":"p001","name":"Acme Kettle","category":"Kitchen","brand":"Acme","price":19.99,"stock":` {
		t.Fatalf("head: %s", productHead(p))
	}
}
