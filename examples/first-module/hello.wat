;; The smallest module shaped like a proxy-wasm filter: it exports the ABI version a proxy-wasm
;; host (Envoy) looks for, and logs one line when its VM starts. Enough for the mirror's checks
;; (the \0asm header, the engine's validation, the proxy_abi_version_* export); it filters nothing.
(module
  ;; proxy_log(level, message pointer, message length) -> status, provided by the host.
  (import "env" "proxy_log" (func $proxy_log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello from wasm-mirror")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  ;; Level 2 is info; 22 is the length of the message above.
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (drop (call $proxy_log (i32.const 2) (i32.const 16) (i32.const 22)))
    (i32.const 1))
  ;; The host asks the module for memory to copy its arguments into; one fixed buffer will do here.
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024)))
