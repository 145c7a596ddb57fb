// Command hello-wagi-go is a WAGI (CGI over WASI preview 1) function in plain
// Go, standard library only, built with GOOS=wasip1 GOARCH=wasm. It needs no
// SDK: examples/hello-go shows the same in the verge executor with the SDK.
//
// The host puts the request in CGI environment variables and the body on
// stdin; we write headers, a blank line and the body to stdout. stderr goes to
// the host's log.
//
//	GET  /hello/NAME or /hello?name=NAME  -> a greeting naming the method and path
//	POST /hello                           -> the request body, echoed byte for byte
//	anything else                         -> 404 or 405 with a Status header
//
// It deliberately avoids net/http and net/http/cgi: they would triple the
// module and its start-up cost, and a fresh instance runs per request.
package main

import (
	"bufio"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
)

const nameMaxLen = 255

func main() {
	out := bufio.NewWriter(os.Stdout)
	err := serve(out, os.Stdin)
	if err == nil {
		err = out.Flush()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "hello-wagi-go: %v\n", err)
		os.Exit(1)
	}
}

func serve(out io.Writer, body io.Reader) error {
	method := os.Getenv("REQUEST_METHOD")
	script := os.Getenv("SCRIPT_NAME")
	pathInfo := os.Getenv("PATH_INFO")

	// CGI: the request path is SCRIPT_NAME (the matched route, "/hello") plus
	// PATH_INFO (what the wildcard matched, "/NAME" or "").
	full := script + pathInfo
	if full != "/hello" && !strings.HasPrefix(full, "/hello/") {
		_, err := fmt.Fprintf(out, "Status: 404 Not Found\nContent-Type: text/plain; charset=utf-8\n\n"+
			"hello-wagi-go only answers /hello and /hello/NAME, not %s\n", full)
		return err
	}
	switch method {
	case "GET", "HEAD":
		return greet(out, method, script, pathInfo)
	case "POST", "PUT":
		return echo(out, body, method)
	default:
		_, err := fmt.Fprintf(out, "Status: 405 Method Not Allowed\nAllow: GET, HEAD, POST, PUT\n"+
			"Content-Type: text/plain; charset=utf-8\n\nhello-wagi-go does not handle %s\n", method)
		return err
	}
}

func greet(out io.Writer, method, script, pathInfo string) error {
	query := os.Getenv("QUERY_STRING")
	name := queryParam(query, "name")
	if name == "" {
		// /hello/NAME: the route's wildcard part arrives as PATH_INFO ("/NAME"),
		// already URL-decoded by the host as CGI requires.
		name = strings.TrimLeft(pathInfo, "/")
	}
	if name == "" {
		name = "world"
	}
	if len(name) > nameMaxLen {
		name = strings.ToValidUTF8(name[:nameMaxLen], "")
	}
	sep := ""
	if query != "" {
		sep = "?"
	}
	_, err := fmt.Fprintf(out, "Content-Type: text/plain; charset=utf-8\nX-Hello-Language: Go\n\n"+
		"Hello, %s! Greetings from Go, via WAGI.\nYou sent %s %s%s%s%s\n",
		name, method, script, pathInfo, sep, query)
	fmt.Fprintf(os.Stderr, "hello-wagi-go: %s %s%s name=%s\n", method, script, pathInfo, name)
	return err
}

func echo(out io.Writer, body io.Reader, method string) error {
	ctype := os.Getenv("CONTENT_TYPE")
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	if _, err := fmt.Fprintf(out, "Content-Type: %s\nX-Hello-Language: Go\n\n", ctype); err != nil {
		return err
	}
	// io.Copy streams through a fixed buffer: memory stays constant whatever
	// the body size (the host bounds it anyway).
	n, err := io.Copy(out, body)
	if err != nil {
		return fmt.Errorf("echoing the request body after %d bytes: %w", n, err)
	}
	fmt.Fprintf(os.Stderr, "hello-wagi-go: %s echoed %d bytes\n", method, n)
	return nil
}

// queryParam returns the decoded value of key in a raw query string. A
// malformed query yields "" rather than an error: a greeting is no reason to
// fail a request.
func queryParam(query, key string) string {
	for kv := range strings.SplitSeq(query, "&") {
		k, v, ok := strings.Cut(kv, "=")
		if ok && k == key {
			return decode(v)
		}
	}
	return ""
}

// decode percent-decodes s ('+' is a space), keeping s as it is when it is
// malformed.
func decode(s string) string {
	d, err := url.QueryUnescape(s)
	if err != nil {
		return s
	}
	return d
}
