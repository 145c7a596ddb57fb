;; Active segments only, overlapping (the later one wins) and apart: what
;; StripActiveData strips.
(module
  (memory (export "memory") 1)
  (data (i32.const 100) "hello, world")
  (data (i32.const 103) "XY")
  (data (i32.const 20000) "far away")
  (data (i32.const 98) "ZZZZ"))
