//! Measures the CPU cost of content validation (`pipeline::validate`) per GiB, on one core:
//! (a) the simulator's archives (incompressible data in stored deflate blocks, as in the demo,
//! the tests and `bench/run.sh`), and (b) a compressed archive of semi-compressible data (closer
//! to a real `mongod` data directory, whose WiredTiger files compress about 3:1).
//! Run: `cargo run --release --example validate_cost [MiB]` (default 1024).

use std::io::{Read, Write};

use std::time::Instant;

use atlas_archiver::pipeline::validate::validate;
use atlas_archiver::simulator::content::SnapshotBytes;

fn cpu_seconds() -> f64 {
    // getrusage via /proc: user + system time of this process, in clock ticks.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn measure(label: &str, compressed_bytes: u64, input: impl Read) {
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let facts = match validate(input) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{label}: validation failed: {e}");
            std::process::exit(1);
        }
    };
    let (cpu, wall) = (cpu_seconds() - cpu0, t0.elapsed().as_secs_f64());
    let gib = compressed_bytes as f64 / f64::from(1u32 << 30);
    println!(
        "{label:<44} {:>8.1} MiB archive  {:>8.1} MiB inflated  {:>3} entries  {:>6.2} CPU-s/GiB  {:>7.0} MiB/s",
        compressed_bytes as f64 / 1_048_576.0,
        facts.uncompressed_bytes as f64 / 1_048_576.0,
        facts.tar_entries,
        cpu / gib,
        compressed_bytes as f64 / 1_048_576.0 / wall.max(1e-9),
    );
}

fn main() {
    let mib: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1024);
    let size = mib << 20;
    // (a) The simulator's archive (generated into memory first, so only validation is timed).
    let mut archive = vec![0u8; usize::try_from(size).unwrap_or(0)];
    let filled = SnapshotBytes::new("bench", size).fill(&mut archive);
    archive.truncate(filled);
    measure(
        "simulator archive (stored deflate blocks)",
        size,
        &archive[..],
    );
    drop(archive);
    // (b) A compressed archive: 512-byte records, half repeated text, half random.
    let inner = (mib.min(512) << 20) * 3;
    let mut builder = tar::Builder::new(Vec::new());
    let mut data = Vec::with_capacity(usize::try_from(inner).unwrap_or(0));
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while (data.len() as u64) < inner {
        data.extend_from_slice(
            b"{\"_id\":{\"$oid\":\"65a1b2c3d4e5f60718293a4b\"},\"status\":\"shipped\",",
        );
        for _ in 0..24 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.push(b'a' + (x % 26) as u8);
        }
    }
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o600);
    header.set_cksum();
    if let Err(e) = builder.append_data(&mut header, "collection-0-1.wt", &data[..]) {
        eprintln!("{e}");
        return;
    }
    let tar = builder.into_inner().unwrap_or_default();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    if gz.write_all(&tar).is_err() {
        return;
    }
    let gz = gz.finish().unwrap_or_default();
    measure(
        "compressed archive (deflate level 6)",
        gz.len() as u64,
        &gz[..],
    );
}
