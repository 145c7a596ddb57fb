;; Calls every host function with pointers and lengths outside its memory
;; (one 64 KiB page) and answers with the status codes it got back, one byte
;; each, so the test can assert them exactly. Valid calls frame the wild
;; ones to show the host is still consistent afterwards.
(module
  (import "verge" "log" (func $log (param i32 i32 i32) (result i32)))
  (import "verge" "http_req_head" (func $head (param i32 i32 i32 i32) (result i32)))
  (import "verge" "body_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "verge" "http_resp_head" (func $resp (param i32 i32 i32 i32) (result i32)))
  (import "verge" "body_write" (func $write (param i32 i32 i32) (result i32)))
  (import "verge" "last_error" (func $lasterr (param i32 i32 i32) (result i32)))
  (import "verge" "doc_get" (func $docget (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "verge" "doc_update" (func $docupdate (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "verge" "doc_delete" (func $docdelete (param i32 i32 i32 i32) (result i32)))
  (import "verge" "http_resp" (func $respall (param i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $n (mut i32) (i32.const 1024))
  ;; record appends a status byte at 1024..
  (func $record (param i32)
    (i32.store8 (global.get $n) (local.get 0))
    (global.set $n (i32.add (global.get $n) (i32.const 1))))
  (func (export "verge_handle") (param $req i32) (param $resp i32) (result i32)
    ;; log: message past the end; length wrapping around; bad level
    (call $record (call $log (i32.const 1) (i32.const 65530) (i32.const 100)))
    (call $record (call $log (i32.const 1) (i32.const 16) (i32.const -1)))
    (call $record (call $log (i32.const 9) (i32.const 0) (i32.const 0)))
    ;; http_req_head: buffer past the end; len_out past the end; bad handle
    (call $record (call $head (local.get $req) (i32.const 65000) (i32.const 4096) (i32.const 0)))
    (call $record (call $head (local.get $req) (i32.const 0) (i32.const 16) (i32.const 65534)))
    (call $record (call $head (i32.const 77) (i32.const 0) (i32.const 16) (i32.const 0)))
    ;; body_read: buffer beyond memory, huge capacity
    (call $record (call $read (local.get $req) (i32.const 2048) (i32.const -2) (i32.const 0)))
    ;; http_resp_head: headers past the end; malformed header block; bad status
    (call $record (call $resp (local.get $resp) (i32.const 200) (i32.const 65535) (i32.const 8)))
    (call $record (call $resp (local.get $resp) (i32.const 200) (i32.const 16) (i32.const 3)))
    (call $record (call $resp (local.get $resp) (i32.const 42) (i32.const 0) (i32.const 0)))
    ;; body_write: past the end; the request handle
    (call $record (call $write (local.get $resp) (i32.const 65535) (i32.const 2)))
    (call $record (call $write (local.get $req) (i32.const 0) (i32.const 1)))
    ;; documents: collection, operations, key past the end; last_error's buffer
    (call $record (call $docget (i32.const 65530) (i32.const 100) (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 16) (i32.const 0)))
    (call $record (call $docupdate (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 65535) (i32.const 10)))
    (call $record (call $docdelete (i32.const 0) (i32.const 1) (i32.const 70000) (i32.const 1)))
    (call $record (call $lasterr (i32.const 65535) (i32.const 16) (i32.const 0)))
    ;; http_resp: headers past the end; body wrapping around; bad status;
    ;; malformed header block; the request handle
    (call $record (call $respall (local.get $resp) (i32.const 200) (i32.const 65535) (i32.const 8) (i32.const 0) (i32.const 0)))
    (call $record (call $respall (local.get $resp) (i32.const 200) (i32.const 0) (i32.const 0) (i32.const 16) (i32.const -1)))
    (call $record (call $respall (local.get $resp) (i32.const 42) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)))
    (call $record (call $respall (local.get $resp) (i32.const 200) (i32.const 16) (i32.const 3) (i32.const 0) (i32.const 0)))
    (call $record (call $respall (local.get $req) (i32.const 200) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)))
    ;; and a valid answer: status 200, no headers, the recorded bytes
    (call $record (call $resp (local.get $resp) (i32.const 200) (i32.const 0) (i32.const 0)))
    (drop (call $write (local.get $resp) (i32.const 1024) (i32.sub (global.get $n) (i32.const 1024))))
    (global.set $n (i32.const 1024))
    (i32.const 0)))
