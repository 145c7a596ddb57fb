// Command counter is a shared counter per room, showing what rooms are
// for: state that many clients change live, kept durably, and alarms that
// act when nobody is there.
//
//	WebSocket /counter/ROOM  send "+1" or "-1"; every client gets "count N" after each change
//	GET  /counter/ROOM       {"count": N, "alarms": {...}}
//	POST /counter/ROOM       adds 1 (plain HTTP into the room)
//
// Two named alarms: "reset" sets the count back to 0 once RESET_AFTER passed
// without a change (it fires even if every client left and every PoP
// restarted meanwhile); "tick" sends connected clients "tick N" every
// TICK_EVERY while anyone is connected.
package main

import (
	"encoding/json"
	"os"
	"strconv"
	"time"

	"github.com/verge-edge/verge/sdk/go/verge"
)

func env(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil && d > 0 {
		return d
	}
	return def
}

func get(room *verge.Room) int64 {
	v, _, _ := room.Get("count")
	n, _ := strconv.ParseInt(string(v), 10, 64)
	return n
}

func add(room *verge.Room, d int64) int64 {
	n := get(room) + d
	room.Put("count", []byte(strconv.FormatInt(n, 10)))
	room.SetAlarm("reset", time.Now().Add(env("RESET_AFTER", time.Minute)))
	room.BroadcastText("count " + strconv.FormatInt(n, 10))
	return n
}

func init() {
	verge.HandleRoom(verge.RoomHandler{
		OnConnect: func(room *verge.Room, c verge.Conn, _ *verge.Request) {
			c.SendText("count " + strconv.FormatInt(get(room), 10))
			if _, ok := mustAlarms(room)["tick"]; !ok {
				room.SetAlarm("tick", time.Now().Add(env("TICK_EVERY", 10*time.Second)))
			}
		},
		OnMessage: func(room *verge.Room, c verge.Conn, m verge.Message) {
			switch m.Text() {
			case "+1":
				add(room, 1)
			case "-1":
				add(room, -1)
			default:
				c.SendText("error: send +1 or -1")
			}
		},
		OnAlarm: func(room *verge.Room, name string) {
			switch name {
			case "reset":
				room.Put("count", []byte("0"))
				room.BroadcastText("count 0")
			case "tick":
				conns, _ := room.Conns("")
				if len(conns) > 0 {
					room.BroadcastText("tick " + strconv.FormatInt(get(room), 10))
					room.SetAlarm("tick", time.Now().Add(env("TICK_EVERY", 10*time.Second)))
				}
			}
		},
		OnRequest: func(room *verge.Room, w verge.ResponseWriter, r *verge.Request) {
			n := get(room)
			if r.Method == "POST" {
				n = add(room, 1)
			}
			al := map[string]int64{}
			for name, at := range mustAlarms(room) {
				al[name] = at.UnixMilli()
			}
			b, _ := json.Marshal(map[string]any{"count": n, "alarms": al})
			w.Header().Set("Content-Type", "application/json")
			w.Write(b)
		},
	})
}

func mustAlarms(room *verge.Room) map[string]time.Time {
	a, _ := room.Alarms()
	return a
}

func main() {}
