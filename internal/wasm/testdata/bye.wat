;; The smallest verge-executor guest: answers 200 "bye"; a second version of hello.wat.
(module
  (import "verge" "http_resp_head" (func $resp (param i32 i32 i32 i32) (result i32)))
  (import "verge" "body_write" (func $write (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "bye")
  (func (export "verge_handle") (param $req i32) (param $resp i32) (result i32)
    (drop (call $resp (local.get $resp) (i32.const 200) (i32.const 0) (i32.const 0)))
    (drop (call $write (local.get $resp) (i32.const 0) (i32.const 3)))
    (i32.const 0)))
