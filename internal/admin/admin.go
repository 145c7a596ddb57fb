// Package admin is a PoP's admin HTTP API: JSON in and out, on its own
// listener, for operators and the `verge data` CLI.
//
//	GET    /v1/apps/{app}/collections/{collection}/docs/{key}   the document
//	PUT    /v1/apps/{app}/collections/{collection}/docs/{key}   replace it with the body (a JSON object)
//	POST   /v1/apps/{app}/collections/{collection}/docs/{key}   {"ops": [...]}, applied atomically
//	DELETE /v1/apps/{app}/collections/{collection}/docs/{key}   remove it (204)
//	GET    /v1/apps/{app}/collections/{collection}/docs?after=KEY&limit=N
//	                                                            {"keys": [...], "next": "KEY" or ""}
//
// PUT and POST answer 200 with the document once the write is durable.
// Errors are {"error": "...", "kind": "..."} with kind one of invalid (400),
// unauthorized (401), not_found (404), method_not_allowed (405),
// too_large (413), unavailable (503) and internal (500).
//
// The SPOT endpoints are in spot.go; the PoP mounts the network controls
// and the deploy API (Options.Mount).
//
// The API can read and write every app's documents: it is meant for a
// trusted operator. When it listens beyond loopback it must have a token
// (see CheckListen); with a token, every request, to every endpoint, must
// carry Authorization: Bearer TOKEN.
package admin

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/verge-edge/verge/crdt"
	"github.com/verge-edge/verge/internal/documents"
	"github.com/verge-edge/verge/internal/jsonapi"
	"github.com/verge-edge/verge/internal/spot"
	"github.com/verge-edge/verge/internal/store"
)

// Options configures the handler.
type Options struct {
	// Token, if set, is required as "Authorization: Bearer TOKEN".
	Token string
	// MaxBodyBytes bounds a request body (default: twice documents.DefaultMaxDocBytes).
	MaxBodyBytes int64
	// Logger receives internal errors (default: slog.Default()).
	Logger *slog.Logger
	// Spot, when set, serves the SPOT endpoints (see spot.go).
	Spot spot.Engine
	// Mount, when set, adds the PoP's other operator endpoints (network
	// controls, deploys) to the API, behind the token like everything else.
	Mount func(mux *http.ServeMux)
}

// MaxOps bounds the operations of one POST.
const MaxOps = 10_000

// CheckListen refuses a non-loopback admin address without a token: the API
// reaches every app's data. Host names other than "localhost" count as
// non-loopback, since they may resolve anywhere.
func CheckListen(addr, token string) error {
	if token != "" || IsLoopback(addr) {
		return nil
	}
	return fmt.Errorf("the admin API would listen on %s, beyond loopback, without a token; set --admin-token or VERGE_ADMIN_TOKEN, or listen on 127.0.0.1", addr)
}

// CheckToken refuses a token nobody could send: blank, or holding spaces or
// control characters (an Authorization header cannot carry them intact).
// "" means no token.
func CheckToken(token string) error {
	if token == "" {
		return nil
	}
	for _, c := range token {
		if c <= ' ' || c == 0x7f {
			return fmt.Errorf("the admin token holds a space or a control character (or is blank); use letters, digits and punctuation, e.g. openssl rand -hex 16")
		}
	}
	return nil
}

// IsLoopback reports whether addr (host:port) can only be reached from this machine.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

type handler struct {
	svc     *documents.Service
	token   []byte
	maxBody int64
	log     *slog.Logger
	mux     *http.ServeMux
	spot    spot.Engine
}

// NewHandler returns the admin API over svc.
func NewHandler(svc *documents.Service, opts Options) http.Handler {
	h := &handler{svc: svc, token: []byte(opts.Token), maxBody: opts.MaxBodyBytes, log: opts.Logger, mux: http.NewServeMux(), spot: opts.Spot}
	if h.maxBody <= 0 {
		h.maxBody = 2 * documents.DefaultMaxDocBytes
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	const doc = "/v1/apps/{app}/collections/{collection}/docs/{key}"
	const docs = "/v1/apps/{app}/collections/{collection}/docs"
	h.mux.HandleFunc("GET "+doc, h.get)
	h.mux.HandleFunc("PUT "+doc, h.put)
	h.mux.HandleFunc("POST "+doc, h.update)
	h.mux.HandleFunc("DELETE "+doc, h.delete)
	h.mux.HandleFunc("GET "+docs, h.list)
	h.mux.HandleFunc("GET /v1/apps/{app}/collections", h.collections)
	if h.spot != nil {
		h.spotRoutes()
	}
	if opts.Mount != nil {
		opts.Mount(h.mux)
	}
	// ServeMux answers wrong methods and unknown paths in plain text; these
	// less specific patterns catch them so that every answer is JSON.
	h.mux.HandleFunc(doc, jsonapi.MethodNotAllowed("GET, HEAD, PUT, POST, DELETE"))
	h.mux.HandleFunc(docs, jsonapi.MethodNotAllowed("GET, HEAD"))
	h.mux.HandleFunc("/v1/apps/{app}/collections", jsonapi.MethodNotAllowed("GET, HEAD"))
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no such endpoint %s; see /v1/apps/{app}/collections/{collection}/docs[/{key}]", r.URL.Path))
	})
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if len(h.token) > 0 {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), h.token) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="verge admin"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "missing or wrong admin token; send Authorization: Bearer TOKEN")
			return
		}
	}
	h.mux.ServeHTTP(w, r)
}

func (h *handler) get(w http.ResponseWriter, r *http.Request) {
	app, coll, key := r.PathValue("app"), r.PathValue("collection"), r.PathValue("key")
	doc, found, err := h.svc.Get(app, coll, key)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if !found {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no document %q in collection %q of app %q", key, coll, app))
		return
	}
	writeJSON(w, http.StatusOK, doc)
}

func (h *handler) put(w http.ResponseWriter, r *http.Request) {
	body, ok := h.body(w, r)
	if !ok {
		return
	}
	doc, err := h.svc.Put(r.Context(), r.PathValue("app"), r.PathValue("collection"), r.PathValue("key"), body)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, doc)
}

type updateRequest struct {
	Ops []crdt.Op `json:"ops"`
}

func (h *handler) update(w http.ResponseWriter, r *http.Request) {
	body, ok := h.body(w, r)
	if !ok {
		return
	}
	// encoding/json would replace invalid UTF-8 and lone surrogates by
	// U+FFFD in the paths: check the bytes as sent.
	if err := crdt.CheckJSONText(body); err != nil {
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("the body is %v", err))
		return
	}
	var req updateRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf(`the body is not {"ops": [{"op": ..., "path": ..., "value": ...}, ...]}: %v`, err))
		return
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "invalid", "unexpected data after the JSON body")
		return
	}
	if len(req.Ops) > MaxOps {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("%d operations in one request, the limit is %d", len(req.Ops), MaxOps))
		return
	}
	doc, err := h.svc.Update(r.Context(), r.PathValue("app"), r.PathValue("collection"), r.PathValue("key"), req.Ops)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, doc)
}

func (h *handler) delete(w http.ResponseWriter, r *http.Request) {
	app, coll, key := r.PathValue("app"), r.PathValue("collection"), r.PathValue("key")
	found, err := h.svc.Delete(r.Context(), app, coll, key)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if !found {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no document %q in collection %q of app %q", key, coll, app))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type listResponse struct {
	Keys []string `json:"keys"`
	Next string   `json:"next"`
}

func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 0
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > documents.MaxListLimit {
			writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("limit=%q: want an integer from 1 to %d", s, documents.MaxListLimit))
			return
		}
		limit = n
	}
	keys, next, err := h.svc.List(r.PathValue("app"), r.PathValue("collection"), q.Get("after"), limit)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	b, _ := json.Marshal(listResponse{Keys: keys, Next: next})
	writeJSON(w, http.StatusOK, b)
}

// collections answers the app's collections with their replication scope.
func (h *handler) collections(w http.ResponseWriter, r *http.Request) {
	colls, err := h.svc.Collections(r.PathValue("app"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	type coll struct {
		Name    string   `json:"name"`
		Scope   string   `json:"scope"`
		Regions []string `json:"regions,omitempty"`
	}
	out := struct {
		Collections []coll `json:"collections"`
	}{Collections: []coll{}}
	for _, c := range colls {
		out.Collections = append(out.Collections, coll{c.Name, c.Scope.String(), c.Regions})
	}
	b, _ := json.Marshal(out)
	writeJSON(w, http.StatusOK, b)
}

// body reads a request body of at most maxBody bytes.
func (h *handler) body(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if r.ContentLength > h.maxBody {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the body is %d bytes, the limit is %d", r.ContentLength, h.maxBody))
		return nil, false
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the body exceeds the limit of %d bytes", h.maxBody))
		return nil, false
	case err != nil:
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("reading the body: %v", err))
		return nil, false
	}
	return b, true
}

// fail answers err from the data service with its status and kind.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, documents.ErrUnknownApp), errors.Is(err, documents.ErrUnknownCollection), errors.Is(err, documents.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, documents.ErrInvalid), errors.Is(err, store.ErrInvalidKey):
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
	case errors.Is(err, documents.ErrQuota):
		jsonapi.Write(w, http.StatusInsufficientStorage, jsonapi.ErrorBody{Error: err.Error(), Kind: "quota", Limit: "stored_bytes"}.Encode())
	case errors.Is(err, documents.ErrTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", err.Error())
	case r.Context().Err() != nil && errors.Is(err, r.Context().Err()):
		// The client went away while waiting for the document's lock;
		// nothing was written.
		writeError(w, http.StatusServiceUnavailable, "unavailable", "request canceled before the write was queued; nothing was written")
	case errors.Is(err, store.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the PoP is shutting down; retry")
	default:
		h.log.Error("admin API", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
	}
}

// writeJSON answers with a JSON document, one line.
func writeJSON(w http.ResponseWriter, status int, body []byte) {
	jsonapi.Write(w, status, append(body, '\n'))
}

func writeError(w http.ResponseWriter, status int, kind, msg string) {
	jsonapi.Error(w, status, kind, msg)
}
