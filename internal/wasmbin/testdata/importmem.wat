;; Imported memory may already hold data: gaps must not be zero-filled.
(module
  (import "env" "memory" (memory 1))
  (data (i32.const 100) "aaaa")
  (data (i32.const 104) "bbbb")   ;; adjacent: may merge
  (data (i32.const 102) "cc")     ;; overlapping: may merge
  (data (i32.const 120) "dddd")   ;; gap: must stay apart
  (data (i32.const 124) "eeee"))
