//! The process allocator, tuned for training on the CPU.
//!
//! glibc's `malloc` serves every allocation above its mmap threshold (which it moves between
//! 128 KiB and 32 MiB) with a fresh `mmap` and gives it back to the kernel on `free`. A training
//! step allocates activations and gradients of that size afresh each time (a batch of 128
//! 64-channel 32x32 maps is 33.5 MB), so every step faulted in and zeroed those pages again,
//! with TLB shootdowns across the threads: ~10% of a ref-cnn training step, and +25-30%
//! training throughput once it stops (docs/performance.md). [`keep_freed_memory`] raises the
//! mmap and trim thresholds so that freed blocks stay in the heap and are reused by the next
//! step; the price is that the process keeps its peak heap instead of returning it between
//! steps (its peak resident memory is measured in docs/performance.md).

use std::sync::OnceLock;

/// Allocations up to this size come from the heap and stay there when freed.
pub const KEEP_BELOW: usize = 512 << 20;

/// Sets glibc's mmap and trim thresholds to [`KEEP_BELOW`], once per process; called when a
/// [`crate::GraphModel`] is built. Does nothing with `LEMO_KEEP_FREED_MEMORY=0` in the
/// environment, on other C libraries, or when glibc refuses the setting. Returns whether the
/// settings are in force.
pub fn keep_freed_memory() -> bool {
    static IN_FORCE: OnceLock<bool> = OnceLock::new();
    *IN_FORCE.get_or_init(|| {
        let wanted = std::env::var("LEMO_KEEP_FREED_MEMORY").as_deref() != Ok("0");
        let in_force = wanted && apply();
        tracing::debug!(
            in_force,
            "glibc keeps freed blocks below {KEEP_BELOW} bytes in the heap"
        );
        in_force
    })
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn apply() -> bool {
    let value = libc::c_int::try_from(KEEP_BELOW).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt only changes two of glibc's allocator parameters (it takes its own
    // lock); no memory is touched, and blocks already allocated stay valid either way.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, value) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, value) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> bool {
    false
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_settings_are_applied_once_and_stay() {
        let first = super::keep_freed_memory();
        assert_eq!(super::keep_freed_memory(), first);
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        if std::env::var("LEMO_KEEP_FREED_MEMORY").as_deref() != Ok("0") {
            assert!(first, "glibc refused the thresholds");
        }
    }
}
