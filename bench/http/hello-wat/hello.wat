;; The cheapest useful verge-executor guest, for bench/http: what the
;; runtime and the gateway cost around a guest that does nothing. It answers
;; 200 with the baseline's headers and body (Content-Type and
;; "Hello, world!\n") in two host calls. Build: wat2wasm hello.wat -o hello.wasm
(module
  (import "verge" "http_resp_head" (func $resp (param i32 i32 i32 i32) (result i32)))
  (import "verge" "body_write" (func $write (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; a header list: count 1, "Content-Type", "text/plain; charset=utf-8"
  (data (i32.const 0) "\01\00\00\00\0c\00\00\00\43\6f\6e\74\65\6e\74\2d\54\79\70\65\19\00\00\00\74\65\78\74\2f\70\6c\61\69\6e\3b\20\63\68\61\72\73\65\74\3d\75\74\66\2d\38")
  (data (i32.const 64) "Hello, world!\n")
  (func (export "verge_handle") (param $req i32) (param $resp i32) (result i32)
    (drop (call $resp (local.get $resp) (i32.const 200) (i32.const 0) (i32.const 49)))
    (drop (call $write (local.get $resp) (i32.const 64) (i32.const 14)))
    (i32.const 0)))
