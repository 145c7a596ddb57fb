;; Active segments with a non-constant offset in between constant ones: the
;; constant ones must still be applied in order around them.
(module
  (import "env" "base" (global $base i32))
  (memory (export "memory") 1)
  (data (i32.const 100) "aaaaaaaaaaaaaaaaaaaa")   ;; 100..120
  (data (i32.const 130) "bbbbbbbbbb")             ;; 130..140
  (data (global.get $base) "NONCONST-NONCONST")   ;; env.base = 110: 110..127
  (data (i32.const 112) "cc")                     ;; after it, wins
  (data (i32.const 150) "dddd")                   ;; gap-filled only if safe
  (data (i32.const 160) "eeee"))
