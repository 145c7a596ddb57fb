;; Answers with 16 bytes from WASI random_get: a real random source must give
;; different bytes every time.
(module
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (import "verge" "http_resp_head" (func $resp (param i32 i32 i32 i32) (result i32)))
  (import "verge" "body_write" (func $write (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "verge_handle") (param $req i32) (param $resp i32) (result i32)
    (drop (call $random (i32.const 0) (i32.const 16)))
    (drop (call $resp (local.get $resp) (i32.const 200) (i32.const 0) (i32.const 0)))
    (drop (call $write (local.get $resp) (i32.const 0) (i32.const 16)))
    (i32.const 0)))
