;; Exercises every place the yield instrumentation renumbers a function
;; index: calls, call_indirect through an element segment, ref.func in a
;; global initialiser and in an expression-encoded element segment, exports,
;; the start function and the name section. Results must be the same before
;; and after instrumentation.
(module
  (import "env" "add" (func $add (param i32 i32) (result i32)))
  (table $t 4 funcref)
  (memory (export "memory") 1)
  (global $started (mut i32) (i32.const 0))
  (global $fref funcref (ref.func $seven))
  (elem (i32.const 0) $seven $double)
  (elem (table $t) (i32.const 2) funcref (ref.func $double) (ref.func $seven))
  (func $seven (result i32) (i32.const 7))
  (func $double (result i32) (i32.mul (call $seven) (i32.const 2)))
  (func $init (global.set $started (i32.const 1)))
  (start $init)
  (func (export "started") (result i32) (global.get $started))
  (func (export "indirect") (param i32) (result i32)
    (call_indirect (result i32) (local.get 0)))
  (func $sumfn (export "sum") (param $n i32) (result i32)
    (local $i i32) (local $acc i32)
    (loop $l
      (local.set $acc (call $add (local.get $acc) (local.get $i)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
    (local.get $acc))
  (func (export "fref_is_null") (result i32) (ref.is_null (global.get $fref))))
