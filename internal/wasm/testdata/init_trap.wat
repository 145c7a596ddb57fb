;; A reactor whose initialisation traps: it must fail to load, not fail its
;; first request.
(module
  (memory (export "memory") 1)
  (func (export "_initialize") unreachable)
  (func (export "verge_handle") (param i32 i32) (result i32) (i32.const 0)))
