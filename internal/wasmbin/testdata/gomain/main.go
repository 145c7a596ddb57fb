// Command gomain is a small wasip1 program whose binary has the tens of
// thousands of data segments typical of Go, built by the wasmbin tests.
package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
)

var table = map[string]int{"alpha": 1, "beta": 2, "gamma": 3, "delta": 4}

func main() {
	keys := make([]string, 0, len(table))
	for k := range table {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%d;", k, table[k])
	}
	fmt.Fprintln(os.Stdout, b.String(), len(os.Args))
}
