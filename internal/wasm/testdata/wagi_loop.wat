;; A WASI command that never exits.
(module
  (memory (export "memory") 1)
  (func (export "_start") (loop $forever (br $forever))))
