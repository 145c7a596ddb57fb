package cache

import (
	"net/http"
	"testing"
	"time"
)

func TestParseCacheControl(t *testing.T) {
	d := parseCacheControl([]string{`Max-Age=60, s-maxage="30", private="Set-Cookie, X-A", no-cache`, "stale-while-revalidate=5,stale-if-error=7, max-age=1"})
	if d.maxAge != 60*time.Second || d.sMaxAge != 30*time.Second || !d.private || !d.noCache ||
		d.staleWhileRevalidate != 5*time.Second || d.staleIfError != 7*time.Second {
		t.Fatalf("%+v", d)
	}
	for in, want := range map[string]time.Duration{
		"max-age=abc":          0, // malformed: stale
		"max-age":              0,
		"max-age=-5":           0,
		"max-age=99999999999":  maxDelta * time.Second,
		"max-age=3, max-age=4": 3 * time.Second, // the first wins
		"no-store":             -1,
	} {
		if got := parseCacheControl([]string{in}).maxAge; got != want {
			t.Errorf("%q: max-age %v, want %v", in, got, want)
		}
	}
	if d := parseCacheControl([]string{"max-stale"}); !d.maxStaleAny {
		t.Error("max-stale without a value means any staleness")
	}
	if d := requestDirectives(http.Header{"Pragma": {"no-cache"}}); !d.noCache {
		t.Error("Pragma: no-cache")
	}
	if d := requestDirectives(http.Header{"Pragma": {"no-cache"}, "Cache-Control": {"max-age=5"}}); d.noCache {
		t.Error("Pragma is ignored when Cache-Control is present")
	}
}

func TestFreshnessLifetime(t *testing.T) {
	date := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			out.Add(kv[i], kv[i+1])
		}
		return out
	}
	cases := []struct {
		code int
		h    http.Header
		want time.Duration
	}{
		{200, h("Cache-Control", "max-age=10, s-maxage=20"), 20 * time.Second},
		{200, h("Cache-Control", "max-age=10", "Expires", date.Add(time.Hour).Format(http.TimeFormat)), 10 * time.Second},
		{200, h("Expires", date.Add(time.Hour).Format(http.TimeFormat)), time.Hour},
		{200, h("Expires", date.Add(-time.Hour).Format(http.TimeFormat)), 0},
		{200, h("Expires", "garbage"), 0},
		{200, h("Last-Modified", date.Add(-10*time.Hour).Format(http.TimeFormat)), time.Hour},
		{200, h("Last-Modified", date.Add(-1000*time.Hour).Format(http.TimeFormat)), 24 * time.Hour}, // capped
		{404, h("Last-Modified", date.Add(-10*time.Hour).Format(http.TimeFormat)), time.Hour},
		{302, h("Last-Modified", date.Add(-10*time.Hour).Format(http.TimeFormat)), 0},
		{200, h(), 0},
	}
	for i, c := range cases {
		cc := parseCacheControl(c.h.Values("Cache-Control"))
		if got := freshnessLifetime(c.code, c.h, cc, date, 24*time.Hour); got != c.want {
			t.Errorf("case %d: %v, want %v", i, got, c.want)
		}
	}
}

func TestInitialAge(t *testing.T) {
	date := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	req, resp := date.Add(time.Second), date.Add(3*time.Second)
	// apparent age 3 s; corrected Age 10 + 2 s of the exchange = 12 s
	if got := initialAge(http.Header{"Age": {"10"}}, date, req, resp); got != 12*time.Second {
		t.Fatalf("%v", got)
	}
	// A Date in the future counts as no age.
	if got := initialAge(http.Header{}, date.Add(time.Hour), resp, resp); got != 0 {
		t.Fatalf("%v", got)
	}
}

func TestNotModified(t *testing.T) {
	lm := "Wed, 01 Jan 2030 00:00:00 GMT"
	for _, c := range []struct {
		h    http.Header
		want bool
	}{
		{http.Header{"If-None-Match": {`"a"`}}, true},
		{http.Header{"If-None-Match": {`W/"a"`}}, true}, // weak comparison
		{http.Header{"If-None-Match": {`"b", "a"`}}, true},
		{http.Header{"If-None-Match": {"*"}}, true},
		{http.Header{"If-None-Match": {`"b"`}, "If-Modified-Since": {lm}}, false}, // INM wins
		{http.Header{"If-Modified-Since": {lm}}, true},
		{http.Header{"If-Modified-Since": {"Tue, 31 Dec 2029 00:00:00 GMT"}}, false},
		{http.Header{"If-Modified-Since": {"garbage"}}, false},
		{http.Header{}, false},
	} {
		if got := notModified(c.h, `"a"`, lm); got != c.want {
			t.Errorf("%v: %v, want %v", c.h, got, c.want)
		}
	}
	if etagsMatch("a", "a") {
		t.Error("unquoted tags are not entity tags")
	}
}

func TestVaryValue(t *testing.T) {
	if varyValue(http.Header{"Accept": {"a, b", "c"}}, "Accept") != "a,b,c" {
		t.Error("lines and spaces")
	}
	if varyValue(http.Header{}, "Accept") == varyValue(http.Header{"Accept": {""}}, "Accept") {
		t.Error("absent and empty must differ")
	}
	if got := varyFields(http.Header{"Vary": {"accept-encoding, Accept-Encoding", "cookie"}}); len(got) != 2 || got[0] != "Accept-Encoding" || got[1] != "Cookie" {
		t.Errorf("%v", got)
	}
}

func TestStoredHeaderDropsConnectionFields(t *testing.T) {
	h := storedHeader(http.Header{"Connection": {"X-Hop"}, "X-Hop": {"1"}, "Keep-Alive": {"5"}, "Age": {"3"}, "X-Keep": {"k"}}, nil)
	if len(h) != 1 || h.Get("X-Keep") != "k" || h.Get("Connection") != "" {
		t.Fatalf("%v", h)
	}
}
