;; The smallest useful module: one page of memory, a little data, one export.
(module
  (memory (export "memory") 1)
  (data (i32.const 1024) "hello from a tiny module")
  (func (export "run") (result i32) (i32.const 42)))
