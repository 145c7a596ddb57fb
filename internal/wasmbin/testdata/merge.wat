;; Overlapping segments, small and large gaps, an empty segment, passive
;; segments and code that uses memory.init/data.drop (so the data count
;; section is present and segment indices must not change).
(module
  (memory (export "memory") 1)
  (data (i32.const 100) "hello, world")        ;; 0
  (data (i32.const 103) "XY")                  ;; 1: overlaps 0, wins
  (data "passive one")                         ;; 2: passive
  (data (i32.const 200) "abc")                 ;; 3: gap of 88 bytes
  (data (i32.const 20000) "far away")          ;; 4: gap > 4 KiB, new segment
  (data (i32.const 98) "ZZZZ")                 ;; 5: overlaps 0 and 1, wins
  (data (i32.const 300) "")                    ;; 6: empty
  (data "passive two")                         ;; 7: passive
  (data (i32.const 20004) "\01\02\03\04\05")   ;; 8: overlaps 4, wins
  (data (i32.const 0x0fff0) "end of page")     ;; 9: last bytes of the page
  (func (export "init")
    ;; Copy passive segment 7 to 1000 and drop both passive segments.
    (memory.init 7 (i32.const 1000) (i32.const 0) (i32.const 11))
    (memory.init 2 (i32.const 1100) (i32.const 0) (i32.const 11))
    (data.drop 2)
    (data.drop 7)))
