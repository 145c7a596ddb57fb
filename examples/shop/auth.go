package main

import (
	"crypto/rand"
	"encoding/hex"
	"strings"

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

// parseCredentials reads and checks a register or login body.
func parseCredentials(x *reply, r *verge.Request) (credentials, bool) {
	var c credentials
	if err := readJSON(r, &c); err != nil {
		x.fail(400, err.Error())
		return c, false
	}
	c.Username = strings.ToLower(strings.TrimSpace(c.Username))
	switch {
	case len(c.Username) < 3 || len(c.Username) > 32 || !validID(c.Username):
		x.fail(400, "username: 3 to 32 letters, digits, - or _")
	case len(c.Password) < 8 || len(c.Password) > 72:
		// bcrypt reads at most 72 bytes: refuse more rather than ignore them.
		x.fail(400, "password: 8 to 72 bytes")
	default:
		return c, true
	}
	return c, false
}

// register claims the username at the central PoP, the single point of
// truth: one WAN round trip, and the name is the caller's everywhere or
// nobody's. The claim's owner is the account's password hash, so that a
// retry of the same registration (after an answer lost in a failure) is
// recognised as the owner's and succeeds instead of answering "taken".
func register(x *reply, r *verge.Request, _ string) {
	c, ok := parseCredentials(x, r)
	if !ok {
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
// and opens a session at this PoP: no WAN round trip.
func login(x *reply, r *verge.Request, _ string) {
	c, ok := parseCredentials(x, r)
	if !ok {
		return
	}
	var a account
	found, err := accounts.Get(c.Username, &a)
	if err != nil {
		x.hostFailed("reading the account", err)
		return
	}
	hash := dummyHash
	if found {
		hash = []byte(a.Hash)
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(c.Password)) != nil || !found {
		x.fail(401, "wrong username or password")
		return
	}
	var b [16]byte
	rand.Read(b[:])
	sid := hex.EncodeToString(b[:])
	if err := sessions.Put(sid, map[string]string{"user": c.Username, "created": now()}); err != nil {
		x.hostFailed("opening the session", err)
		return
	}
	x.w.Header().Add("Set-Cookie", sessionCookie+"="+sid+"; Path=/; Max-Age=604800; HttpOnly; SameSite=Lax")
	x.json(200, map[string]string{"username": c.Username})
}

func logout(x *reply, r *verge.Request, _ string) {
	if sid := cookie(r, sessionCookie); validSession(sid) {
		if _, err := sessions.Delete(sid); err != nil {
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
// session is a local document: at a PoP other than the one that opened it,
// Verge brings it from there (or from the centre) first.
func session(x *reply, r *verge.Request) (string, bool) {
	sid := cookie(r, sessionCookie)
	if !validSession(sid) {
		x.fail(401, "log in first")
		return "", false
	}
	var s struct {
		User string `json:"user"`
	}
	found, err := sessions.Get(sid, &s)
	switch {
	case err != nil:
		x.hostFailed("reading the session", err)
		return "", false
	case !found || s.User == "":
		x.fail(401, "the session has ended; log in again")
		return "", false
	}
	return s.User, true
}

func validSession(sid string) bool {
	if len(sid) != 32 {
		return false
	}
	_, err := hex.DecodeString(sid)
	return err == nil
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
