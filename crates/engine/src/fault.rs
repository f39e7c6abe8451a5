//! Failure points for the reliability suite. Compiled in only with the `fault-injection` cargo
//! feature (the release binary carries none of it): `ATLAS_ARCHIVER_CRASH_AT=<point>` aborts the
//! process at a named point, as `kill -9` would; `ATLAS_ARCHIVER_CRASH_AT_BYTE=<n>` aborts once a
//! transfer has streamed `n` bytes.
//! Must not: do anything at all in builds without the feature.

/// Aborts the process if `ATLAS_ARCHIVER_CRASH_AT` names this point.
#[inline]
pub fn point(name: &str) {
    #[cfg(feature = "fault-injection")]
    if std::env::var("ATLAS_ARCHIVER_CRASH_AT").is_ok_and(|p| p == name) {
        eprintln!("fault injection: crashing at {name}");
        std::process::abort();
    }
    #[cfg(not(feature = "fault-injection"))]
    let _ = name;
}

/// Aborts the process once `bytes` reaches `ATLAS_ARCHIVER_CRASH_AT_BYTE`.
#[inline]
pub fn bytes(streamed: u64) {
    #[cfg(feature = "fault-injection")]
    if let Some(limit) = std::env::var("ATLAS_ARCHIVER_CRASH_AT_BYTE")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        && streamed >= limit
    {
        eprintln!("fault injection: crashing after {streamed} bytes");
        std::process::abort();
    }
    #[cfg(not(feature = "fault-injection"))]
    let _ = streamed;
}
