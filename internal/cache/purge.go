package cache

import (
	"net/url"
	"strings"
	"time"
)

// Purge says what of an app to purge. It is also the JSON body of the
// admin API's purge endpoint: {"keys": [...]}, {"urls": [...]} or
// {"all": true}, with "soft": true to mark stale instead of removing.
type Purge struct {
	// Keys are Surrogate-Key values: every response tagged with one goes.
	Keys []string `json:"keys,omitempty"`
	// URLs are absolute ("https://shop.example.com/p/1?x=2", the scheme is
	// ignored) or a path with its query ("/p/1?x=2", under every host of
	// the app). Every variant of the URL goes.
	URLs []string `json:"urls,omitempty"`
	// All purges every entry of the app.
	All bool `json:"all,omitempty"`
	// Soft marks the entries stale instead of removing them: they are
	// revalidated before their next use, and may still be served under
	// stale-while-revalidate and stale-if-error.
	Soft bool `json:"soft,omitempty"`
}

// Purge purges what p says of app's entries and returns how many it
// purged. Origin requests under way for the app when it is called are
// given to the requests already waiting for them but not stored, since
// they may carry what was purged.
func (c *Cache) Purge(app string, p Purge) int {
	now := c.now()
	c.mu.Lock()
	defer c.unlock()
	for fk, f := range c.flights {
		if f.app == app {
			delete(c.flights, fk)
			f.detached = true
		}
	}
	c.forgetPassesLocked(app)
	a := c.apps[app]
	if a == nil {
		return 0
	}
	victims := map[*entry]struct{}{}
	addSlot := func(primary string) {
		if s := a.slots[primary]; s != nil {
			for _, e := range s.variants {
				victims[e] = struct{}{}
			}
		}
	}
	if p.All {
		for primary := range a.slots {
			addSlot(primary)
		}
	}
	for _, k := range p.Keys {
		for e := range a.tags[k] {
			victims[e] = struct{}{}
		}
	}
	for _, u := range p.URLs {
		primary, path := purgeKey(u)
		if primary != "" {
			addSlot(primary)
			continue
		}
		for primary := range a.byPath[path] {
			addSlot(primary)
		}
	}
	for e := range victims {
		c.purgeLocked(e, p.Soft, now)
	}
	return len(victims)
}

// purgeLocked removes e, or with soft marks it stale from now on.
func (c *Cache) purgeLocked(e *entry, soft bool, now time.Time) {
	if !soft {
		c.removeLocked(e)
		return
	}
	if age := e.age(now); e.purgedAge < 0 || age < e.purgedAge {
		e.purgedAge = age
	}
	if e.disk != nil {
		// The file does not record the purge, and a restart would find it
		// fresh: drop the disk copy (and the entry, if it has no other).
		if e.body == nil {
			c.removeLocked(e)
			return
		}
		c.disk.forgetLocked(e)
	}
}

// purgeKey is the primary key of an absolute URL, or the path?query of a
// path (primary "").
func purgeKey(s string) (primary, path string) {
	if strings.HasPrefix(s, "/") {
		return "", s
	}
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "", s // matches nothing
	}
	return string(appendHostKey(nil, u.Host)) + pathOfURL(u), ""
}
