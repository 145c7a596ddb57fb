;; Exponential recursion with no loop at all: only the check at function
;; entry can stop it within the CPU limit.
(module
  (memory (export "memory") 1)
  (func $fib (param i32) (result i32)
    (if (result i32) (i32.lt_u (local.get 0) (i32.const 2))
      (then (local.get 0))
      (else (i32.add (call $fib (i32.sub (local.get 0) (i32.const 1)))
                     (call $fib (i32.sub (local.get 0) (i32.const 2)))))))
  (func (export "verge_handle") (param i32 i32) (result i32)
    (drop (call $fib (i32.const 60)))
    (i32.const 0)))
