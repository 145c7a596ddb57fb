// Command roomguest is a room function for the rooms' fault tests.
//
//	"put K V"        store K=V, then broadcast "ok K"
//	"put-panic K V"  store K=V, then panic (the write must not survive)
//	"get K"          answer the value of K ("-" if unset)
//	"panic"          panic in on_message
//	"exit"           exit the instance (a trap: the instance is gone)
//	"loop"           loop until the CPU limit stops it
//	"alarm N MS"     set alarm N to fire in MS milliseconds
//	anything else    broadcast it
package main

import (
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/verge-edge/verge/sdk/go/verge"
)

var spin int

func init() {
	verge.HandleRoom(verge.RoomHandler{
		OnConnect: func(room *verge.Room, c verge.Conn, _ *verge.Request) {
			c.SendText("hi " + strconv.Itoa(int(c.ID)))
		},
		OnMessage: func(room *verge.Room, c verge.Conn, m verge.Message) {
			f := strings.Fields(m.Text())
			switch {
			case len(f) == 3 && f[0] == "put":
				room.Put(f[1], []byte(f[2]))
				room.BroadcastText("ok " + f[1])
			case len(f) == 3 && f[0] == "put-panic":
				room.Put(f[1], []byte(f[2]))
				c.SendText("this must not leave")
				panic("after a write")
			case len(f) == 2 && f[0] == "get":
				v, ok, _ := room.Get(f[1])
				if !ok {
					v = []byte("-")
				}
				c.SendText("value " + f[1] + " " + string(v))
			case m.Text() == "panic":
				panic("asked to")
			case m.Text() == "exit":
				os.Exit(3)
			case m.Text() == "loop":
				for {
					spin++
				}
			case len(f) == 3 && f[0] == "alarm":
				ms, _ := strconv.Atoi(f[2])
				room.SetAlarm(f[1], time.Now().Add(time.Duration(ms)*time.Millisecond))
				c.SendText("set " + f[1])
			default:
				room.Broadcast(m.Data, m.Binary)
			}
		},
		OnAlarm: func(room *verge.Room, name string) {
			room.Put("fired/"+name, []byte("1"))
			room.BroadcastText("alarm " + name)
		},
		OnRequest: func(room *verge.Room, w verge.ResponseWriter, r *verge.Request) {
			key := r.URL.Query().Get("key")
			v, ok, _ := room.Get(key)
			if !ok {
				w.WriteHeader(404)
				return
			}
			w.Write(v)
		},
	})
}

func main() {}
