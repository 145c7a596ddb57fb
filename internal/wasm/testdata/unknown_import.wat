;; Imports a host function Verge does not provide.
(module
  (import "env" "launch_missiles" (func $launch (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "verge_handle") (param i32 i32) (result i32)
    (call $launch (i32.const 1))))
