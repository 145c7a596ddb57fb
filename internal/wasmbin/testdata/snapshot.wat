;; For TestInstrumentSnapshot: two mutable globals, a WASI call that changes
;; the instance outside its memory (fd_close) and one that does not
;; (random_get).
(module
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $close (param i32) (result i32)))
  (memory (export "memory") 1)
  (global $counter (mut i32) (i32.const 7))
  (global $const i32 (i32.const 1))
  (global $wide (mut i64) (i64.const 9))
  (func (export "bump") (result i32)
    (global.set $counter (i32.add (global.get $counter) (global.get $const)))
    (global.get $counter))
  (func (export "rand") (result i32) (call $random (i32.const 0) (i32.const 8)))
  (func (export "close") (result i32) (call $close (i32.const 9))))
