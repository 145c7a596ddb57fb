package pop

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/verge-edge/verge/internal/bundle"
	"github.com/verge-edge/verge/internal/deploy"
	"github.com/verge-edge/verge/internal/jsonapi"
)

// deployAPI serves the deploy endpoints of the admin API (docs/deploy.md):
//
//	GET    /v1/apps                          what this PoP serves; at the centre, every app and PoP
//	GET    /v1/apps/{app}/versions           the app's versions (centre)
//	PUT    /v1/apps/{app}/versions/{id}      upload a bundle whose content hash is id (centre)
//	POST   /v1/apps/{app}/rollouts           {"version", "canary", "waves", "gate"}: roll out, streaming events (centre)
//	GET    /v1/apps/{app}/rollouts           follow the rollout in progress (centre)
//	POST   /v1/apps/{app}/rollback           {"version"}: make it (default: the previous) current everywhere (centre)
//	DELETE /v1/apps/{app}                    stop serving the app everywhere (centre)
func (p *PoP) deployAPI(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/apps", p.listApps)
	centre := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if p.Deploys == nil {
				central, _ := p.opts.Network.Central()
				jsonapi.Error(w, http.StatusMisdirectedRequest, "not_central",
					fmt.Sprintf("deploys are made at the central PoP %s (admin API %s), not at %s", central.ID, central.Admin, p.opts.Self))
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("GET /v1/apps/{app}/versions", centre(p.versions))
	mux.HandleFunc("PUT /v1/apps/{app}/versions/{id}", centre(p.upload))
	mux.HandleFunc("POST /v1/apps/{app}/rollouts", centre(p.rollout))
	mux.HandleFunc("GET /v1/apps/{app}/rollouts", centre(p.follow))
	mux.HandleFunc("POST /v1/apps/{app}/rollback", centre(p.rollback))
	mux.HandleFunc("DELETE /v1/apps/{app}", centre(p.undeploy))
	for path, allow := range map[string]string{
		"/v1/apps": "GET, HEAD", "/v1/apps/{app}/versions": "GET, HEAD", "/v1/apps/{app}/versions/{id}": "PUT",
		"/v1/apps/{app}/rollouts": "GET, HEAD, POST", "/v1/apps/{app}/rollback": "POST", "/v1/apps/{app}": "DELETE",
	} {
		mux.HandleFunc(path, jsonapi.MethodNotAllowed(allow))
	}
}

// deployFail answers a deploy error with its status.
func deployFail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, deploy.ErrInvalidBundle):
		jsonapi.Error(w, http.StatusBadRequest, "invalid_bundle", err.Error())
	case errors.Is(err, deploy.ErrNoVersion):
		jsonapi.Error(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, deploy.ErrBusy):
		jsonapi.Error(w, http.StatusConflict, "busy", err.Error())
	default:
		jsonapi.Error(w, http.StatusInternalServerError, "internal", err.Error())
	}
}

func (p *PoP) listApps(w http.ResponseWriter, r *http.Request) {
	out := struct {
		PoP     string            `json:"pop"`
		Serving map[string]string `json:"serving"`
		Apps    []deploy.AppView  `json:"apps,omitempty"` // at the centre
	}{PoP: p.opts.Self, Serving: p.Serving()}
	if p.Deploys != nil {
		out.Apps = p.Deploys.Apps()
	}
	jsonapi.WriteValue(w, http.StatusOK, out)
}

func (p *PoP) versions(w http.ResponseWriter, r *http.Request) {
	rec, err := p.Deploys.Versions(r.PathValue("app"))
	if err != nil {
		deployFail(w, err)
		return
	}
	jsonapi.WriteValue(w, http.StatusOK, rec)
}

func (p *PoP) upload(w http.ResponseWriter, r *http.Request) {
	app, id := r.PathValue("app"), r.PathValue("id")
	if !bundle.ValidID(id) {
		jsonapi.Error(w, http.StatusBadRequest, "invalid_bundle", fmt.Sprintf("%q is not a version id: 32 lower-case hex digits, the bundle's content hash", id))
		return
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, bundle.MaxBytes))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		jsonapi.Error(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("a bundle is at most %d bytes", bundle.MaxBytes))
		return
	case err != nil:
		jsonapi.Error(w, http.StatusBadRequest, "invalid_bundle", fmt.Sprintf("the upload was cut short (%v); nothing was stored", err))
		return
	}
	if err := p.Deploys.Upload(r.Context(), app, id, b); err != nil {
		deployFail(w, err)
		return
	}
	jsonapi.WriteValue(w, http.StatusCreated, map[string]any{"app": app, "version": id, "bytes": len(b)})
}

// rolloutRequest is the body of POST /v1/apps/{app}/rollouts.
type rolloutRequest struct {
	Version string `json:"version"`
	Canary  string `json:"canary"`
	Waves   []int  `json:"waves"`
	Gate    string `json:"gate"` // a duration; "" or "0s": no gates
	// Thresholds override the defaults field by field (zero: default).
	Thresholds deploy.Thresholds `json:"thresholds"`
}

func (p *PoP) rollout(w http.ResponseWriter, r *http.Request) {
	var req rolloutRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		jsonapi.Error(w, http.StatusBadRequest, "invalid", fmt.Sprintf(`the body is not {"version": ..., "canary": ..., "waves": [...], "gate": "10s"}: %v`, err))
		return
	}
	plan := deploy.Plan{Canary: req.Canary, Waves: req.Waves, Thresholds: deploy.DefaultThresholds}
	if req.Gate != "" {
		d, err := time.ParseDuration(req.Gate)
		if err != nil || d < 0 || d > time.Hour {
			jsonapi.Error(w, http.StatusBadRequest, "invalid", fmt.Sprintf("gate %q: want a duration from 0s to 1h", req.Gate))
			return
		}
		plan.Gate = d
	}
	t := req.Thresholds
	if t.MinRequests > 0 {
		plan.Thresholds.MinRequests = t.MinRequests
	}
	if t.MaxErrorIncrease > 0 {
		plan.Thresholds.MaxErrorIncrease = t.MaxErrorIncrease
	}
	if t.MaxP99Ratio > 0 {
		plan.Thresholds.MaxP99Ratio = t.MaxP99Ratio
	}
	if t.P99Slack > 0 {
		plan.Thresholds.P99Slack = t.P99Slack
	}
	events, err := p.Deploys.Deploy(r.PathValue("app"), req.Version, plan)
	if err != nil {
		deployFail(w, err)
		return
	}
	stream(w, r, events)
}

func (p *PoP) follow(w http.ResponseWriter, r *http.Request) {
	events, ok := p.Deploys.Subscribe(r.PathValue("app"))
	if !ok {
		jsonapi.Error(w, http.StatusNotFound, "not_found", "no rollout of "+r.PathValue("app")+" is in progress")
		return
	}
	stream(w, r, events)
}

// stream writes events as JSON lines as they come, until the rollout ends.
// A client that goes away stops following; the rollout goes on.
func stream(w http.ResponseWriter, r *http.Request, events <-chan deploy.Event) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	for {
		select {
		case e, ok := <-events:
			if !ok {
				return
			}
			enc.Encode(e)
			rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
			rc.Flush()
		case <-r.Context().Done():
			return
		}
	}
}

func (p *PoP) rollback(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Version string `json:"version"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 4<<10)).Decode(&req); err != nil && err != io.EOF {
		jsonapi.Error(w, http.StatusBadRequest, "invalid", fmt.Sprintf(`the body is not {"version": ...}: %v`, err))
		return
	}
	v, err := p.Deploys.Rollback(r.Context(), r.PathValue("app"), req.Version)
	if err != nil {
		deployFail(w, err)
		return
	}
	jsonapi.WriteValue(w, http.StatusOK, map[string]string{"app": r.PathValue("app"), "current": v})
}

func (p *PoP) undeploy(w http.ResponseWriter, r *http.Request) {
	if err := p.Deploys.Undeploy(r.Context(), r.PathValue("app")); err != nil {
		deployFail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
