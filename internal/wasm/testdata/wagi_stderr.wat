;; A WAGI program that answers "ok" and writes two lines to stderr, the
;; second without a final newline (logged when the run ends).
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "Content-Type: text/plain\0a\0aok")
  (data (i32.const 64) "line one\0aline two")
  (func (export "_start")
    ;; iovec at 300: {ptr 0, len 28} to stdout
    (i32.store (i32.const 300) (i32.const 0))
    (i32.store (i32.const 304) (i32.const 28))
    (drop (call $write (i32.const 1) (i32.const 300) (i32.const 1) (i32.const 308)))
    ;; iovec at 320: {ptr 64, len 17} to stderr
    (i32.store (i32.const 320) (i32.const 64))
    (i32.store (i32.const 324) (i32.const 17))
    (drop (call $write (i32.const 2) (i32.const 320) (i32.const 1) (i32.const 328)))))
