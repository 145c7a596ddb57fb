;; Spins through 100 million loop iterations (a fraction of a second), then
;; answers 200 "slow": used to hold requests in flight during a reload.
(module
  (import "verge" "http_resp_head" (func $resp (param i32 i32 i32 i32) (result i32)))
  (import "verge" "body_write" (func $write (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "slow")
  (func (export "verge_handle") (param $req i32) (param $resp i32) (result i32)
    (local $i i32)
    (loop $spin
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $spin (i32.lt_u (local.get $i) (i32.const 100000000))))
    (drop (call $resp (local.get $resp) (i32.const 200) (i32.const 0) (i32.const 0)))
    (drop (call $write (local.get $resp) (i32.const 0) (i32.const 4)))
    (i32.const 0)))
