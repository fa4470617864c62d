//! How ferry's allocator (mimalloc, set as the global allocator by the `ferry` binary)
//! gives memory back. mimalloc v3 keeps freed pages for a whole second before it
//! returns them to the OS, so that a page freed and wanted again soon costs no system
//! call. Events are allocated by the sources' threads and freed by the sinks'
//! threads in a steady stream, so those delays kept a churn of dead pages resident:
//! the full benchmark pipeline (40 MB of the standard lines, default budgets) peaked
//! at 66–83 MiB with the default delay and at 45–49 MiB with 1 ms, for the same CPU
//! time. Later, with the pipeline's peak down to 25 MiB, 1 ms proved too short: pages
//! freed by one batch were given back before the next batch wanted them, and a perf
//! profile of the full pipeline spent about 8 % of its samples in the kernel
//! unmapping and faulting them in again. 10 ms keeps them across batches: the full
//! pipeline ran 5 % faster, for 1–3 MiB more peak RSS (26–29 MiB).

use std::ffi::{c_int, c_long};

// The `ferry` binary links mimalloc as its global allocator; this keeps it linked
// wherever this module is used (the unit tests).
use mimalloc as _;

/// `mi_option_purge_delay` in mimalloc v3's `mimalloc.h` (libmimalloc-sys declares
/// only the v2 numbering). The test below checks it is the option whose default is
/// 1000 ms (its source's default; the header's comment still says 10).
const MI_OPTION_PURGE_DELAY: c_int = 15;

/// What ferry sets the purge delay to, in milliseconds.
const PURGE_DELAY_MS: c_long = 10;

unsafe extern "C" {
    fn mi_option_get(option: c_int) -> c_long;
    fn mi_option_set(option: c_int, value: c_long);
}

/// Makes the allocator give freed pages back after 10 ms; call once at start.
pub fn return_freed_memory_promptly() {
    // SAFETY: mimalloc's option setters take any option number and value, and may be
    // called at any time from any thread.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) }
}

/// The purge delay in force, in milliseconds.
pub fn purge_delay_ms() -> c_long {
    // SAFETY: as above; reading an option has no precondition.
    unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_number_is_mimallocs_purge_delay() {
        // mimalloc v3's default for `purge_delay` (unless the environment overrides
        // it), which no other option has: a wrong option number would read another.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(purge_delay_ms(), 1000);
        }
        return_freed_memory_promptly();
        assert_eq!(purge_delay_ms(), PURGE_DELAY_MS);
    }
}
