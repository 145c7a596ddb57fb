;; Answers with its environment as WASI presents it: the NUL-separated
;; "KEY=VALUE" strings from environ_get.
(module
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $get (param i32 i32) (result i32)))
  (import "verge" "http_resp_head" (func $resp (param i32 i32 i32 i32) (result i32)))
  (import "verge" "body_write" (func $write (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; count at 0, size at 4, pointers at 1024, strings at 8192
  (func (export "verge_handle") (param $req i32) (param $resp i32) (result i32)
    (drop (call $sizes (i32.const 0) (i32.const 4)))
    (drop (call $get (i32.const 1024) (i32.const 8192)))
    (drop (call $resp (local.get $resp) (i32.const 200) (i32.const 0) (i32.const 0)))
    (drop (call $write (local.get $resp) (i32.const 8192) (i32.load (i32.const 4))))
    (i32.const 0)))
