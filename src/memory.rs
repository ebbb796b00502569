//! Giving freed heap memory back to the system at the few moments it piles up.
//!
//! Building the engine (rule files, regex compilation) and connecting (the TLS library reads
//! the system's root certificates) allocate and free a lot; glibc keeps those freed pages.
//! Handing them back once, before the daemon settles into idling, keeps an appliance's idle
//! footprint small.

/// Returns free heap memory to the system (glibc's `malloc_trim`); a no-op elsewhere.
pub fn release_freed_memory() {
    // SAFETY: malloc_trim only returns free heap memory to the system; it has no
    // preconditions and touches no memory the program still uses.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::malloc_trim(0);
    }
}
