package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/verge-edge/verge/crdt"
	"github.com/verge-edge/verge/internal/jsonapi"
	"github.com/verge-edge/verge/internal/spot"
)

// The SPOT endpoints (when Options.Spot is set), executed at the central PoP
// with one round trip from an edge PoP:
//
//	POST /v1/apps/{app}/spot/claims/{namespace}/{key}          {"owner": "..."} → 200 claimed / 409 taken
//	POST /v1/apps/{app}/spot/claims/{namespace}/{key}/release  {"owner": "..."} → 200 {"released": bool}
//	POST /v1/apps/{app}/spot/counters/{name}/take              {"n": 1} → 200 / 409 insufficient
//	POST /v1/apps/{app}/spot/counters/{name}/restock           {"n": 10} → 200
//	GET  /v1/apps/{app}/spot/counters/{name}                   → {"remaining": N, "escrowed": E}
//	GET  /v1/apps/{app}/spot/docs/{key}                        → {"doc": {...}, "rev": R}
//	POST /v1/apps/{app}/spot/docs/{key}                        {"rev": R, "ops": [...]} → 200 / 409 conflict
//
// The centre being unreachable is 503 unavailable; a change whose outcome is
// unknown (sent, no answer) is 504 unknown_outcome: read before retrying.
func (h *handler) spotRoutes() {
	const base = "/v1/apps/{app}/spot/"
	h.mux.HandleFunc("POST "+base+"claims/{ns}/{key}", h.claim)
	h.mux.HandleFunc("POST "+base+"claims/{ns}/{key}/release", h.release)
	h.mux.HandleFunc("POST "+base+"counters/{name}/take", h.take)
	h.mux.HandleFunc("POST "+base+"counters/{name}/restock", h.restock)
	h.mux.HandleFunc("GET "+base+"counters/{name}", h.counter)
	h.mux.HandleFunc("GET "+base+"docs/{key}", h.spotDoc)
	h.mux.HandleFunc("POST "+base+"docs/{key}", h.spotUpdate)
	for path, allow := range map[string]string{
		"claims/{ns}/{key}": "POST", "claims/{ns}/{key}/release": "POST",
		"counters/{name}/take": "POST", "counters/{name}/restock": "POST",
		"counters/{name}": "GET, HEAD", "docs/{key}": "GET, HEAD, POST",
	} {
		h.mux.HandleFunc(base+path, jsonapi.MethodNotAllowed(allow))
	}
}

// spotApp checks the app exists here and returns its name.
func (h *handler) spotApp(w http.ResponseWriter, r *http.Request) (string, bool) {
	app := r.PathValue("app")
	if _, err := h.svc.Collections(app); err != nil {
		h.fail(w, r, err)
		return "", false
	}
	return app, true
}

func (h *handler) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	b, ok := h.body(w, r)
	if !ok {
		return false
	}
	// As for documents: refuse what encoding/json would turn into U+FFFD.
	if err := crdt.CheckJSONText(b); err != nil {
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("the body is %v", err))
		return false
	}
	if err := json.Unmarshal(b, v); err != nil {
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("the body is not the expected JSON: %v", err))
		return false
	}
	return true
}

func (h *handler) spotFail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, spot.ErrInvalid):
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
	case errors.Is(err, spot.ErrUnknownOutcome):
		writeError(w, http.StatusGatewayTimeout, "unknown_outcome", err.Error())
	case errors.Is(err, spot.ErrUnavailable):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
	default:
		h.log.Error("admin API: SPOT", "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
	}
}

type ownerBody struct {
	Owner string `json:"owner"`
}

func (h *handler) claim(w http.ResponseWriter, r *http.Request) {
	app, ok := h.spotApp(w, r)
	var body ownerBody
	if !ok || !h.decode(w, r, &body) {
		return
	}
	c, err := h.spot.Claim(r.Context(), app, r.PathValue("ns"), r.PathValue("key"), body.Owner)
	if err != nil {
		h.spotFail(w, r, err)
		return
	}
	status := http.StatusOK
	if !c.Claimed {
		status = http.StatusConflict
	}
	jsonapi.WriteValue(w, status, map[string]any{"claimed": c.Claimed, "owner": c.Owner})
}

func (h *handler) release(w http.ResponseWriter, r *http.Request) {
	app, ok := h.spotApp(w, r)
	var body ownerBody
	if !ok || !h.decode(w, r, &body) {
		return
	}
	done, err := h.spot.Release(r.Context(), app, r.PathValue("ns"), r.PathValue("key"), body.Owner)
	if err != nil {
		h.spotFail(w, r, err)
		return
	}
	jsonapi.WriteValue(w, http.StatusOK, map[string]any{"released": done})
}

type nBody struct {
	N *int64 `json:"n"`
}

func (h *handler) amount(w http.ResponseWriter, r *http.Request) (string, int64, bool) {
	app, ok := h.spotApp(w, r)
	var body nBody
	if !ok || !h.decode(w, r, &body) {
		return "", 0, false
	}
	if body.N == nil {
		writeError(w, http.StatusBadRequest, "invalid", `missing "n": the number of units, > 0`)
		return "", 0, false
	}
	return app, *body.N, true
}

func (h *handler) take(w http.ResponseWriter, r *http.Request) {
	app, n, ok := h.amount(w, r)
	if !ok {
		return
	}
	t, err := h.spot.Take(r.Context(), app, r.PathValue("name"), n)
	if err != nil {
		h.spotFail(w, r, err)
		return
	}
	if !t.OK {
		jsonapi.WriteValue(w, http.StatusConflict, map[string]any{"ok": false, "remaining": t.Remaining, "error": "insufficient stock", "kind": "insufficient"})
		return
	}
	jsonapi.WriteValue(w, http.StatusOK, map[string]any{"ok": true, "remaining": t.Remaining})
}

func (h *handler) restock(w http.ResponseWriter, r *http.Request) {
	app, n, ok := h.amount(w, r)
	if !ok {
		return
	}
	rem, err := h.spot.Restock(r.Context(), app, r.PathValue("name"), n)
	if err != nil {
		h.spotFail(w, r, err)
		return
	}
	jsonapi.WriteValue(w, http.StatusOK, map[string]any{"remaining": rem})
}

func (h *handler) counter(w http.ResponseWriter, r *http.Request) {
	app, ok := h.spotApp(w, r)
	if !ok {
		return
	}
	rem, err := h.spot.Counter(r.Context(), app, r.PathValue("name"))
	if err != nil {
		h.spotFail(w, r, err)
		return
	}
	out := map[string]any{"remaining": rem}
	// The units this PoP holds in escrow are not at the centre: a stock is
	// the centre's remaining plus every PoP's escrow.
	if e, ok := h.spot.(escrower); ok {
		out["escrowed"] = e.Escrowed(app, r.PathValue("name"))
	}
	jsonapi.WriteValue(w, http.StatusOK, out)
}

// escrower is an engine that holds units of stocks in escrow at this PoP
// (package stock).
type escrower interface {
	Escrowed(app, counter string) int64
}

func (h *handler) spotDoc(w http.ResponseWriter, r *http.Request) {
	app, ok := h.spotApp(w, r)
	if !ok {
		return
	}
	doc, rev, err := h.spot.GetDoc(r.Context(), app, r.PathValue("key"))
	if err != nil {
		h.spotFail(w, r, err)
		return
	}
	if doc == nil {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no SPOT document %q; create it with rev 0", r.PathValue("key")))
		return
	}
	jsonapi.WriteValue(w, http.StatusOK, map[string]any{"doc": json.RawMessage(doc), "rev": rev})
}

func (h *handler) spotUpdate(w http.ResponseWriter, r *http.Request) {
	app, ok := h.spotApp(w, r)
	var body struct {
		Rev *uint64   `json:"rev"`
		Ops []crdt.Op `json:"ops"`
	}
	if !ok || !h.decode(w, r, &body) {
		return
	}
	if body.Rev == nil {
		writeError(w, http.StatusBadRequest, "invalid", `missing "rev": the revision the update expects (0: the document must not exist)`)
		return
	}
	doc, rev, err := h.spot.UpdateDoc(r.Context(), app, r.PathValue("key"), *body.Rev, body.Ops)
	var ce *spot.ConflictError
	switch {
	case errors.As(err, &ce):
		jsonapi.WriteValue(w, http.StatusConflict, map[string]any{"error": err.Error(), "kind": "conflict", "rev": ce.Current})
	case err != nil:
		h.spotFail(w, r, err)
	default:
		jsonapi.WriteValue(w, http.StatusOK, map[string]any{"doc": json.RawMessage(doc), "rev": rev})
	}
}
