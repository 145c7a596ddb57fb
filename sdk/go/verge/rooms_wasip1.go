//go:build wasip1

package verge

import "unsafe"

//go:wasmimport verge room_id
func hostRoomID(buf unsafe.Pointer, capacity uint32, lenOut unsafe.Pointer) uint32

//go:wasmimport verge room_send
func hostRoomSend(conn uint32, ptr unsafe.Pointer, n uint32, binary uint32) uint32

//go:wasmimport verge room_broadcast
func hostRoomBroadcast(ptr unsafe.Pointer, n uint32, binary uint32, ex unsafe.Pointer, exN uint32, tag unsafe.Pointer, tagLen uint32) uint32

//go:wasmimport verge room_close
func hostRoomClose(conn uint32, code uint32, reason unsafe.Pointer, reasonLen uint32) uint32

//go:wasmimport verge room_conns
func hostRoomConns(tag unsafe.Pointer, tagLen uint32, buf unsafe.Pointer, capacity uint32, lenOut unsafe.Pointer) uint32

//go:wasmimport verge room_set_tags
func hostRoomSetTags(conn uint32, ptr unsafe.Pointer, n uint32) uint32

//go:wasmimport verge room_get
func hostRoomGet(key unsafe.Pointer, keyLen uint32, buf unsafe.Pointer, capacity uint32, lenOut unsafe.Pointer) uint32

//go:wasmimport verge room_put
func hostRoomPut(key unsafe.Pointer, keyLen uint32, val unsafe.Pointer, valLen uint32) uint32

//go:wasmimport verge room_delete
func hostRoomDelete(key unsafe.Pointer, keyLen uint32) uint32

//go:wasmimport verge room_list
func hostRoomList(prefix unsafe.Pointer, prefixLen uint32, after unsafe.Pointer, afterLen uint32, limit uint32, buf unsafe.Pointer, capacity uint32, lenOut unsafe.Pointer) uint32

//go:wasmimport verge room_alarm_set
func hostRoomAlarmSet(name unsafe.Pointer, nameLen uint32, at int64) uint32

//go:wasmimport verge room_alarm_cancel
func hostRoomAlarmCancel(name unsafe.Pointer, nameLen uint32) uint32

//go:wasmimport verge room_alarms
func hostRoomAlarms(buf unsafe.Pointer, capacity uint32, lenOut unsafe.Pointer) uint32

//go:wasmexport verge_room_connect
func vergeRoomConnect(conn uint32) uint32 { return roomConnect(conn) }

//go:wasmexport verge_room_message
func vergeRoomMessage(conn, binary uint32) uint32 { return roomMessage(conn, binary) }

//go:wasmexport verge_room_close
func vergeRoomClose(conn, code uint32) uint32 { return roomClose(conn, code) }

//go:wasmexport verge_room_alarm
func vergeRoomAlarm() uint32 { return roomAlarm() }

//go:wasmexport verge_room_request
func vergeRoomRequest(req, resp uint32) uint32 { return roomRequest(req, resp) }

func b32(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

func sysRoomID(buf []byte) (n uint32, status uint32) {
	status = hostRoomID(ptr(buf), uint32(len(buf)), unsafe.Pointer(&n))
	return n, status
}

func sysRoomSend(conn uint32, data []byte, binary bool) uint32 {
	return hostRoomSend(conn, ptr(data), uint32(len(data)), b32(binary))
}

func sysRoomBroadcast(data []byte, binary bool, ex []byte, exN uint32, tag string) uint32 {
	return hostRoomBroadcast(ptr(data), uint32(len(data)), b32(binary), ptr(ex), exN, sptr(tag), uint32(len(tag)))
}

func sysRoomClose(conn uint32, code int, reason string) uint32 {
	return hostRoomClose(conn, uint32(code), sptr(reason), uint32(len(reason)))
}

func sysRoomConns(tag string, buf []byte) (n uint32, status uint32) {
	status = hostRoomConns(sptr(tag), uint32(len(tag)), ptr(buf), uint32(len(buf)), unsafe.Pointer(&n))
	return n, status
}

func sysRoomSetTags(conn uint32, b []byte) uint32 {
	return hostRoomSetTags(conn, ptr(b), uint32(len(b)))
}

func sysRoomGet(key string, buf []byte) (n uint32, status uint32) {
	status = hostRoomGet(sptr(key), uint32(len(key)), ptr(buf), uint32(len(buf)), unsafe.Pointer(&n))
	return n, status
}

func sysRoomPut(key string, v []byte) uint32 {
	return hostRoomPut(sptr(key), uint32(len(key)), ptr(v), uint32(len(v)))
}

func sysRoomDelete(key string) uint32 { return hostRoomDelete(sptr(key), uint32(len(key))) }

func sysRoomList(prefix, after string, limit int, buf []byte) (n uint32, status uint32) {
	status = hostRoomList(sptr(prefix), uint32(len(prefix)), sptr(after), uint32(len(after)), uint32(limit), ptr(buf), uint32(len(buf)), unsafe.Pointer(&n))
	return n, status
}

func sysRoomAlarmSet(name string, at int64) uint32 {
	return hostRoomAlarmSet(sptr(name), uint32(len(name)), at)
}

func sysRoomAlarmCancel(name string) uint32 {
	return hostRoomAlarmCancel(sptr(name), uint32(len(name)))
}

func sysRoomAlarms(buf []byte) (n uint32, status uint32) {
	status = hostRoomAlarms(ptr(buf), uint32(len(buf)), unsafe.Pointer(&n))
	return n, status
}
