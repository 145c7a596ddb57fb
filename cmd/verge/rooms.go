package main

import (
	"flag"
	"fmt"
	"io"
	"net/url"

	"github.com/verge-edge/verge/internal/rooms"
)

func runRooms(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rooms", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := addTargetFlags(fs)
	fn := fs.String("function", "", "the room function (move; default: the app's only room function)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: verge rooms list APP [--net DIR | --to URL --token T]\n"+
			"       verge rooms move APP ROOM POP [--function F] [--net DIR | --to URL --token T]\n\n"+
			"list: every live room of APP: its owner PoP, connections, whether it hibernates.\n"+
			"move: hand ROOM over to POP with its state; its clients are closed with 4001 and reconnect.\n\nflags:")
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return &usageError{"verge rooms list APP | verge rooms move APP ROOM POP"}
	}
	op, err := target.operator()
	if err != nil {
		return err
	}
	switch pos[0] {
	case "list":
		if len(pos) != 2 {
			return &usageError{"usage: verge rooms list APP"}
		}
		var out struct {
			Rooms []rooms.RoomInfo `json:"rooms"`
		}
		if err := op.getJSON("/v1/apps/"+url.PathEscape(pos[1])+"/rooms", &out); err != nil {
			return err
		}
		if len(out.Rooms) == 0 {
			fmt.Fprintf(stdout, "no live rooms in app %s\n", pos[1])
			return nil
		}
		fmt.Fprintf(stdout, "%-12s %-24s %-8s %11s %-11s %s\n", "FUNCTION", "ROOM", "OWNER", "CONNECTIONS", "STATE", "ALARMS")
		for _, r := range out.Rooms {
			state := "live"
			if r.Hibernating {
				state = "hibernating"
			}
			fmt.Fprintf(stdout, "%-12s %-24s %-8s %11d %-11s %d\n", r.Function, r.Room, r.Owner, r.Connections, state, r.Alarms)
		}
		return nil
	case "move":
		if len(pos) != 4 {
			return &usageError{"usage: verge rooms move APP ROOM POP"}
		}
		app, room, to := pos[1], pos[2], pos[3]
		f := *fn
		if f == "" {
			var out struct {
				Rooms []rooms.RoomInfo `json:"rooms"`
			}
			if err := op.getJSON("/v1/apps/"+url.PathEscape(app)+"/rooms", &out); err != nil {
				return err
			}
			for _, r := range out.Rooms {
				if r.Room == room {
					if f != "" && f != r.Function {
						return &usageError{fmt.Sprintf("room %q is live in functions %s and %s: say which with --function", room, f, r.Function)}
					}
					f = r.Function
				}
			}
			if f == "" {
				return fmt.Errorf("room %q of app %s is not live; it starts where its next client connects", room, app)
			}
		}
		path := "/v1/apps/" + url.PathEscape(app) + "/rooms/" + url.PathEscape(f) + "/" + url.PathEscape(room) + "/move"
		if err := op.postJSON("POST", path, map[string]string{"to": to}, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "room %s of %s moved to %s; its clients reconnect there\n", room, app, to)
		return nil
	}
	return &usageError{fmt.Sprintf("verge rooms: unknown command %q; expected list or move", pos[0])}
}
