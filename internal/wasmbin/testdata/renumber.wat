;; Like merge.wat but without memory.init/data.drop: the data count section
;; is still present (memory.fill needs bulk memory), so the merge must fix it.
(module
  (memory (export "memory") 1)
  (data (i32.const 100) "hello, world")
  (data (i32.const 103) "XY")
  (data "passive one")
  (data (i32.const 200) "abc")
  (data (i32.const 20000) "far away")
  (data (i32.const 98) "ZZZZ")
  (data (i32.const 300) "")
  (data (i32.const 20004) "\01\02\03\04\05")
  (func (export "init")
    (memory.fill (i32.const 5000) (i32.const 7) (i32.const 16))))
