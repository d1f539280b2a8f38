//! glibc's allocator told to keep the memory a data path frees (docs/adr/0010-allocator.md).
//!
//! With glibc's defaults, memory freed at the top of the heap beyond 128 KiB goes back
//! to the kernel at once (`M_TRIM_THRESHOLD`), and blocks from 128 KiB up (a threshold
//! that only grows as such blocks are freed) are mapped and unmapped for each use
//! (`M_MMAP_THRESHOLD`). A relay that queues a batch of TLS records (tokio-rustls on the
//! links and in the endpoints allocates each record) and frees it after the write
//! then faults the same pages in again for the next batch: measured, the two-router
//! path ran at 4.7 Gbit/s with the defaults and 6.2 with the thresholds below, and the
//! whole one-router path spent 1.69 s of CPU per GB instead of 1.39, with the memory per
//! idle circuit unchanged.
//!
//! An operator's own `GLIBC_TUNABLES` malloc settings win: nothing is changed then.
#![allow(unsafe_code)] // two `mallopt` calls (libc), each with its SAFETY comment

/// Freed memory at the top of the heap kept by the process up to this many bytes.
pub const TRIM_THRESHOLD: i32 = 64 << 20;
/// Blocks from this size up are mapped apart (and unmapped when freed).
pub const MMAP_THRESHOLD: i32 = 4 << 20;

/// What [`keep_freed_memory`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tuning {
    /// The thresholds were set.
    Set,
    /// `GLIBC_TUNABLES` sets malloc parameters: left as the operator chose.
    LeftToOperator,
    /// Not glibc, or glibc refused a parameter: the allocator's defaults stand.
    Unavailable,
}

/// Raises glibc's trim and mmap thresholds ([`TRIM_THRESHOLD`], [`MMAP_THRESHOLD`])
/// unless `GLIBC_TUNABLES` sets malloc parameters. Call first thing in `main`.
pub fn keep_freed_memory() -> Tuning {
    let tunables = std::env::var("GLIBC_TUNABLES").ok();
    if operator_tuned(tunables.as_deref()) {
        return Tuning::LeftToOperator;
    }
    set_thresholds()
}

/// Whether `GLIBC_TUNABLES` (its value) sets any malloc parameter.
fn operator_tuned(tunables: Option<&str>) -> bool {
    tunables.is_some_and(|t| t.split(':').any(|kv| kv.starts_with("glibc.malloc.")))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_thresholds() -> Tuning {
    // SAFETY: `mallopt` sets one allocator parameter under glibc's own arena lock; it
    // takes two integers and touches no memory of the caller. Both parameters exist in
    // every glibc this builds against, and the values are within their documented
    // ranges (the mmap threshold at most 32 MiB on 64-bit).
    let trim = unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) };
    // SAFETY: as above.
    let mmap = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
    if trim == 1 && mmap == 1 {
        Tuning::Set
    } else {
        Tuning::Unavailable
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() -> Tuning {
    Tuning::Unavailable
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operators_malloc_tunables_win() {
        assert!(!operator_tuned(None));
        assert!(!operator_tuned(Some("glibc.pthread.rseq=0")));
        assert!(operator_tuned(Some(
            "glibc.pthread.rseq=0:glibc.malloc.trim_threshold=1"
        )));
        assert!(operator_tuned(Some("glibc.malloc.arena_max=2")));
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_takes_the_thresholds() {
        assert_eq!(set_thresholds(), Tuning::Set);
    }
}
