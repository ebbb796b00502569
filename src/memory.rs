//! Giving freed heap memory back to the system at the few moments it piles up.
//!
//! Building the engine (rule files, regex compilation), connecting (the TLS library reads
//! the system's root certificates) and every burst of messages allocate and free a lot; glibc
//! keeps those freed pages. Handing them back after each of these, once the daemon is about to
//! idle (the main loop's settle, for bursts), keeps an appliance's idle footprint small.

/// Returns free heap memory to the system (glibc's `malloc_trim`); a no-op elsewhere.
pub fn release_freed_memory() {
    // SAFETY: malloc_trim only returns free heap memory to the system; it has no
    // preconditions and touches no memory the program still uses.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::malloc_trim(0);
    }
}
