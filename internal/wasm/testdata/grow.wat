;; Grows memory one page at a time until refused, then traps, as a real
;; allocator would on running out of memory.
(module
  (memory (export "memory") 1)
  (func (export "verge_handle") (param i32 i32) (result i32)
    (loop $more
      (br_if $more (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    unreachable))
