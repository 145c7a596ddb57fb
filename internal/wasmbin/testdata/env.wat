;; Host for nonconst.wat and importmem.wat: a global and a memory with
;; non-zero bytes everywhere.
(module
  (global (export "base") i32 (i32.const 110))
  (memory (export "memory") 1)
  (func $fill (memory.fill (i32.const 0) (i32.const 0x5a) (i32.const 65536)))
  (start $fill))
