;; Counts its requests in memory and answers with the count and its memory
;; size in pages (one byte each). "/grow" grows memory by a page first;
;; "/close" closes a file descriptor first (a WASI call that changes the
;; instance outside its memory, so it must not be reused as it is).
(module
  (import "verge" "http_resp" (func $resp (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "verge" "http_req_head" (func $head (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $close (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "verge_handle") (param $req i32) (param $resp i32) (result i32)
    ;; head at 1024; the uri is the second field: u32 count, string method, string uri
    (drop (call $head (local.get $req) (i32.const 1024) (i32.const 2048) (i32.const 200)))
    ;; method length at 1028, method at 1032; uri length follows, then the uri
    (if (i32.eq (i32.load8_u (i32.add (i32.add (i32.const 1036) (i32.load (i32.const 1028))) (i32.const 1))) (i32.const 0x67)) ;; "/g..."
      (then (drop (memory.grow (i32.const 1)))))
    (if (i32.eq (i32.load8_u (i32.add (i32.add (i32.const 1036) (i32.load (i32.const 1028))) (i32.const 1))) (i32.const 0x63)) ;; "/c..."
      (then (drop (call $close (i32.const 9)))))
    (i32.store8 (i32.const 100) (i32.add (i32.load8_u (i32.const 100)) (i32.const 1)))
    (i32.store8 (i32.const 101) (memory.size))
    (drop (call $resp (local.get $resp) (i32.const 200) (i32.const 0) (i32.const 0) (i32.const 100) (i32.const 2)))
    (i32.const 0)))
