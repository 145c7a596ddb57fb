;; Answers 201 with a header and a 12-byte body in a single http_resp call.
(module
  (import "verge" "http_resp" (func $resp (param i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; a header list: count 1, "x-one", "call"
  (data (i32.const 0) "\01\00\00\00\05\00\00\00\78\2d\6f\6e\65\04\00\00\00\63\61\6c\6c")
  (data (i32.const 64) "one call\n...")
  (func (export "verge_handle") (param $req i32) (param $resp i32) (result i32)
    (drop (call $resp (local.get $resp) (i32.const 201) (i32.const 0) (i32.const 21) (i32.const 64) (i32.const 12)))
    (i32.const 0)))
