package pop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/jsonapi"
	"github.com/verge-edge/verge/internal/rooms"
	"github.com/verge-edge/verge/internal/wasm"
)

// startRooms starts the PoP's rooms service (docs/rooms.md): WebSockets to
// room functions, their leases at the centre, relays between PoPs.
func (p *PoP) startRooms() error {
	var err error
	p.Rooms, err = rooms.New(rooms.Options{Self: p.opts.Self, Network: &p.opts.Network, Mesh: p.Mesh, Store: p.Store,
		Function: p.roomFunction, LeaseTTL: p.opts.RoomLeaseTTL, Logger: p.log})
	if err != nil {
		return err
	}
	if err := p.Rooms.Start(); err != nil {
		return err
	}
	p.rooms0.Store(p.Rooms)
	return nil
}

// roomFunction is the live version of an app's function at this PoP.
func (p *PoP) roomFunction(app, fn string) (*wasm.Function, func(), bool) {
	h := p.apps.byName(app)
	if h == nil || h.app == nil {
		return nil, nil, false
	}
	return h.app.Gateway.Acquire(fn)
}

// roomRoute finds the room function whose routes match path and the room
// id: the path segment after the route's prefix ("" for the prefix
// itself, which the function serves as a plain HTTP function).
func roomRoute(m *verge.Manifest, path string) (verge.Function, string, bool) {
	for _, fn := range m.Functions {
		if fn.Kind != verge.KindRoom {
			continue
		}
		for _, r := range fn.Routes {
			prefix := strings.TrimSuffix(r, "*")
			if rest, ok := strings.CutPrefix(path, prefix); ok {
				room, _, _ := strings.Cut(rest, "/")
				return fn, room, true
			}
		}
	}
	return verge.Function{}, "", false
}

// serveRoom serves a request to a room (a WebSocket, or the room's
// on_request); false: the request is not for a room.
func (p *PoP) serveRoom(h *hosted, w http.ResponseWriter, r *http.Request) bool {
	if p.Rooms == nil || h.app == nil {
		return false
	}
	fn, room, ok := roomRoute(h.full, r.URL.Path)
	if !ok || room == "" {
		return false
	}
	w.Header().Set(VersionHeader, h.Version())
	p.Rooms.ServeHTTP(w, r, rooms.Key{App: h.name, Fn: fn.Name, Room: room}, fn.Room)
	return true
}

// roomsAPI serves the rooms endpoints of the admin API (centre):
//
//	GET  /v1/apps/{app}/rooms                     every live room: owner, connections, hibernating
//	POST /v1/apps/{app}/rooms/{fn}/{room}/move    {"to": POP}: hand the room over with its state
func (p *PoP) roomsAPI(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/apps/{app}/rooms", func(w http.ResponseWriter, r *http.Request) {
		list, err := p.Rooms.List(r.Context(), r.PathValue("app"))
		if err != nil {
			p.roomsFail(w, err)
			return
		}
		if list == nil {
			list = []rooms.RoomInfo{}
		}
		jsonapi.WriteValue(w, http.StatusOK, map[string]any{"app": r.PathValue("app"), "rooms": list})
	})
	mux.HandleFunc("POST /v1/apps/{app}/rooms/{fn}/{room}/move", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			To string `json:"to"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.To == "" {
			jsonapi.Error(w, http.StatusBadRequest, "invalid", `expected {"to": "POP"}`)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		k := rooms.Key{App: r.PathValue("app"), Fn: r.PathValue("fn"), Room: r.PathValue("room")}
		if err := p.Rooms.Move(ctx, k, body.To); err != nil {
			p.roomsFail(w, err)
			return
		}
		jsonapi.WriteValue(w, http.StatusOK, map[string]any{"moved": true, "room": k.Room, "to": body.To})
	})
	mux.HandleFunc("/v1/apps/{app}/rooms", jsonapi.MethodNotAllowed("GET, HEAD"))
	mux.HandleFunc("/v1/apps/{app}/rooms/{fn}/{room}/move", jsonapi.MethodNotAllowed("POST"))
}

func (p *PoP) roomsFail(w http.ResponseWriter, err error) {
	if errors.Is(err, rooms.ErrNotCentral) {
		central, _ := p.opts.Network.Central()
		jsonapi.Error(w, http.StatusMisdirectedRequest, "not_central",
			fmt.Sprintf("rooms are listed and moved at the central PoP %s (admin API %s), not at %s", central.ID, central.Admin, p.opts.Self))
		return
	}
	jsonapi.Error(w, http.StatusBadRequest, "invalid", err.Error())
}
