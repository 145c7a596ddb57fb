package pop

import (
	"encoding/json"
	"net/http"
	"slices"
)

// netControl serves the emulated network's controls on the admin listener,
// for `verge net`: the links as this PoP sees them, and partitions.
//
//	GET  /v1/net/links                 this PoP's links: up, latency, traffic
//	POST /v1/net/partition?peer=ID     cut the link to ID ("all": every link)
//	POST /v1/net/heal?peer=ID          restore it ("all" or absent: every link)
func (p *PoP) netControl(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/net/links", func(w http.ResponseWriter, r *http.Request) {
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
		var status map[string]struct {
			down bool
			ms   float64
		}
		if p.opts.Layer != nil {
			status = map[string]struct {
				down bool
				ms   float64
			}{}
			for _, l := range p.opts.Layer.Links() {
				status[l.Peer] = struct {
					down bool
					ms   float64
				}{!l.Up, float64(l.OneWay.Microseconds()) / 1000}
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
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	})
	act := func(partition bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if p.opts.Layer == nil {
				http.Error(w, `{"error":"this PoP runs without WAN emulation"}`, http.StatusConflict)
				return
			}
			peer := r.URL.Query().Get("peer")
			var err error
			switch {
			case (peer == "all" || peer == "") && partition:
				p.opts.Layer.PartitionAll()
			case peer == "all" || peer == "":
				p.opts.Layer.HealAll()
			case !slices.Contains(p.Mesh.Peers(), peer):
				http.Error(w, `{"error":"no such peer"}`, http.StatusNotFound)
				return
			case partition:
				err = p.opts.Layer.Partition(peer)
			default:
				err = p.opts.Layer.Heal(peer)
			}
			if err != nil {
				http.Error(w, `{"error":`+quote(err.Error())+`}`, http.StatusInternalServerError)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		}
	}
	mux.HandleFunc("POST /v1/net/partition", act(true))
	mux.HandleFunc("POST /v1/net/heal", act(false))
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
