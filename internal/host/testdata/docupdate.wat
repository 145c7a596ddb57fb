;; Applies the request body, as raw JSON operations, to carts/u1 with
;; doc_update and answers the status byte, then the last error: the host's
;; checks of raw bytes without an SDK in between.
(module
  (import "verge" "body_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "verge" "body_write" (func $write (param i32 i32 i32) (result i32)))
  (import "verge" "doc_update" (func $update (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "verge" "last_error" (func $lasterr (param i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 0) "cartsu1")
  (func (export "verge_handle") (param $req i32) (param $resp i32) (result i32)
    (drop (call $read (local.get $req) (i32.const 1024) (i32.const 60000) (i32.const 16)))
    (i32.store8 (i32.const 100)
      (call $update (i32.const 0) (i32.const 5) (i32.const 5) (i32.const 2) (i32.const 1024) (i32.load (i32.const 16))))
    (drop (call $write (local.get $resp) (i32.const 100) (i32.const 1)))
    (drop (call $lasterr (i32.const 200) (i32.const 800) (i32.const 20)))
    (drop (call $write (local.get $resp) (i32.const 200) (i32.load (i32.const 20))))
    (i32.const 0)))
