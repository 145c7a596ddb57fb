package pop

import (
	"net/http"
	"slices"

	"github.com/verge-edge/verge/internal/jsonapi"
)

// netControl serves the emulated network's controls for `verge net`, on
// the admin API (behind its token): the links as this PoP sees them, and
// partitions.
//
//	GET  /v1/net/links                 this PoP's links: up, latency, traffic
//	POST /v1/net/partition?peer=ID     cut the link to ID ("all": every link)
//	POST /v1/net/heal?peer=ID          restore it ("all": every link)
func (p *PoP) netControl() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/net/links", p.links)
	mux.HandleFunc("POST /v1/net/partition", p.linkAction(true))
	mux.HandleFunc("POST /v1/net/heal", p.linkAction(false))
	mux.HandleFunc("/v1/net/links", jsonapi.MethodNotAllowed("GET, HEAD"))
	mux.HandleFunc("/v1/net/partition", jsonapi.MethodNotAllowed("POST"))
	mux.HandleFunc("/v1/net/heal", jsonapi.MethodNotAllowed("POST"))
	mux.HandleFunc("/v1/net/", func(w http.ResponseWriter, r *http.Request) {
		jsonapi.Error(w, http.StatusNotFound, "not_found", "no such endpoint "+r.URL.Path+"; see /v1/net/links, /v1/net/partition and /v1/net/heal")
	})
	return mux
}

func (p *PoP) links(w http.ResponseWriter, r *http.Request) {
	type link struct {
		Peer      string  `json:"peer"`
		Connected bool    `json:"connected"`
		Partition bool    `json:"partitioned"`
		OneWayMs  float64 `json:"one_way_ms"`
		Batches   uint64  `json:"batches_sent"`
		Items     uint64  `json:"items_sent"`
		Bytes     uint64  `json:"bytes_sent"`
		// Unacked: entries of this PoP's log the peer has not
		// acknowledged; null until its watermark is known.
		Unacked *uint64 `json:"unacked"`
	}
	out := struct {
		PoP        string `json:"pop"`
		Repaired   uint64 `json:"repaired_docs"` // merged by anti-entropy
		LogEntries uint64 `json:"log_entries"`   // kept for peers (max_log)
		Links      []link `json:"links"`
	}{PoP: p.opts.Self, Repaired: p.Repl.Repaired(), LogEntries: p.Repl.LogEntries(), Links: []link{}}
	sent := p.Repl.Links()
	type emulated struct {
		down bool
		ms   float64
	}
	status := map[string]emulated{}
	if p.opts.Layer != nil {
		for _, l := range p.opts.Layer.Links() {
			status[l.Peer] = emulated{!l.Up, float64(l.OneWay.Microseconds()) / 1000}
		}
	}
	for _, id := range p.Mesh.Peers() {
		st := status[id]
		s := sent[id]
		l := link{Peer: id, Connected: p.Mesh.Up(id), Partition: st.down, OneWayMs: st.ms,
			Batches: s.Batches, Items: s.Items, Bytes: s.Bytes}
		if s.Known {
			l.Unacked = &s.Unacked
		}
		out.Links = append(out.Links, l)
	}
	jsonapi.WriteValue(w, http.StatusOK, out)
}

// linkAction cuts (partition) or restores the link named by ?peer=: a peer's
// id, or "all". A missing peer is refused: cutting every link is too much
// to do by omission.
func (p *PoP) linkAction(partition bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if p.opts.Layer == nil {
			jsonapi.Error(w, http.StatusConflict, "conflict", "this PoP runs without WAN emulation: there are no links to cut or heal")
			return
		}
		peer := r.URL.Query().Get("peer")
		var err error
		switch {
		case peer == "":
			jsonapi.Error(w, http.StatusBadRequest, "invalid", `missing ?peer=: a peer's id, or "all"`)
			return
		case peer == "all" && partition:
			p.opts.Layer.PartitionAll()
		case peer == "all":
			p.opts.Layer.HealAll()
		case !slices.Contains(p.Mesh.Peers(), peer):
			jsonapi.Error(w, http.StatusNotFound, "not_found", "no such peer "+peer)
			return
		case partition:
			err = p.opts.Layer.Partition(peer)
		default:
			err = p.opts.Layer.Heal(peer)
		}
		if err != nil {
			jsonapi.Error(w, http.StatusInternalServerError, "internal", err.Error())
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}
