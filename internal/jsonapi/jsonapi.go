// Package jsonapi writes the JSON answers of every HTTP API of a PoP: the
// gateway's error responses, the admin API and the network controls. One
// error shape everywhere: {"error": "what went wrong and what to do",
// "kind": "a stable word for programs", ...}.
package jsonapi

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error string `json:"error"`
	Kind  string `json:"kind"`
	// Limit names the limit a request exceeded (the gateway).
	Limit string `json:"limit,omitempty"`
	// RequestID is the gateway's id of the request, also in its
	// X-Verge-Request-Id header.
	RequestID string `json:"request_id,omitempty"`
}

// Encode returns e as one line of JSON.
func (e ErrorBody) Encode() []byte {
	b, _ := json.Marshal(e)
	return append(b, '\n')
}

// Write answers status with a JSON body (which should end in a newline).
func Write(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// WriteValue answers status with v as JSON.
func WriteValue(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	Write(w, status, append(b, '\n'))
}

// Error answers status with {"error": msg, "kind": kind}.
func Error(w http.ResponseWriter, status int, kind, msg string) {
	Write(w, status, ErrorBody{Error: msg, Kind: kind}.Encode())
}

// MethodNotAllowed answers 405 naming the allowed methods, for the
// catch-all patterns of a ServeMux (its own answer is plain text).
func MethodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		Error(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed here; use "+allow)
	}
}
