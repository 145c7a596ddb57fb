package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/verge-edge/verge/sdk/go/verge"
)

// Passwords are stored as bcrypt hashes (cost 10, salted): about 150 ms of
// CPU in a guest, which is why register and login are their own function
// with their own limits in verge.toml. RATIONALE.md has the measurements.
const bcryptCost = 10

const sessionCookie = "shop_session"

// account is a user as stored in the global accounts collection.
type account struct {
	Hash    string `json:"hash"`
	Created string `json:"created"`
}

type credentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// readCredentials reads a register or login body.
func readCredentials(x *reply, r *verge.Request) (credentials, bool) {
	var c credentials
	if err := readJSON(r, &c); err != nil {
		x.fail(400, err.Error())
		return c, false
	}
	c.Username = strings.ToLower(strings.TrimSpace(c.Username))
	return c, true
}

// credentialsRule is what a registration's credentials break ("" none).
// Login does not apply it: credentials that break it match no account, and
// the answer is the same 401 as for any other wrong pair.
func credentialsRule(c credentials) string {
	switch {
	case len(c.Username) < 3 || len(c.Username) > 32 || !validID(c.Username):
		return "username: 3 to 32 letters, digits, - or _"
	case len(c.Password) < 8 || len(c.Password) > 72:
		// bcrypt reads at most 72 bytes: refuse more rather than ignore them.
		return "password: 8 to 72 bytes"
	}
	return ""
}

// register claims the username at the central PoP, the single point of
// truth: one WAN round trip, and the name is the caller's everywhere or
// nobody's. The claim's owner is the account's password hash, so that a
// retry of the same registration (after an answer lost in a failure) is
// recognised as the owner's and succeeds instead of answering "taken".
func register(x *reply, r *verge.Request, _ string) {
	c, ok := readCredentials(x, r)
	if !ok {
		return
	}
	if why := credentialsRule(c); why != "" {
		x.fail(400, why)
		return
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(c.Password), bcryptCost)
	if err != nil {
		x.fail(500, "hashing the password: "+err.Error())
		return
	}
	var claimed bool
	var owner string
	x.atCentre(func() { claimed, owner, err = verge.Claim("users", c.Username, string(hash)) })
	if err != nil {
		x.hostFailed("claiming the username", err)
		return
	}
	if !claimed {
		if bcrypt.CompareHashAndPassword([]byte(owner), []byte(c.Password)) != nil {
			x.fail(409, "the username "+c.Username+" is taken")
			return
		}
		hash = []byte(owner) // an earlier attempt of this registration won
	}
	if err := accounts.Put(c.Username, account{Hash: string(hash), Created: now()}); err != nil {
		x.hostFailed("storing the account", err)
		return
	}
	x.json(201, map[string]string{"username": c.Username})
}

// dummyHash (of a password nobody has, at bcryptCost) is compared against
// when the user does not exist, so that a failed login takes as long either
// way and does not reveal which names exist. A constant: hashing it in every
// instance's initialisation would cost each one 150 ms.
var dummyHash = []byte("$2a$10$fwL/00tfcKPWCdPSOpiUPuhFMpUPMhiq1uBUNJl8jf5HStznBVZf2")

// login checks the password against the account, which every PoP holds,
// and answers a session cookie signed with SHOP_SESSION_KEY: no WAN round
// trip and no write. Any PoP verifies the cookie without reading anything
// the opening PoP wrote, so a session survives its PoP's crash, the moment
// after it was opened included (RATIONALE.md, "Signed sessions").
func login(x *reply, r *verge.Request, _ string) {
	c, ok := readCredentials(x, r)
	if !ok {
		return
	}
	var a account
	found := false
	if credentialsRule(c) == "" {
		var err error
		if found, err = accounts.Get(c.Username, &a); err != nil {
			x.hostFailed("reading the account", err)
			return
		}
	}
	hash := dummyHash
	if found {
		hash = []byte(a.Hash)
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(c.Password)) != nil || !found {
		x.fail(401, "wrong username or password")
		return
	}
	tok, err := signSession(c.Username, time.Now())
	if err != nil {
		x.fail(500, err.Error())
		return
	}
	x.w.Header().Add("Set-Cookie", sessionCookie+"="+tok+"; Path=/; Max-Age="+strconv.Itoa(int(sessionTTL/time.Second))+"; HttpOnly; SameSite=Lax")
	x.json(200, map[string]string{"username": c.Username})
}

// logout ends every session of the user opened until now: the account (a
// global document, at every PoP within a replication delay) records when,
// and a cookie signed before is refused wherever the record has arrived.
func logout(x *reply, r *verge.Request, _ string) {
	if user, _, ok := verifySession(cookie(r, sessionCookie), time.Now()); ok {
		if err := accounts.Update(user, verge.Set("logout", time.Now().UnixMilli())); err != nil {
			x.hostFailed("closing the session", err)
			return
		}
	}
	x.w.Header().Add("Set-Cookie", sessionCookie+"=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax")
	x.json(200, map[string]bool{"ok": true})
}

func me(x *reply, r *verge.Request, _ string) {
	if user, ok := session(x, r); ok {
		x.json(200, map[string]string{"username": user})
	}
}

// session returns the user of the request's session, or answers 401. The
// cookie carries the user, when it was signed and the signature; checking
// it reads the user's account (global: local at every PoP) for a logout
// since, and nothing else: no WAN round trip, whichever PoP answers.
func session(x *reply, r *verge.Request) (string, bool) {
	user, at, ok := verifySession(cookie(r, sessionCookie), time.Now())
	if !ok {
		x.fail(401, "log in first")
		return "", false
	}
	var a struct {
		Logout int64 `json:"logout"`
	}
	// An account this PoP does not hold yet (registered moments ago
	// elsewhere) has no logout to check.
	if _, err := accounts.Get(user, &a); err != nil {
		x.hostFailed("reading the account", err)
		return "", false
	}
	if a.Logout > at.UnixMilli() {
		x.fail(401, "the session has ended; log in again")
		return "", false
	}
	return user, true
}

// sessionTTL is how long a session cookie is good for.
const sessionTTL = 7 * 24 * time.Hour

// A session cookie is "s1.<user>.<unix ms signed>.<HMAC-SHA256 of the
// rest, hex>", under the key SHOP_SESSION_KEY (the app's env in
// verge.toml). Usernames are [a-z0-9_-], so the dots split it unambiguously.
func signSession(user string, at time.Time) (string, error) {
	key := os.Getenv("SHOP_SESSION_KEY")
	if len(key) < 16 {
		return "", errors.New("SHOP_SESSION_KEY (verge.toml env) must be set to at least 16 bytes")
	}
	body := "s1." + user + "." + strconv.FormatInt(at.UnixMilli(), 10)
	return body + "." + sessionMAC(key, body), nil
}

func sessionMAC(key, body string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(body))
	return hex.EncodeToString(m.Sum(nil))
}

// verifySession returns the user and signing time of a valid, unexpired
// session cookie.
func verifySession(tok string, now time.Time) (user string, at time.Time, ok bool) {
	key := os.Getenv("SHOP_SESSION_KEY")
	if len(key) < 16 || len(tok) > 200 {
		return "", time.Time{}, false
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 4 || parts[0] != "s1" || !validID(parts[1]) {
		return "", time.Time{}, false
	}
	signed := strings.Join(parts[:3], ".")
	if !hmac.Equal([]byte(sessionMAC(key, signed)), []byte(parts[3])) {
		return "", time.Time{}, false
	}
	ms, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return "", time.Time{}, false
	}
	at = time.UnixMilli(ms)
	// A little slack for clocks between PoPs.
	if at.After(now.Add(time.Minute)) || now.Sub(at) > sessionTTL {
		return "", time.Time{}, false
	}
	return parts[1], at, true
}

// cookie returns the value of the named cookie of the request.
func cookie(r *verge.Request, name string) string {
	for _, line := range r.Header["Cookie"] {
		for part := range strings.SplitSeq(line, ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
			if k == name {
				return v
			}
		}
	}
	return ""
}
