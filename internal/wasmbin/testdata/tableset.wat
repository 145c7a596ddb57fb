;; For TestInstrumentSnapshot: a module that changes its table cannot be
;; restored from a copy of its memory and globals.
(module
  (table 2 funcref)
  (func $f)
  (elem declare func $f)
  (func (export "set") (table.set 0 (i32.const 1) (ref.func $f))))
