;; Unbounded recursion: the guest's stack must overflow into a trap.
(module
  (memory (export "memory") 1)
  (func $down (param i32) (result i32)
    (call $down (i32.add (local.get 0) (i32.const 1))))
  (func (export "verge_handle") (param i32 i32) (result i32)
    (call $down (i32.const 0))))
