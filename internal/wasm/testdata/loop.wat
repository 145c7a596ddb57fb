;; A verge-executor guest that never returns: the CPU limit must stop it.
(module
  (memory (export "memory") 1)
  (func (export "verge_handle") (param i32 i32) (result i32)
    (loop $forever (br $forever))
    (i32.const 0)))
