//! What this process learns from its host: the wall clock, randomness, the machine's name
//! (cleaned: it comes from the environment). Beneath `id.rs` and `wire.rs`, which both use
//! it.

/// A random 64-bit number from std's randomly seeded hasher (no extra dependency).
pub(super) fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// This machine's name, reduced to the characters an id may hold (it comes from the
/// environment: never trusted as is).
pub(super) fn hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default();
    let clean: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "_.-".contains(*c))
        .take(40)
        .collect();
    if clean.is_empty() {
        "host".into()
    } else {
        clean
    }
}

/// Now, in milliseconds since the Unix epoch (0 before it).
pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
