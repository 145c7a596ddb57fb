;; Its start function traps after instantiation created the memory: wazero
;; then never frees that memory.
(module
  (memory 2)
  (func $boom unreachable)
  (start $boom))
