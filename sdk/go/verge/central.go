package verge

import (
	"errors"
)

// The central PoP is the single point of truth of an app, for the few
// operations that cannot be done at one PoP alone: claiming a unique name,
// taking from a bounded stock, updating a document under a revision check.
// Each call is one round trip to the centre, so from an edge PoP it costs a
// WAN latency; a `central` function (it runs at the centre) pays none, and
// Invoke runs one from an edge in one round trip.
//
//	ok, left, err := verge.Take("tickets:gig-42", 2)
//	switch {
//	case errors.Is(err, verge.ErrUnavailable): // try again later
//	case !ok: // sold out: only `left` remain
//	}
//
// Errors match ErrUnavailable when the centre could not be reached in time,
// and also ErrUnknownOutcome when the request was sent and no answer came
// (the change may have been applied: read before retrying it). They carry
// the host's explanation for bad arguments (a HostError).

// Claim makes owner the owner of key in namespace ns unless someone else
// owns it: claimed reports whether owner owns it now, and current is the
// owner either way. Claiming a key one already owns succeeds again, so a
// claim is safe to retry.
func Claim(ns, key, owner string) (claimed bool, current string, err error) {
	buf := make([]byte, 256)
	for i := 0; i < 3; i++ {
		n, st := sysSpotClaim(ns, key, owner, buf)
		switch st {
		case statusOK, statusConflict:
			return st == statusOK, string(buf[:n]), nil
		case statusTooSmall:
			buf = make([]byte, n)
			continue
		}
		return false, "", explained("spot_claim", st)
	}
	return false, "", errors.New("verge: spot_claim: the host kept answering that the buffer is too small")
}

// Release frees key in namespace ns if owner owns it, and reports whether it did.
func Release(ns, key, owner string) (released bool, err error) {
	switch st := sysSpotRelease(ns, key, owner); st {
	case statusOK:
		return true, nil
	case statusNotFound:
		return false, nil
	default:
		return false, explained("spot_release", st)
	}
}

// Take removes n (> 0) from the stock counter unless fewer than n remain:
// ok reports whether it did, remaining is the stock after the call either
// way. A stock never goes below zero.
func Take(counter string, n int64) (ok bool, remaining int64, err error) {
	remaining, st := sysSpotTake(counter, n)
	switch st {
	case statusOK:
		return true, remaining, nil
	case statusConflict:
		return false, remaining, nil
	default:
		return false, 0, explained("spot_take", st)
	}
}

// Restock adds n (> 0) to the stock counter and returns what remains.
func Restock(counter string, n int64) (remaining int64, err error) {
	remaining, st := sysSpotRestock(counter, n)
	if st != statusOK {
		return 0, explained("spot_restock", st)
	}
	return remaining, nil
}

// Stock returns what remains of the stock counter; 0 if it was never restocked.
func Stock(counter string) (remaining int64, err error) {
	remaining, st := sysSpotCounter(counter)
	if st != statusOK {
		return 0, explained("spot_counter", st)
	}
	return remaining, nil
}

// CentralDoc returns the central document key as JSON and its revision,
// or (nil, 0, nil) when it does not exist. Central documents are the app's
// strongly consistent documents, kept at the central PoP; unlike the
// documents of a Collection, every change is checked against a revision.
func CentralDoc(key string) (doc []byte, rev uint64, err error) {
	buf := make([]byte, 1024)
	for i := 0; i < 4; i++ { // the document may grow between calls
		n, rev, st := sysSpotDocGet(key, buf)
		switch st {
		case statusOK:
			return buf[:n], rev, nil
		case statusNotFound:
			return nil, 0, nil
		case statusTooSmall:
			buf = make([]byte, n)
			continue
		}
		return nil, 0, explained("spot_doc_get", st)
	}
	return nil, 0, errors.New("verge: spot_doc_get: the document kept growing while being read")
}

// UpdateCentralDoc applies ops atomically to the central document key if it
// is still at revision rev (0: it must not exist yet, and is created) and
// returns the new document and its revision. When the document moved, it
// changes nothing and returns an error matching ErrConflict, with newRev the
// document's revision now: read it again and retry. ErrNotFound means the
// document does not exist (create it with revision 0).
//
//	for {
//		doc, rev, err := verge.CentralDoc("config")
//		// ... decide the ops from doc ...
//		_, _, err = verge.UpdateCentralDoc("config", rev, verge.Set("mode", "on"))
//		if !errors.Is(err, verge.ErrConflict) {
//			break
//		}
//	}
func UpdateCentralDoc(key string, rev uint64, ops ...Op) (doc []byte, newRev uint64, err error) {
	b, err := appendOps(nil, ops)
	if err != nil {
		return nil, 0, err
	}
	buf := make([]byte, 1024)
	// After a too-small answer the host keeps the result for the same call:
	// calling again does not apply the operations twice.
	for i := 0; i < 3; i++ {
		n, newRev, st := sysSpotDocUpdate(key, rev, b, buf)
		switch st {
		case statusOK:
			return buf[:n], newRev, nil
		case statusTooSmall:
			buf = make([]byte, n)
			continue
		case statusConflict:
			return nil, newRev, explained("spot_doc_update", st)
		}
		return nil, 0, explained("spot_doc_update", st)
	}
	return nil, 0, errors.New("verge: spot_doc_update: the host kept answering that the buffer is too small")
}

// Invoke runs the app's central function fn with a request (method, path
// with an optional query, body) and returns its HTTP status and response
// body. From an edge PoP it is one round trip to the centre. A failure of
// the function itself (a trap, a limit) is a response, with the same status
// and JSON error body an HTTP client would get; err is for the invocation:
// ErrNotFound (no central function fn), ErrUnavailable (the centre could not
// be reached in time), ErrUnknownOutcome (no answer in time: fn may have
// run; it also matches ErrUnavailable), ErrLimit (the response exceeds this function's
// limits.response_body).
func Invoke(fn, method, path string, body []byte) (status int, resp []byte, err error) {
	buf := make([]byte, 4096)
	// After a too-small answer the host keeps the response for the same
	// call: calling again does not run the function twice.
	for i := 0; i < 3; i++ {
		n, code, st := sysInvoke(fn, method, path, body, buf)
		switch st {
		case statusOK:
			return int(code), buf[:n], nil
		case statusTooSmall:
			buf = make([]byte, n)
			continue
		}
		return 0, nil, explained("invoke", st)
	}
	return 0, nil, errors.New("verge: invoke: the host kept answering that the buffer is too small")
}
