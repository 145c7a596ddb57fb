package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/verge-edge/verge"
)

const dataUsage = `usage: verge data [flags] get    COLLECTION KEY
       verge data [flags] put    COLLECTION KEY JSON     replace the document (JSON object, or - for stdin)
       verge data [flags] update COLLECTION KEY OPS      apply ops atomically (JSON array, or - for stdin)
       verge data [flags] delete COLLECTION KEY
       verge data [flags] list   COLLECTION              keys, one per line
       verge data [flags] collections                    the app's collections and their scopes

Reads and writes an app's documents through a running PoP's admin API
(verge dev --admin). put and update print the document once it is durable.

  verge data --app shop update carts u1 '[{"op":"append","path":"items","value":42}]'

flags:`

// maxDataResponse bounds what the CLI reads from the admin API.
const maxDataResponse = 64 << 20

func runData(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("data", flag.ContinueOnError)
	fs.SetOutput(stderr)
	adminURL := fs.String("admin", "http://"+defaultAdminAddr, "admin API URL")
	appName := fs.String("app", os.Getenv("VERGE_APP"), "app name (default $VERGE_APP, else the name in ./verge.toml)")
	token := fs.String("token", "", "admin token (default $VERGE_ADMIN_TOKEN)")
	after := fs.String("after", "", "list: start after this key")
	limit := fs.Int("limit", 0, "list: keys per page (default: the server's, 100)")
	all := fs.Bool("all", false, "list: follow pages to the end")
	timeout := fs.Duration("timeout", 30*time.Second, "give up on a request after this long")
	fs.Usage = func() {
		fmt.Fprintln(stderr, dataUsage)
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return &usageError{"expected a subcommand: get, put, update, delete, list or collections"}
	}
	sub, pos := pos[0], pos[1:]
	want := map[string]int{"get": 2, "put": 3, "update": 3, "delete": 2, "list": 1, "collections": 0}
	n, ok := want[sub]
	if !ok {
		return &usageError{fmt.Sprintf("unknown subcommand %q; expected get, put, update, delete, list or collections", sub)}
	}
	if len(pos) != n {
		return &usageError{fmt.Sprintf("%s takes %d arguments (%s), got %d", sub, n,
			[]string{"", "COLLECTION", "COLLECTION KEY", "COLLECTION KEY JSON"}[n], len(pos))}
	}
	app := *appName
	if app == "" {
		m, err := verge.LoadManifest(".")
		if err != nil {
			return &usageError{fmt.Sprintf("--app is required outside an app directory (%v)", err)}
		}
		app = m.Name
	}
	base, err := url.Parse(strings.TrimRight(*adminURL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return &usageError{fmt.Sprintf("--admin %q: expected a URL like http://127.0.0.1:8081", *adminURL)}
	}
	if sub == "collections" {
		c := &dataClient{base: base.String() + "/v1/apps/" + url.PathEscape(app) + "/collections", token: adminToken(*token), client: &http.Client{Timeout: *timeout}}
		return c.do("GET", "", nil, stdout)
	}
	c := &dataClient{
		base:   base.String() + "/v1/apps/" + url.PathEscape(app) + "/collections/" + url.PathEscape(pos[0]) + "/docs",
		token:  adminToken(*token),
		client: &http.Client{Timeout: *timeout},
	}
	doc := func() string { return "/" + url.PathEscape(pos[1]) }

	switch sub {
	case "get":
		return c.do("GET", doc(), nil, stdout)
	case "delete":
		return c.do("DELETE", doc(), nil, stdout)
	case "put":
		body, err := arg(pos[2])
		if err != nil {
			return err
		}
		return c.do("PUT", doc(), body, stdout)
	case "update":
		ops, err := arg(pos[2])
		if err != nil {
			return err
		}
		// Accept either the ops array or the API's {"ops": [...]}.
		if t := bytes.TrimSpace(ops); len(t) > 0 && t[0] == '[' {
			ops = append(append([]byte(`{"ops":`), t...), '}')
		}
		return c.do("POST", doc(), ops, stdout)
	}
	// list
	cursor := *after
	for page := 0; ; page++ {
		q := url.Values{}
		if cursor != "" {
			q.Set("after", cursor)
		}
		if *limit > 0 {
			q.Set("limit", strconv.Itoa(*limit))
		}
		var buf bytes.Buffer
		if err := c.do("GET", "?"+q.Encode(), nil, &buf); err != nil {
			return err
		}
		var l struct {
			Keys []string `json:"keys"`
			Next string   `json:"next"`
		}
		if err := json.Unmarshal(buf.Bytes(), &l); err != nil {
			return fmt.Errorf("unexpected answer from the admin API: %v", err)
		}
		for _, k := range l.Keys {
			fmt.Fprintln(stdout, k)
		}
		if l.Next == "" {
			return nil
		}
		if !*all {
			fmt.Fprintf(stderr, "verge data: more keys; continue with --after %q (or pass --all)\n", l.Next)
			return nil
		}
		if l.Next == cursor {
			return errors.New("the admin API returned the same cursor twice; stopping")
		}
		cursor = l.Next
	}
}

// arg returns a JSON argument, or stdin for "-".
func arg(s string) ([]byte, error) {
	if s != "-" {
		return []byte(s), nil
	}
	b, err := io.ReadAll(io.LimitReader(os.Stdin, maxDataResponse+1))
	if err != nil {
		return nil, fmt.Errorf("reading stdin: %w", err)
	}
	if len(b) > maxDataResponse {
		return nil, fmt.Errorf("stdin holds more than %d bytes", maxDataResponse)
	}
	return b, nil
}

type dataClient struct {
	base   string
	token  string
	client *http.Client
}

// do sends one request and copies a successful answer's body to out.
func (c *dataClient) do(method, path string, body []byte, out io.Writer) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("%w (is verge dev running with its admin API there? see --admin)", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxDataResponse))
	if err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct{ Error, Kind string }
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s (%s, HTTP %d)", e.Error, e.Kind, resp.StatusCode)
		}
		return fmt.Errorf("HTTP %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	_, err = out.Write(b)
	return err
}
