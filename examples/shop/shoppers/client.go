package shoppers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/verge-edge/verge/internal/netsim"
)

// Leg is the emulated last mile between a city and the PoPs: Base is the
// fixed one-way cost (access network, switching), the rest grows with the
// distance as on the PoPs' own links; Scale 0 turns it off.
type Leg struct {
	Base  time.Duration
	Scale float64
}

// Client is one city's way to one network: its emulated last mile to every
// PoP, the connections it keeps open across its shoppers' journeys (a
// browser reuses its connections), and the PoPs it found gone.
type Client struct {
	City      City
	Net       *Net
	layer     *netsim.Layer
	transport *http.Transport
	order     []PoP // nearest first

	mu   sync.Mutex
	down map[string]time.Time // PoP -> until when it is passed over
}

// NewClient dials net's PoPs from city through its own netsim.Layer.
func NewClient(city City, net *Net, leg Leg) (*Client, error) {
	l := netsim.NewLayer(city.At(), netsim.Model{Base: leg.Base, Scale: leg.Scale})
	for _, p := range net.PoPs {
		if err := l.AddPeer(p.ID, p.HTTP, p.At()); err != nil {
			return nil, err
		}
	}
	return &Client{
		City: city, Net: net, layer: l, order: net.Nearest(city.At()), down: map[string]time.Time{},
		transport: &http.Transport{DialContext: l.DialContext, MaxIdleConnsPerHost: 16, IdleConnTimeout: 5 * time.Minute,
			DisableCompression: true},
	}, nil
}

// Close closes the client's idle connections.
func (c *Client) Close() { c.transport.CloseIdleConnections() }

// Home is the city's nearest PoP.
func (c *Client) Home() PoP { return c.order[0] }

// RTT is the emulated round trip between the city and p.
func (c *Client) RTT(p PoP) time.Duration {
	return 2 * c.layer.Model().OneWay(c.City.At(), p.At())
}

// pick returns the nearest PoP not passed over, or the nearest if all are.
func (c *Client) pick() PoP {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	for _, p := range c.order {
		if now.After(c.down[p.ID]) {
			return p
		}
	}
	return c.order[0]
}

// passOver avoids p for a while: it did not answer, or could not forward.
func (c *Client) passOver(p PoP, d time.Duration) {
	c.mu.Lock()
	c.down[p.ID] = time.Now().Add(d)
	c.mu.Unlock()
}

// Shopper is one browser: its cookies (the session, and verge_home, the PoP
// that served it last) go to whichever PoP it reaches.
type Shopper struct {
	c    *Client
	http *http.Client
	// Patience bounds how long one action keeps retrying (503, 504) and
	// failing over (no answer, 502).
	Patience time.Duration
}

// NewShopper is a fresh browser in the client's city.
func (c *Client) NewShopper() *Shopper {
	jar, _ := cookiejar.New(nil)
	return &Shopper{c: c, http: &http.Client{Transport: c.transport, Jar: jar, Timeout: 20 * time.Second}, Patience: 10 * time.Second}
}

// Sample is one action as the shopper saw it.
type Sample struct {
	Action string
	Start  time.Time
	// Dur is the client-observed latency: from the first byte sent to the
	// last byte of the final answer, retries and failovers included.
	Dur    time.Duration
	Status int           // the final answer's; 0: none came
	PoP    string        // Verge-PoP of the final answer: where it ran
	First  string        // the PoP the first attempt went to
	Server time.Duration // Server-Timing app;dur of the final answer
	// Centre is the part of Server spent waiting for the central PoP, in
	// Trips round trips (Server-Timing centre;dur=MS;desc="N").
	Centre time.Duration
	Trips  int
	// Attempts are the statuses of every attempt (0: no answer), when
	// there was more than one.
	Attempts []int
}

var (
	durRE    = regexp.MustCompile(`app;dur=([0-9.]+)`)
	centreRE = regexp.MustCompile(`centre;dur=([0-9.]+);desc="([0-9]+)"`)
)

// Do sends one action, retrying while the answer is 503 or 504 (the
// centre unreachable, or slow: the same request again, to the same or
// another PoP) and failing over to the next-nearest PoP when there is no
// answer or a 502 (the PoP cannot forward), within Patience. A retried
// request is the same request: a checkout keeps its id.
func (s *Shopper) Do(ctx context.Context, action, method, path string, body any) (Sample, map[string]any) {
	var raw []byte
	if body != nil {
		raw, _ = json.Marshal(body)
	}
	smp := Sample{Action: action, Start: time.Now()}
	deadline := smp.Start.Add(s.Patience)
	backoff := 100 * time.Millisecond
	var out map[string]any
	for {
		p := s.c.pick()
		if smp.First == "" {
			smp.First = p.ID
		}
		code, m, hdr := s.once(ctx, method, "http://"+p.HTTP+path, raw)
		smp.Attempts = append(smp.Attempts, code)
		smp.Status, out = code, m
		if hdr != nil {
			smp.PoP = hdr.Get("Verge-PoP")
			timing := hdr.Get("Server-Timing")
			smp.Server, smp.Centre, smp.Trips = 0, 0, 0
			if x := durRE.FindStringSubmatch(timing); x != nil {
				f, _ := strconv.ParseFloat(x[1], 64)
				smp.Server = time.Duration(f * float64(time.Millisecond))
			}
			if x := centreRE.FindStringSubmatch(timing); x != nil {
				f, _ := strconv.ParseFloat(x[1], 64)
				smp.Centre = time.Duration(f * float64(time.Millisecond))
				smp.Trips, _ = strconv.Atoi(x[2])
			}
		}
		retry := false
		switch code {
		case 0, 502:
			s.c.passOver(p, 3*time.Second)
			retry = true
		case 503, 504:
			retry = true
		}
		if !retry || ctx.Err() != nil || time.Now().Add(backoff).After(deadline) {
			break
		}
		wait := backoff
		if code == 0 || code == 502 {
			wait = 20 * time.Millisecond // the next PoP at once; all gone: not in a tight loop
		} else {
			backoff = min(2*backoff, time.Second)
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	smp.Dur = time.Since(smp.Start)
	if len(smp.Attempts) == 1 {
		smp.Attempts = nil
	}
	return smp, out
}

func (s *Shopper) once(ctx context.Context, method, url string, body []byte) (int, map[string]any, http.Header) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return 0, map[string]any{"error": err.Error()}, nil
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, map[string]any{"error": err.Error()}, nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, map[string]any{"error": err.Error()}, nil
	}
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		m = map[string]any{"body": string(b)}
	}
	return resp.StatusCode, m, resp.Header
}

// errStatus is an action that did not end as expected.
type errStatus struct {
	Action string
	Status int
	Answer map[string]any
}

func (e *errStatus) Error() string {
	msg, _ := e.Answer["error"].(string)
	return e.Action + ": status " + strconv.Itoa(e.Status) + ": " + msg
}

// IsStatus reports whether err is an action that ended with status code.
func IsStatus(err error, code int) bool {
	var e *errStatus
	return errors.As(err, &e) && e.Status == code
}
