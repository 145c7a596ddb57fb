;; grow_fill grows memory by $n pages, stores $v at every 4 KiB of the whole
;; memory and returns the previous size in pages.
(module
  (memory (export "memory") 1 64)
  (func (export "grow_fill") (param $n i32) (param $v i32) (result i32)
    (local $old i32) (local $addr i32)
    (local.set $old (memory.grow (local.get $n)))
    (loop $l
      (i32.store8 (local.get $addr) (local.get $v))
      (local.set $addr (i32.add (local.get $addr) (i32.const 4096)))
      (br_if $l (i32.lt_u (local.get $addr)
                          (i32.shl (memory.size) (i32.const 16)))))
    (local.get $old)))
