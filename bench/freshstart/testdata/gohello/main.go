// Command gohello is the Go module of the freshstart benchmark when -go is
// not given: a WAGI-style hello that pulls in fmt, os and strings, i.e. the
// runtime and data segments of a typical small Go guest.
package main

import (
	"fmt"
	"os"
	"strings"
)

func main() {
	fmt.Printf("Content-Type: text/plain\n\n%s\n", strings.ToUpper("hello from go"))
	os.Exit(0)
}
