;; Traps on the first request: divides by zero.
(module
  (memory (export "memory") 1)
  (func (export "verge_handle") (param i32 i32) (result i32)
    (i32.div_u (i32.const 1) (i32.const 0))))
