;; A WAGI program that counts its runs in a global and in memory and prints
;; both (one digit each) after a CGI head; with ?exit in the query it exits
;; with code 3 instead. A fresh instance prints "11".
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $envsizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $env (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $n (mut i32) (i32.const 0))
  ;; the response: a head, then the two counts at 32 and 33
  (data (i32.const 0) "Content-Type: text/plain\0a\0a")
  (func $has_exit (result i32)
    ;; environment into 1024.. (pointers) and 2048.. (strings); look for "exit" anywhere
    (local $i i32) (local $end i32)
    (drop (call $envsizes (i32.const 200) (i32.const 204)))
    (drop (call $env (i32.const 1024) (i32.const 2048)))
    (local.set $i (i32.const 2048))
    (local.set $end (i32.add (i32.const 2048) (i32.load (i32.const 204))))
    (block $done
      (loop $scan
        (br_if $done (i32.ge_u (i32.add (local.get $i) (i32.const 4)) (local.get $end)))
        (if (i32.eq (i32.load (local.get $i)) (i32.const 0x74697865)) ;; "exit"
          (then (return (i32.const 1))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $scan)))
    (i32.const 0))
  (func (export "_start")
    (if (call $has_exit) (then (call $exit (i32.const 3))))
    (global.set $n (i32.add (global.get $n) (i32.const 1)))
    (i32.store8 (i32.const 100) (i32.add (i32.load8_u (i32.const 100)) (i32.const 1)))
    (i32.store8 (i32.const 26) (i32.add (i32.const 48) (i32.load8_u (i32.const 100))))
    (i32.store8 (i32.const 27) (i32.add (i32.const 48) (global.get $n)))
    ;; iovec at 300: {ptr 0, len 28}
    (i32.store (i32.const 300) (i32.const 0))
    (i32.store (i32.const 304) (i32.const 28))
    (drop (call $write (i32.const 1) (i32.const 300) (i32.const 1) (i32.const 308)))))
