package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// operator is a client of a PoP's admin API, for the commands that drive a
// network: the central PoP's for deploys.
type operator struct {
	base  string // http://host:port
	token string
	// client has no overall timeout: a rollout streams for as long as its
	// gates last. Each command bounds its own waits.
	client *http.Client
}

// targetFlags are how the deploy commands find the central PoP: a network
// `verge net up` started (--net DIR: its net.json names the centre and the
// token), or an admin URL and a token.
type targetFlags struct {
	net, to, token *string
}

func addTargetFlags(fs *flag.FlagSet) targetFlags {
	return targetFlags{
		net:   fs.String("net", "", "a network started by verge net up: its directory (the central PoP and the token come from net.json)"),
		to:    fs.String("to", "", "the central PoP's admin API URL, e.g. http://127.0.0.1:8081"),
		token: fs.String("token", "", "the operator token (default $VERGE_ADMIN_TOKEN)"),
	}
}

// operator resolves the flags to the central PoP's admin API.
func (t targetFlags) operator() (*operator, error) {
	switch {
	case *t.net != "" && *t.to != "":
		return nil, &usageError{"give --net DIR or --to URL, not both"}
	case *t.net != "":
		nf, err := readNet(*t.net)
		if err != nil {
			return nil, err
		}
		for _, p := range nf.PoPs {
			if p.Central {
				return &operator{base: "http://" + p.Admin, token: nf.Token, client: &http.Client{}}, nil
			}
		}
		return nil, fmt.Errorf("%s/net.json names no central PoP", *t.net)
	case *t.to != "":
		u, err := url.Parse(strings.TrimRight(*t.to, "/"))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, &usageError{fmt.Sprintf("--to %q: expected a URL like http://127.0.0.1:8081", *t.to)}
		}
		return &operator{base: u.String(), token: adminToken(*t.token), client: &http.Client{}}, nil
	}
	return nil, &usageError{"say where the network is: --net DIR (a verge net) or --to URL (the central PoP's admin API)"}
}

// appCommand parses the flags and arguments of an operator command about
// one app (APP, and up to extra more arguments) and finds the central PoP.
// usage is the command's usage text, before its flags.
func appCommand(name, usage string, extra int, args []string, stderr io.Writer) (*operator, []string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := addTargetFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, usage+"\n\nflags:")
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return nil, nil, err
	}
	if len(pos) < 1 || len(pos) > 1+extra {
		if extra == 0 {
			return nil, nil, &usageError{"expected one app name"}
		}
		return nil, nil, &usageError{"expected an app name and optionally a version"}
	}
	op, err := target.operator()
	return op, pos, err
}

// apiError is an error answer of the admin API.
type apiError struct {
	Status int
	Kind   string `json:"kind"`
	Msg    string `json:"error"`
}

func (e *apiError) Error() string {
	if e.Msg == "" {
		return fmt.Sprintf("HTTP %d", e.Status)
	}
	return e.Msg
}

// do sends a request and returns the response if it is a success; an error
// answer becomes an *apiError. The caller closes the body.
func (o *operator) do(method, path, contentType string, body io.Reader, timeout time.Duration) (*http.Response, error) {
	req, err := http.NewRequest(method, o.base+path, body)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if o.token != "" {
		req.Header.Set("Authorization", "Bearer "+o.token)
	}
	c := o.client
	if timeout > 0 {
		c = &http.Client{Timeout: timeout}
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("the admin API at %s: %w", o.base, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		e := &apiError{Status: resp.StatusCode}
		if json.Unmarshal(b, e) != nil || e.Msg == "" {
			e.Msg = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(b))
		}
		return nil, e
	}
	return resp, nil
}

// getJSON fetches path into v.
func (o *operator) getJSON(path string, v any) error {
	resp, err := o.do("GET", path, "", nil, 30*time.Second)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(v)
}

// postJSON sends v and decodes the answer into out (nil: ignore it).
func (o *operator) postJSON(method, path string, v, out any) error {
	b, _ := json.Marshal(v)
	resp, err := o.do(method, path, "application/json", bytes.NewReader(b), time.Minute)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(out)
}

func shortID(v string) string {
	if len(v) > 12 {
		return v[:12]
	}
	if v == "" {
		return "-"
	}
	return v
}
