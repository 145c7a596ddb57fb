;; A module with a start section: its function index must be renumbered by
;; the instrumentation, and its start runs under limits. The handler loops.
(module
  (memory (export "memory") 1)
  (global $g (mut i32) (i32.const 0))
  (func $init (global.set $g (i32.const 1)))
  (start $init)
  (func (export "verge_handle") (param i32 i32) (result i32)
    (loop $forever (br $forever))
    (i32.const 0)))
