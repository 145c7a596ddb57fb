;; Counts its requests twice, in a global and in memory, and answers with
;; both counts (one byte each): 1 and 1 in a fresh instance.
(module
  (import "verge" "http_resp" (func $resp (param i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $n (mut i32) (i32.const 0))
  (func (export "verge_handle") (param $req i32) (param $resp i32) (result i32)
    (global.set $n (i32.add (global.get $n) (i32.const 1)))
    (i32.store8 (i32.const 100) (i32.add (i32.load8_u (i32.const 100)) (i32.const 1)))
    (i32.store8 (i32.const 101) (global.get $n))
    (drop (call $resp (local.get $resp) (i32.const 200) (i32.const 0) (i32.const 0) (i32.const 100) (i32.const 2)))
    (i32.const 0)))
