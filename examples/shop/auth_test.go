package main

import (
	"strings"
	"testing"
	"time"
)

func TestSessionCookie(t *testing.T) {
	t.Setenv("SHOP_SESSION_KEY", "a test key of more than 16 bytes")
	now := time.Now()
	tok, err := signSession("ada", now)
	if err != nil {
		t.Fatal(err)
	}
	if user, at, ok := verifySession(tok, now.Add(time.Hour)); !ok || user != "ada" || at.UnixMilli() != now.UnixMilli() {
		t.Fatalf("a fresh cookie: %q %v %v", user, at, ok)
	}
	parts := strings.Split(tok, ".")
	bad := map[string]string{
		"another user":     strings.Join([]string{parts[0], "bob", parts[2], parts[3]}, "."),
		"another time":     strings.Join([]string{parts[0], parts[1], "9" + parts[2][1:], parts[3]}, "."),
		"a bad signature":  tok[:len(tok)-1] + map[bool]string{true: "0", false: "1"}[tok[len(tok)-1] != '0'],
		"no signature":     strings.Join(parts[:3], "."),
		"an old session":   tok + ".x",
		"empty":            "",
		"the old format":   "0123456789abcdef0123456789abcdef",
		"a dotted user":    "s1.a.b." + parts[2] + "." + parts[3],
		"an absurd length": strings.Repeat("s", 300),
	}
	for what, tok := range bad {
		if user, _, ok := verifySession(tok, now); ok {
			t.Errorf("%s: accepted as %q", what, user)
		}
	}
	if _, _, ok := verifySession(tok, now.Add(sessionTTL+time.Minute)); ok {
		t.Error("an expired cookie was accepted")
	}
	if _, _, ok := verifySession(tok, now.Add(-2*time.Minute)); ok {
		t.Error("a cookie signed in the future was accepted")
	}
	t.Setenv("SHOP_SESSION_KEY", "another key of more than 16 bytes")
	if _, _, ok := verifySession(tok, now); ok {
		t.Error("a cookie signed with another key was accepted")
	}
	t.Setenv("SHOP_SESSION_KEY", "short")
	if _, err := signSession("ada", now); err == nil {
		t.Error("signed with a key of 5 bytes")
	}
}
