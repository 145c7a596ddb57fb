// Command chat is a chat room: every text message a client sends is stored
// durably in the room's storage, then sent to every client of the room
// (sender included), in one order for everyone; a client that connects
// first gets the room's last 100 messages, oldest first.
//
//	GET /chat/            a page where two browser tabs can chat
//	GET /chat/ROOM        WebSocket: join room ROOM
//	GET /chat/ROOM/history the last 100 messages, as a JSON array of strings
package main

import (
	_ "embed"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/verge-edge/verge/sdk/go/verge"
)

//go:embed index.html
var page []byte

// historySize is how many messages a room keeps.
const historySize = 100

func init() {
	verge.HandleFunc(func(w verge.ResponseWriter, r *verge.Request) {
		if r.URL.Path != "/chat/" && r.URL.Path != "/chat" {
			w.WriteHeader(404)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(page)
	})
	verge.HandleRoom(verge.RoomHandler{
		OnConnect: func(room *verge.Room, c verge.Conn, _ *verge.Request) {
			for _, m := range history(room) {
				c.SendText(m)
			}
		},
		OnMessage: func(room *verge.Room, c verge.Conn, m verge.Message) {
			if m.Binary {
				return
			}
			seq := count(room) + 1
			// Stored before it is broadcast: the output gate holds the
			// broadcast until these writes are durable.
			if err := room.Put(msgKey(seq), m.Data); err != nil {
				verge.Logf("storing a message: %v", err)
				panic(err) // the message fails; nobody sees it
			}
			room.Put("seq", binary.BigEndian.AppendUint64(nil, seq))
			if seq > historySize {
				room.Delete(msgKey(seq - historySize))
			}
			room.Broadcast(m.Data, false)
		},
		OnRequest: func(room *verge.Room, w verge.ResponseWriter, r *verge.Request) {
			if !strings.HasSuffix(r.URL.Path, "/history") {
				w.WriteHeader(404)
				fmt.Fprintf(w, "try /chat/%s/history, or a WebSocket to /chat/%s\n", room.ID(), room.ID())
				return
			}
			b, _ := json.Marshal(history(room))
			w.Header().Set("Content-Type", "application/json")
			w.Write(b)
		},
	})
}

func msgKey(seq uint64) string { return fmt.Sprintf("m/%016d", seq) }

func count(room *verge.Room) uint64 {
	v, ok, _ := room.Get("seq")
	if !ok || len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// history is the room's last messages, oldest first.
func history(room *verge.Room) []string {
	n := count(room)
	out := []string{}
	for seq := max(1, int64(n)-historySize+1); seq <= int64(n); seq++ {
		if v, ok, _ := room.Get(msgKey(uint64(seq))); ok {
			out = append(out, string(v))
		}
	}
	return out
}

func main() {}
