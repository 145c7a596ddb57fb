;; Calls the central-PoP host functions (spot_*, invoke) with pointers and
;; lengths outside its memory (one 64 KiB page) and with bad arguments, then
;; exercises the too-small protocol of spot_claim, whose retry must not repeat
;; the claim. It answers with the status codes it got, and some output bytes,
;; one byte each, so the test can assert them exactly and check that no wild
;; call reached the central PoP. The state is restored at the end, so every
;; request answers the same.
(module
  (import "verge" "http_resp_head" (func $resp (param i32 i32 i32 i32) (result i32)))
  (import "verge" "body_write" (func $write (param i32 i32 i32) (result i32)))
  (import "verge" "spot_claim" (func $claim (param i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "verge" "spot_release" (func $release (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "verge" "spot_take" (func $take (param i32 i32 i64 i32) (result i32)))
  (import "verge" "spot_restock" (func $restock (param i32 i32 i64 i32) (result i32)))
  (import "verge" "spot_counter" (func $counter (param i32 i32 i32) (result i32)))
  (import "verge" "spot_doc_get" (func $docget (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "verge" "spot_doc_update" (func $docupdate (param i32 i32 i64 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "verge" "invoke" (func $invoke (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; "n" at 0 (namespace), "k" at 1 (key, counter), "alice" at 2, "bob" at 7,
  ;; "GET" at 10, "/" at 13. Outputs: buf at 256, len_out at 512, an i64 at 520.
  (data (i32.const 0) "nkalicebobGET/")
  (global $n (mut i32) (i32.const 1024))
  (func $record (param i32)
    (i32.store8 (global.get $n) (local.get 0))
    (global.set $n (i32.add (global.get $n) (i32.const 1))))
  (func (export "verge_handle") (param $req i32) (param $resp i32) (result i32)
    ;; spot_claim: namespace past the end; buffer past the end; len_out past the end
    (call $record (call $claim (i32.const 65530) (i32.const 100) (i32.const 1) (i32.const 1) (i32.const 2) (i32.const 5) (i32.const 256) (i32.const 64) (i32.const 512)))
    (call $record (call $claim (i32.const 0) (i32.const 1) (i32.const 1) (i32.const 1) (i32.const 2) (i32.const 5) (i32.const 65500) (i32.const 100) (i32.const 512)))
    (call $record (call $claim (i32.const 0) (i32.const 1) (i32.const 1) (i32.const 1) (i32.const 2) (i32.const 5) (i32.const 256) (i32.const 64) (i32.const 65534)))
    ;; spot_release: owner beyond memory
    (call $record (call $release (i32.const 0) (i32.const 1) (i32.const 1) (i32.const 1) (i32.const 70000) (i32.const 1)))
    ;; spot_take: the i64 output straddles the end; n = 0; n < 0
    (call $record (call $take (i32.const 1) (i32.const 1) (i64.const 1) (i32.const 65532)))
    (call $record (call $take (i32.const 1) (i32.const 1) (i64.const 0) (i32.const 520)))
    (call $record (call $take (i32.const 1) (i32.const 1) (i64.const -5) (i32.const 520)))
    ;; spot_restock: output at 0xffffffff; spot_counter: name length wrapping around
    (call $record (call $restock (i32.const 1) (i32.const 1) (i64.const 1) (i32.const -1)))
    (call $record (call $counter (i32.const 1) (i32.const -1) (i32.const 520)))
    ;; spot_doc_get: rev_out past the end; spot_doc_update: ops past the end, rev_out past the end
    (call $record (call $docget (i32.const 1) (i32.const 1) (i32.const 256) (i32.const 64) (i32.const 512) (i32.const 65530)))
    (call $record (call $docupdate (i32.const 1) (i32.const 1) (i64.const 0) (i32.const 65535) (i32.const 10) (i32.const 256) (i32.const 64) (i32.const 512) (i32.const 520)))
    (call $record (call $docupdate (i32.const 1) (i32.const 1) (i64.const 0) (i32.const 0) (i32.const 1) (i32.const 256) (i32.const 64) (i32.const 512) (i32.const 65533)))
    ;; invoke: name past the end; body past the end; status_out past the end; empty method
    (call $record (call $invoke (i32.const 65535) (i32.const 2) (i32.const 10) (i32.const 3) (i32.const 13) (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 256) (i32.const 64) (i32.const 512) (i32.const 528)))
    (call $record (call $invoke (i32.const 1) (i32.const 1) (i32.const 10) (i32.const 3) (i32.const 13) (i32.const 1) (i32.const 60000) (i32.const 6000) (i32.const 256) (i32.const 64) (i32.const 512) (i32.const 528)))
    (call $record (call $invoke (i32.const 1) (i32.const 1) (i32.const 10) (i32.const 3) (i32.const 13) (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 256) (i32.const 64) (i32.const 512) (i32.const 65535)))
    (call $record (call $invoke (i32.const 1) (i32.const 1) (i32.const 10) (i32.const 0) (i32.const 13) (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 256) (i32.const 64) (i32.const 512) (i32.const 528)))
    ;; spot_doc_update: operations that are not JSON ("n")
    (call $record (call $docupdate (i32.const 1) (i32.const 1) (i64.const 0) (i32.const 0) (i32.const 1) (i32.const 256) (i32.const 64) (i32.const 512) (i32.const 520)))

    ;; The too-small protocol. alice claims with no room for the owner: the
    ;; claim is made and kept; the retry gets it without a second claim.
    (call $record (call $claim (i32.const 0) (i32.const 1) (i32.const 1) (i32.const 1) (i32.const 2) (i32.const 5) (i32.const 256) (i32.const 0) (i32.const 512)))
    (call $record (i32.load8_u (i32.const 512)))
    (call $record (call $claim (i32.const 0) (i32.const 1) (i32.const 1) (i32.const 1) (i32.const 2) (i32.const 5) (i32.const 256) (i32.const 64) (i32.const 512)))
    ;; bob's claim conflicts, too small; the retry gets the kept owner
    (call $record (call $claim (i32.const 0) (i32.const 1) (i32.const 1) (i32.const 1) (i32.const 7) (i32.const 3) (i32.const 256) (i32.const 2) (i32.const 512)))
    (call $record (i32.load8_u (i32.const 512)))
    (call $record (call $claim (i32.const 0) (i32.const 1) (i32.const 1) (i32.const 1) (i32.const 7) (i32.const 3) (i32.const 256) (i32.const 64) (i32.const 512)))
    (call $record (i32.load8_u (i32.const 256)))
    ;; another call forgot the kept result: this one reaches the centre
    (call $record (call $claim (i32.const 0) (i32.const 1) (i32.const 1) (i32.const 1) (i32.const 2) (i32.const 5) (i32.const 256) (i32.const 64) (i32.const 512)))
    ;; counters: take from nothing, restock 5, take 2, read
    (call $record (call $take (i32.const 1) (i32.const 1) (i64.const 1) (i32.const 520)))
    (call $record (i32.load8_u (i32.const 520)))
    (call $record (call $restock (i32.const 1) (i32.const 1) (i64.const 5) (i32.const 520)))
    (call $record (i32.load8_u (i32.const 520)))
    (call $record (call $take (i32.const 1) (i32.const 1) (i64.const 2) (i32.const 520)))
    (call $record (i32.load8_u (i32.const 520)))
    (call $record (call $counter (i32.const 1) (i32.const 1) (i32.const 520)))
    (call $record (i32.load8_u (i32.const 520)))
    (call $record (call $docget (i32.const 1) (i32.const 1) (i32.const 256) (i32.const 64) (i32.const 512) (i32.const 520)))
    ;; releases: bob owns nothing; alice does. Then empty the stock again.
    (call $record (call $release (i32.const 0) (i32.const 1) (i32.const 1) (i32.const 1) (i32.const 7) (i32.const 3)))
    (call $record (call $release (i32.const 0) (i32.const 1) (i32.const 1) (i32.const 1) (i32.const 2) (i32.const 5)))
    (call $record (call $take (i32.const 1) (i32.const 1) (i64.const 3) (i32.const 520)))
    (call $record (i32.load8_u (i32.const 520)))
    ;; the answer: the recorded bytes
    (drop (call $resp (local.get $resp) (i32.const 200) (i32.const 0) (i32.const 0)))
    (drop (call $write (local.get $resp) (i32.const 1024) (i32.sub (global.get $n) (i32.const 1024))))
    (global.set $n (i32.const 1024))
    (i32.const 0)))
