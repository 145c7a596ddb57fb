;; Imports a real host function with the wrong signature.
(module
  (import "verge" "log" (func $log (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "verge_handle") (param i32 i32) (result i32)
    (call $log (i32.const 0) (i32.const 0))))
