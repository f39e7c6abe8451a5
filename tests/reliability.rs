//! The reliability suite: the real binary (built with the `fault-injection` feature) against the
//! Atlas simulator and a real S3 server, through crashes at every journal transition, crashes at
//! seeded random byte offsets, and faults of the snapshot URL, Atlas, the store and the journal's
//! disk. Every scenario ends with the same checks: every snapshot the simulator still holds is in
//! the bucket exactly once with the right SHA-256 and manifest, `verify --all` passes, no multipart
//! upload is open, the journal agrees with the bucket, and no secret is in any output.
//!
//! Prints a matrix at the end and writes it to `target/reliability.md` (and to the file named by
//! `RELIABILITY_DOC`, which is how `docs/reliability.md` is refreshed).
//! Run: `cargo test --features fault-injection --test reliability [-- FILTER]`.
// A test crate: its helpers may unwrap (clippy.toml allows it inside `#[test]` functions only).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use atlas_archiver::simulator::{SimCluster, SimSnapshot, scenario};
use common::{Run, World, parse_json};
use rand::{RngExt as _, SeedableRng};

const PROJECT: &str = "5f0a1b2c3d4e5f60718293a4";
const RANDOM_KILLS: usize = 20;
const SEED: u64 = 20_261_128;

/// What a scenario reports for the matrix.
struct Stats {
    archived: usize,
    retries: usize,
    note: String,
}

type ScenarioFuture = Pin<Box<dyn Future<Output = Result<Stats, String>> + Send>>;

struct Scenario {
    name: String,
    run: Box<dyn Fn() -> ScenarioFuture + Send + Sync>,
}

fn scenario_of<F, Fut>(name: impl Into<String>, f: F) -> Scenario
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Stats, String>> + Send + 'static,
{
    Scenario {
        name: name.into(),
        run: Box::new(move || Box::pin(f())),
    }
}

/// `Some(skipped)` when the store cannot list multipart uploads (the embedded s3s-fs of a bare
/// `cargo test`): a scenario that counts the uploads a crash left open needs the listing, and
/// scripts/test.sh runs it on moto and Garage.
fn needs_upload_listing(c: &Case) -> Option<Stats> {
    (!c.w.s3.lists_uploads()).then(|| Stats {
        archived: 0,
        retries: 0,
        note: format!(
            "SKIPPED: {} cannot list multipart uploads (scripts/test.sh runs this on moto and Garage)",
            c.w.s3.name
        ),
    })
}

/// A world plus every output the binary produced in it.
struct Case {
    w: World,
    config: String,
    outputs: Vec<String>,
}

impl Case {
    async fn new(
        name: &str,
        clusters: Vec<SimCluster>,
        extra_atlas: &str,
        extra_storage: &str,
        proxy: bool,
    ) -> Self {
        let mut w = World::new(name, clusters).await;
        if proxy {
            w.attach_proxy().await;
        }
        let config = w
            .write_config(extra_atlas, extra_storage)
            .to_string_lossy()
            .into_owned();
        Self {
            w,
            config,
            outputs: Vec::new(),
        }
    }

    async fn once(&mut self, env: &[(&str, &str)]) -> Run {
        let run = self.w.run(&["once", "--config", &self.config], env).await;
        self.outputs.push(run.all());
        run
    }

    /// A run that must crash at the injected point (not exit by itself).
    /// Kills a run by `kill -9` once 11 MiB of the snapshot are uploaded (two 5 MiB parts),
    /// the download served with Range support, slowly enough to land mid-upload; the upload is
    /// then left open.
    async fn kill_mid_upload(&mut self) -> Result<(), String> {
        self.w.sim.set_faults(|f| {
            f.range_support = true;
            f.throttle_bytes_per_sec = Some(8 << 20);
        });
        self.crash(&[("ATLAS_ARCHIVER_CRASH_AT_BYTE", "11534336")])
            .await?;
        self.w.sim.set_faults(|f| f.throttle_bytes_per_sec = None);
        expect(
            self.w.open_uploads().await.len() == 1,
            "the killed run left its upload open",
        )
    }

    async fn crash(&mut self, env: &[(&str, &str)]) -> Result<(), String> {
        let run = self.once(env).await;
        if run.code == 0 || !run.stderr.contains("fault injection: crashing") {
            return Err(format!(
                "expected a crash at {env:?}, got exit {}:\n{}",
                run.code,
                tail(&run.stderr)
            ));
        }
        Ok(())
    }

    fn retries(&self) -> usize {
        self.outputs
            .iter()
            .flat_map(|o| o.lines())
            .filter(|l| {
                l.contains("trying again")
                    || l.contains("retrying")
                    || l.contains("asked us to retry")
            })
            .count()
    }

    /// Runs `once` without faults until it succeeds (at most three times), then checks everything.
    async fn settle_and_check(&mut self, note: impl Into<String>) -> Result<Stats, String> {
        let mut code = -1;
        for _ in 0..3 {
            let run = self.once(&[]).await;
            code = run.code;
            if code == 0 {
                break;
            }
        }
        if code != 0 {
            return Err(format!(
                "did not settle: last exit {code}\n{}",
                tail(self.outputs.last().map_or("", String::as_str))
            ));
        }
        let archived = self.check().await?;
        Ok(Stats {
            archived,
            retries: self.retries(),
            note: note.into(),
        })
    }

    /// The common end state. Returns how many snapshots are archived.
    async fn check(&mut self) -> Result<usize, String> {
        let w = &self.w;
        let keys = w.keys().await;
        let held: Vec<SimSnapshot> = w
            .sim
            .clusters()
            .into_iter()
            .flat_map(|c| c.snapshots)
            .collect();
        for snap in &held {
            let matching: Vec<&String> = keys
                .keys()
                .filter(|k| k.ends_with(&format!("{}.tar.gz", snap.id)))
                .collect();
            if matching.len() != 1 {
                return Err(format!(
                    "snapshot {} is in the bucket {} times: {matching:?}",
                    snap.id,
                    matching.len()
                ));
            }
            let key = matching[0];
            let sha = w.sha256_of_object(key).await;
            if sha != snap.sha256() {
                return Err(format!("{key}: sha256 {sha}, served {}", snap.sha256()));
            }
            let manifest =
                w.s3.client()
                    .await
                    .get_small(&format!("{key}.manifest.json"))
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("no manifest for {key}"))?;
            let m = parse_json(&String::from_utf8_lossy(&manifest));
            if m["sha256"] != snap.sha256().as_str()
                || m["snapshot_id"] != snap.id.as_str()
                || m["size_bytes"] != snap.size
            {
                return Err(format!("manifest of {key} disagrees: {m}"));
            }
        }
        if keys.len() != held.len() * 2 {
            return Err(format!(
                "expected {} objects (archives and manifests), found {}: {:?}",
                held.len() * 2,
                keys.len(),
                keys.keys()
            ));
        }
        let verify = w
            .run(&["verify", "--config", &self.config, "--all"], &[])
            .await;
        self.outputs.push(verify.all());
        if verify.code != 0 {
            return Err(format!("verify --all failed:\n{}", verify.stdout));
        }
        let open = w.open_uploads().await;
        if !open.is_empty() {
            return Err(format!("multipart uploads left open: {open:?}"));
        }
        let status = w
            .run(&["status", "--config", &self.config, "--json"], &[])
            .await;
        let report = parse_json(&status.stdout);
        let rows: Vec<&serde_json::Value> = report["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|t| t["snapshots"].as_array().into_iter().flatten())
            .collect();
        for snap in &held {
            let row = rows
                .iter()
                .find(|r| r["snapshot_id"] == snap.id.as_str())
                .ok_or_else(|| format!("the journal has no row for {}", snap.id))?;
            if row["state"] != "archived"
                || row["sha256"] != snap.sha256().as_str()
                || !row["upload_id"].is_null()
            {
                return Err(format!(
                    "the journal disagrees with the bucket for {}: {row}",
                    snap.id
                ));
            }
        }
        for row in rows.iter().filter(|r| r["state"] == "archived") {
            let key = row["object_key"].as_str().unwrap_or_default();
            if !keys.contains_key(key) {
                return Err(format!(
                    "the journal says {key} is archived; the bucket has no such object"
                ));
            }
        }
        let secrets = w.secrets();
        for output in &self.outputs {
            if let Some(s) = secrets.iter().find(|s| output.contains(s.as_str())) {
                return Err(format!("secret-like text {s:?} in the output"));
            }
        }
        Ok(held.len())
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(12)..].join("\n")
}

fn one_cluster(size: u64, count: usize) -> Vec<SimCluster> {
    scenario(PROJECT, &["rel-flex"], count, &[size])
}

/// 12 MiB and a bit, in 5 MiB parts: three parts, the last one short.
const BIG: u64 = (12 << 20) + 4321;
const PARTS: &str = "part_size = \"5MiB\"\nparts_in_flight = 2";

fn crash_points() -> Vec<Scenario> {
    let points = [
        (
            "after-download-intent",
            "POST not sent yet: the next run finds no job and asks once",
        ),
        (
            "after-download-requested",
            "the job is reused, not requested again",
        ),
        ("before-create-upload", "no upload yet"),
        (
            "after-create-upload",
            "an upload the journal never heard of: aborted as an orphan",
        ),
        (
            "after-upload-recorded",
            "an empty recorded upload: aborted, started over",
        ),
        (
            "before-complete",
            "all parts uploaded, not completed: resumed",
        ),
        (
            "after-complete",
            "complete but unrecorded: finished by HEAD, no new download",
        ),
        (
            "after-uploaded",
            "verified, no manifest: manifest written, no new download",
        ),
        (
            "after-manifest",
            "manifest written, not marked: finished, no new download",
        ),
    ];
    points
        .into_iter()
        .map(|(point, expectation)| {
            scenario_of(format!("kill -9 at {point}"), move || async move {
                let mut c = Case::new("crash", one_cluster(BIG, 1), "", PARTS, false).await;
                c.w.sim.set_faults(|f| f.range_support = true);
                c.crash(&[("ATLAS_ARCHIVER_CRASH_AT", point)]).await?;
                let before = c.w.sim.observed();
                let stats = c.settle_and_check(expectation).await?;
                let after = c.w.sim.observed();
                let stats = Stats {
                    note: format!(
                        "{expectation}{}",
                        if after.ranged_downloads > 0 {
                            " (ranged GET)"
                        } else {
                            ""
                        }
                    ),
                    ..stats
                };
                // Where the object was complete before the crash, nothing is downloaded again.
                if matches!(
                    point,
                    "after-complete" | "after-uploaded" | "after-manifest"
                ) && after.snapshot_downloads != before.snapshot_downloads
                {
                    return Err(format!(
                        "downloaded again after {point}: {} → {}",
                        before.snapshot_downloads, after.snapshot_downloads
                    ));
                }
                // Where the job was recorded, Atlas is not asked for a second download.
                if point != "after-download-intent" && after.download_requests != 1 {
                    return Err(format!(
                        "{} download requests after {point}",
                        after.download_requests
                    ));
                }
                Ok(stats)
            })
        })
        .collect()
}

fn random_kills() -> Vec<Scenario> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(SEED);
    (0..RANDOM_KILLS)
        .map(|i| {
            let offset: u64 = rng.random_range(1..BIG);
            let ranges = i % 2 == 0;
            scenario_of(
                format!(
                    "kill -9 at byte {offset}{}",
                    if ranges { " (Range)" } else { "" }
                ),
                move || async move {
                    let mut c = Case::new("random", one_cluster(BIG, 1), "", PARTS, false).await;
                    // A link slower than the store, as Atlas's is: parts land before the crash.
                    c.w.sim.set_faults(|f| {
                        f.range_support = ranges;
                        f.throttle_bytes_per_sec = Some(8 << 20);
                    });
                    let limit = offset.to_string();
                    c.crash(&[("ATLAS_ARCHIVER_CRASH_AT_BYTE", limit.as_str())])
                        .await?;
                    let stats = c.settle_and_check("").await?;
                    let resumed = c.w.sim.observed().ranged_downloads > 0;
                    Ok(Stats {
                        note: if resumed {
                            "resumed with a ranged GET".into()
                        } else {
                            "started over".into()
                        },
                        ..stats
                    })
                },
            )
        })
        .collect()
}

fn url_faults() -> Vec<Scenario> {
    vec![
        scenario_of("URL drops the connection mid-body (Range)", || async {
            let mut c = Case::new("cut", one_cluster(BIG, 1), "", PARTS, false).await;
            let id = c.w.sim.clusters()[0].snapshots[0].id.clone();
            c.w.sim.set_faults(|f| {
                f.range_support = true;
                f.cut_after.insert(id, 11 << 20);
                f.cut_times = 1;
            });
            let stats = c.settle_and_check("resumed").await?;
            expect(c.w.sim.observed().ranged_downloads == 1, "one ranged GET")?;
            Ok(stats)
        }),
        scenario_of("URL drops the connection mid-body (no Range)", || async {
            let mut c = Case::new("cutnr", one_cluster(BIG, 1), "", PARTS, false).await;
            let id = c.w.sim.clusters()[0].snapshots[0].id.clone();
            c.w.sim.set_faults(|f| {
                f.cut_after.insert(id, 7 << 20);
                f.cut_times = 1;
            });
            c.settle_and_check("started over").await
        }),
        scenario_of("URL answers 403 as if expired", || async {
            let mut c = Case::new("expired", one_cluster(3 << 20, 2), "", "", false).await;
            c.w.sim.set_faults(|f| f.expired_url_burst = 1);
            let stats = c.settle_and_check("a new download job").await?;
            expect(
                c.w.sim.observed().download_requests == 3,
                "a second job for the refused URL",
            )?;
            // Audit L9: one refused URL is one failed attempt, not two.
            let status =
                c.w.run(&["status", "--config", &c.config, "--json"], &[])
                    .await;
            let report = parse_json(&status.stdout);
            let attempts: Vec<u64> = report["targets"][0]["snapshots"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["attempts"].as_u64())
                .collect();
            expect(
                attempts.iter().max() == Some(&1),
                &format!("l9: one attempt counted for the refused URL: {attempts:?}"),
            )?;
            Ok(stats)
        }),
        scenario_of("URL serves fewer bytes than Content-Length", || async {
            let mut c = Case::new("short", one_cluster(BIG, 1), "", PARTS, false).await;
            let id = c.w.sim.clusters()[0].snapshots[0].id.clone();
            c.w.sim.set_faults(|f| {
                f.short_body_at.insert(id, 9 << 20);
                f.cut_times = 1;
                f.range_support = true;
            });
            c.settle_and_check("").await
        }),
        scenario_of(
            "watchdog: a URL that stalls beyond every timeout is cancelled and reported",
            || async {
                // The read timeout is an hour: only the run watchdog can end this stall.
                let mut c = Case::new(
                    "watchdog",
                    one_cluster(BIG, 1),
                    "download_read_timeout = \"1h\"",
                    &format!("{PARTS}\nrequest_timeout = \"2s\""),
                    false,
                )
                .await;
                let id = c.w.sim.clusters()[0].snapshots[0].id.clone();
                c.w.sim.set_faults(|f| {
                    f.stall_after.insert(id, 6 << 20);
                    f.cut_times = 1;
                    f.range_support = true;
                });
                let run = c
                    .once(&[("ATLAS_ARCHIVER__SCHEDULE__STALL_TIMEOUT", "15s")])
                    .await;
                expect(
                    run.code != 0 && run.all().contains("STALLED"),
                    &format!(
                        "the stalled run fails, naming the stall (exit {}):\n{}",
                        run.code,
                        tail(&run.all())
                    ),
                )?;
                c.settle_and_check(
                    "cancelled after 15 s without progress; the next run finished it",
                )
                .await
            },
        ),
        scenario_of("URL stalls (read timeout)", || async {
            let mut c = Case::new(
                "stall",
                one_cluster(BIG, 1),
                "download_read_timeout = \"1s\"",
                PARTS,
                false,
            )
            .await;
            let id = c.w.sim.clusters()[0].snapshots[0].id.clone();
            c.w.sim.set_faults(|f| {
                f.stall_after.insert(id, 6 << 20);
                f.cut_times = 1;
                f.range_support = true;
            });
            let stats = c.settle_and_check("").await?;
            let failures: Vec<&str> = c
                .outputs
                .iter()
                .flat_map(|o| o.lines())
                .filter(|l| l.contains("attempt failed"))
                .collect();
            expect(
                c.outputs.iter().any(|o| o.contains("DOWNLOAD_STALLED")),
                &format!("the stall is named: {failures:?}"),
            )?;
            Ok(stats)
        }),
    ]
}

/// Audit M5: what the URL serves must be a whole `.tar.gz`; anything else is not archived, and a
/// new download job is tried.
fn content_faults() -> Vec<Scenario> {
    vec![
        scenario_of("m5 URL serves a 200 text/html error page", || async {
            let mut c = Case::new("html", one_cluster(3 << 20, 1), "", "", false).await;
            c.w.sim.set_faults(|f| f.html_body_burst = 1);
            let stats = c
                .settle_and_check("refused by its content type; a new job")
                .await?;
            expect(
                c.outputs.iter().any(|o| o.contains("NOT_AN_ARCHIVE")),
                "the refusal is named",
            )?;
            expect(
                c.w.sim.observed().download_requests == 2,
                "a new download job after the error page",
            )?;
            Ok(stats)
        }),
        scenario_of(
            "m5 URL serves an HTML page labelled as a download",
            || async {
                let mut c = Case::new("html2", one_cluster(3 << 20, 1), "", "", false).await;
                c.w.sim
                    .set_faults(|f| f.html_without_content_type_burst = 1);
                let stats = c.settle_and_check("refused: not gzip").await?;
                expect(
                    c.outputs.iter().any(|o| o.contains("not gzip data")),
                    "the refusal says what was wrong",
                )?;
                Ok(stats)
            },
        ),
        scenario_of("m5 chunked body ends cleanly but early", || async {
            let mut c = Case::new("early", one_cluster(BIG, 1), "", PARTS, false).await;
            let id = c.w.sim.clusters()[0].snapshots[0].id.clone();
            c.w.sim.set_faults(|f| {
                f.chunked = true;
                f.short_body_at.insert(id, 9 << 20);
                f.cut_times = 1;
            });
            let stats = c
                .settle_and_check("truncation caught by the gzip check")
                .await?;
            expect(
                c.outputs.iter().any(|o| o.contains("NOT_AN_ARCHIVE")),
                "the truncated archive was refused",
            )?;
            Ok(stats)
        }),
        scenario_of(
            "m2 object complete, manifest missing, then the snapshot expires",
            || async {
                let mut c = Case::new("m2", one_cluster(BIG, 1), "", PARTS, false).await;
                let id = c.w.sim.clusters()[0].snapshots[0].id.clone();
                c.crash(&[("ATLAS_ARCHIVER_CRASH_AT", "after-uploaded")])
                    .await?;
                c.w.sim.expire_snapshot(&id);
                let run = c.once(&[]).await;
                expect(
                    run.code == 0 && !run.stdout.contains("LOST"),
                    &format!("finished, not LOST:\n{}{}", run.stdout, tail(&run.stderr)),
                )?;
                let keys = c.w.keys().await;
                expect(
                    keys.keys().any(|k| k.ends_with(".manifest.json")) && keys.len() == 2,
                    &format!("the archive and its manifest: {:?}", keys.keys()),
                )?;
                let status =
                    c.w.run(&["status", "--config", &c.config, "--json"], &[])
                        .await;
                expect(
                    status.stdout.contains("\"archived\""),
                    "the journal row is archived",
                )?;
                expect(c.w.open_uploads().await.is_empty(), "no upload left open")?;
                Ok(Stats {
                    archived: 1,
                    retries: c.retries(),
                    note: "finished from the bucket, not reported LOST".into(),
                })
            },
        ),
        scenario_of(
            "m2 upload open when the snapshot expires (Range)",
            || async {
                let mut c = Case::new("m2b", one_cluster(BIG, 1), "", PARTS, false).await;
                let id = c.w.sim.clusters()[0].snapshots[0].id.clone();
                c.w.sim.set_faults(|f| {
                    f.range_support = true;
                    f.throttle_bytes_per_sec = Some(8 << 20);
                });
                c.crash(&[("ATLAS_ARCHIVER_CRASH_AT_BYTE", "11534336")])
                    .await?;
                c.w.sim.expire_snapshot(&id);
                let run = c.once(&[]).await;
                expect(
                    run.stdout.contains("LOST"),
                    "a snapshot never archived and gone is LOST",
                )?;
                expect(
                    c.w.open_uploads().await.is_empty(),
                    "its open upload was aborted, not left billed forever",
                )?;
                Ok(Stats {
                    archived: 0,
                    retries: c.retries(),
                    note: "LOST, and its upload aborted".into(),
                })
            },
        ),
    ]
}

/// Audit L12: a crash between the last part and CompleteMultipartUpload of a snapshot whose
/// size is a whole number of parts leaves every byte journalled: the next run completes the
/// upload without downloading anything.
fn l12_every_byte_journalled() -> Scenario {
    scenario_of(
        "l12 kill -9 before Complete with every byte uploaded (3 x 5 MiB)",
        || async {
            let mut c = Case::new("l12", one_cluster(15 << 20, 1), "", PARTS, false).await;
            c.w.sim.set_faults(|f| f.range_support = true);
            c.crash(&[("ATLAS_ARCHIVER_CRASH_AT", "before-complete")])
                .await?;
            let before = c.w.sim.observed();
            let stats = c
                .settle_and_check("completed from the journalled parts, nothing downloaded")
                .await?;
            let after = c.w.sim.observed();
            expect(
                after.snapshot_downloads == before.snapshot_downloads,
                &format!(
                    "no download after the crash ({} → {})",
                    before.snapshot_downloads, after.snapshot_downloads
                ),
            )?;
            Ok(stats)
        },
    )
}

/// Audit M3: a crash right after a new download job is recorded, beside an upload the old job
/// fed, must not make the next run resume that upload with the new job's bytes.
fn m3_job_splice() -> Scenario {
    scenario_of("m3 a resume never splices two download jobs", || async {
        let mut c = Case::new("m3", one_cluster(BIG, 1), "", PARTS, false).await;
        if let Some(skipped) = needs_upload_listing(&c) {
            return Ok(skipped);
        }
        let id = c.w.sim.clusters()[0].snapshots[0].id.clone();
        c.w.sim.set_faults(|f| f.content_per_job = true);
        // Two parts of job 0's bytes uploaded, then killed.
        c.kill_mid_upload().await?;
        // Job 0 expires; the next run records job 1 and is killed at once.
        c.w.sim.expire_jobs();
        c.crash(&[("ATLAS_ARCHIVER_CRASH_AT", "after-download-requested")])
            .await?;
        let before = c.w.sim.observed();
        let run = c.once(&[]).await;
        expect(
            run.code == 0,
            &format!("the run succeeds:\n{}", tail(&run.stderr)),
        )?;
        let after = c.w.sim.observed();
        expect(
            after.ranged_downloads == before.ranged_downloads,
            "no ranged GET: job 1's bytes are not appended to job 0's parts",
        )?;
        let jobs = c.w.sim.job_sha256s(&id);
        expect(
            jobs.len() == 2 && jobs[0] != jobs[1],
            "two jobs, serving different bytes",
        )?;
        let keys = c.w.keys().await;
        let key = keys
            .keys()
            .find(|k| k.ends_with(&format!("{id}.tar.gz")))
            .ok_or("no archive")?
            .clone();
        let sha = c.w.sha256_of_object(&key).await;
        expect(sha == jobs[1], "the object is job 1's snapshot, whole")?;
        expect(
            c.w.open_uploads().await.is_empty(),
            "job 0's upload was aborted",
        )?;
        let verify =
            c.w.run(&["verify", "--config", &c.config, "--all"], &[])
                .await;
        expect(verify.code == 0, "verify --all passes")?;
        Ok(Stats {
            archived: 1,
            retries: c.retries(),
            note: "started over with the new job; the old job's upload aborted".into(),
        })
    })
}

fn atlas_faults() -> Vec<Scenario> {
    vec![
        scenario_of("Atlas 429 burst with Retry-After", || async {
            let mut c = Case::new("429ra", one_cluster(1 << 20, 2), "", "", false).await;
            c.w.sim.set_faults(|f| {
                f.api_429_burst = 4;
                f.retry_after_secs = Some(1);
            });
            c.settle_and_check("").await
        }),
        scenario_of("Atlas 429 burst without Retry-After", || async {
            let mut c = Case::new("429", one_cluster(1 << 20, 2), "", "", false).await;
            c.w.sim.set_faults(|f| f.api_429_burst = 5);
            c.settle_and_check("").await
        }),
        scenario_of("Atlas 500 and 503 runs", || async {
            let mut c = Case::new("5xx", one_cluster(1 << 20, 2), "", "", false).await;
            c.w.sim.set_faults(|f| {
                f.api_500_burst = 3;
                f.api_503_burst = 2;
            });
            c.settle_and_check("").await
        }),
        scenario_of("Atlas restore job FAILED", || async {
            let mut c = Case::new("jobfail", one_cluster(1 << 20, 2), "", "", false).await;
            let id = c.w.sim.clusters()[0].snapshots[0].id.clone();
            c.w.sim.set_faults(|f| {
                f.fail_jobs_for.insert(id);
            });
            let first = c.once(&[]).await;
            expect(
                first.code == 1 && first.stdout.contains("RESTORE_JOB_FAILED"),
                "the failure is reported",
            )?;
            c.w.sim.set_faults(|f| f.fail_jobs_for.clear());
            c.settle_and_check("retried on the next run").await
        }),
        scenario_of("Atlas job never completes (timeout)", || async {
            let mut c = Case::new(
                "stuck",
                one_cluster(1 << 20, 1),
                "restore_timeout = \"1s\"",
                "",
                false,
            )
            .await;
            c.w.sim.set_faults(|f| f.jobs_never_complete = true);
            let first = c.once(&[]).await;
            expect(
                first.code == 1 && first.stdout.contains("RESTORE_JOB_TIMEOUT"),
                "the timeout is reported",
            )?;
            c.w.sim.set_faults(|f| f.jobs_never_complete = false);
            c.settle_and_check("the job is reused once ready").await
        }),
        scenario_of(
            "snapshot disappears between listing and download",
            || async {
                let mut c = Case::new("vanish", one_cluster(1 << 20, 2), "", "", false).await;
                let id = c.w.sim.clusters()[0].snapshots[0].id.clone();
                c.w.sim.set_faults(|f| {
                    f.vanished.insert(id.clone());
                });
                let first = c.once(&[]).await;
                expect(
                    first.code == 1 && first.stdout.contains("LOST"),
                    "reported as LOST",
                )?;
                c.w.sim.expire_snapshot(&id);
                c.w.sim.set_faults(|f| f.vanished.clear());
                // Audit L3: the same loss is not reported (and paged) a second time.
                let second = c.once(&[]).await;
                expect(
                    second.code == 0 && !second.stdout.contains("LOST"),
                    &format!("l3: LOST reported once, not again:\n{}", second.stdout),
                )?;
                c.settle_and_check("reported LOST once").await
            },
        ),
        scenario_of("l4 restore job disappears while polled", || async {
            let mut c = Case::new("jobgone", one_cluster(1 << 20, 1), "", "", false).await;
            c.w.sim.set_faults(|f| f.delete_jobs_while_polled = 1);
            let stats = c.settle_and_check("a failed attempt, not LOST").await?;
            expect(
                !c.outputs.iter().any(|o| o.contains("LOST")),
                "a vanished job is not a lost snapshot",
            )?;
            Ok(stats)
        }),
        scenario_of("s3 download job for another snapshot", || async {
            let mut c = Case::new("wrongjob", one_cluster(1 << 20, 1), "", "", false).await;
            c.w.sim.set_faults(|f| f.job_for_other_snapshot_burst = 1);
            let first = c.once(&[]).await;
            expect(
                first.code == 1 && first.stdout.contains("with a job for snapshot"),
                &format!("refused, not archived under this key:\n{}", first.stdout),
            )?;
            expect(c.w.keys().await.is_empty(), "nothing archived")?;
            c.settle_and_check("refused; the next run asks again").await
        }),
        scenario_of("paging changes between pages", || async {
            let mut c = Case::new("paging", one_cluster(4096, 101), "", "", false).await;
            c.w.sim
                .set_faults(|f| f.new_snapshot_after_first_page = true);
            let first = c.once(&[]).await;
            expect(
                first.code == 0,
                "the first run archives every snapshot listed before the change",
            )?;
            expect(
                first.stdout.matches("archived  ").count() == 101,
                "101 archived, the repeated one once",
            )?;
            c.settle_and_check("101 archived despite the shift; the new one by the next run")
                .await
        }),
    ]
}

/// Audit L5: a key template edited between a crash and the resume must not move the upload in
/// flight (an orphaned upload, or two archive objects of one snapshot).
fn l5_template_edited_mid_upload() -> Scenario {
    scenario_of(
        "l5 key_template edited between a kill -9 and the resume",
        || async {
            let mut c = Case::new("l5", one_cluster(BIG, 1), "", PARTS, false).await;
            if let Some(skipped) = needs_upload_listing(&c) {
                return Ok(skipped);
            }
            c.kill_mid_upload().await?;
            let before: Vec<String> =
                c.w.open_uploads()
                    .await
                    .into_iter()
                    .map(|(k, _)| k)
                    .collect();
            // The operator edits the layout before the next run.
            c.config =
                c.w.write_config(
                    "",
                    &format!("{PARTS}\nkey_template = \"{{prefix}}moved/{{snapshot_id}}.tar.gz\""),
                )
                .to_string_lossy()
                .into_owned();
            let stats = c
                .settle_and_check(
                    "the upload in flight kept its key; later snapshots take the new layout",
                )
                .await?;
            let keys = c.w.keys().await;
            expect(
                keys.keys().any(|k| k == &before[0]),
                &format!(
                    "the archive is at the key its upload began with ({}): {:?}",
                    before[0],
                    keys.keys()
                ),
            )?;
            Ok(stats)
        },
    )
}

/// Audit L6: a snapshot whose upload this journal still holds, archived meanwhile by another
/// writer (a second journal on the same bucket), is adopted, and the held upload is aborted
/// rather than orphaned. The other writer must not touch this journal's upload (H1); whether the
/// store itself keeps that upload once another one completes the same key is the store's affair
/// (the end state is checked either way: no upload left open).
fn l6_adopt_aborts_the_held_upload() -> Scenario {
    scenario_of(
        "l6 adopting another writer's archive aborts the upload this journal held",
        || async {
            let mut c = Case::new("l6", one_cluster(BIG, 1), "", PARTS, false).await;
            if let Some(skipped) = needs_upload_listing(&c) {
                return Ok(skipped);
            }
            c.kill_mid_upload().await?;
            // A second writer, with its own journal, archives the snapshot.
            let text = std::fs::read_to_string(&c.config).map_err(|e| e.to_string())?;
            let other = std::path::Path::new(&c.config).with_file_name("other.toml");
            std::fs::write(
                &other,
                text.replace("state/journal.sqlite", "other-state/journal.sqlite"),
            )
            .map_err(|e| e.to_string())?;
            let run =
                c.w.run(&["once", "--config", &other.to_string_lossy()], &[])
                    .await;
            expect(
                run.code == 0,
                &format!("the other writer archives:\n{}", tail(&run.all())),
            )?;
            expect(
                !run.all().contains("aborted an orphan"),
                "the other writer aborted nothing of this journal's (H1)",
            )?;
            let stats = c
                .settle_and_check("adopted from the bucket; the held upload aborted, not orphaned")
                .await?;
            expect(
                c.outputs.iter().any(|o| o.contains("adopt")),
                "the first journal adopted the archive",
            )?;
            Ok(stats)
        },
    )
}

/// Audit S6: a store whose metadata lags behind Complete answers HEAD 404 for a moment; the
/// first run asks again and archives, instead of failing the snapshot.
fn s6_metadata_lag() -> Scenario {
    scenario_of(
        "s6 HEAD answers 404 right after Complete (metadata lag)",
        || async {
            let mut c = Case::new("s6", one_cluster(BIG, 1), "", PARTS, true).await;
            if let Some(p) = &c.w.proxy {
                p.set(|f| f.head_404_after_complete = 2);
            }
            let first = c.once(&[]).await;
            expect(
                first.code == 0,
                &format!("the first run archives:\n{}", tail(&first.all())),
            )?;
            let injected = c.w.proxy.as_ref().map_or(0, |p| p.seen().injected);
            expect(injected == 2, &format!("two 404s injected, saw {injected}"))?;
            let stats = c
                .settle_and_check("asked again after 0.5 s and 1 s; archived by the first run")
                .await?;
            Ok(stats)
        },
    )
}

fn store_faults() -> Vec<Scenario> {
    type Fault = fn(&mut common::s3_proxy::StoreFaults);
    let cases: Vec<(&str, &str, Fault)> = vec![
        ("store 500 on UploadPart", "", |f| f.upload_part_500 = 3),
        ("store SlowDown on UploadPart", "", |f| {
            f.upload_part_slowdown = 3
        }),
        ("store 500 on CompleteMultipartUpload", "", |f| {
            f.complete_500 = 2
        }),
        ("store SlowDown on CompleteMultipartUpload", "", |f| {
            f.complete_slowdown = 2
        }),
        ("Complete answers 200 with an error body", "", |f| {
            f.complete_200_error = 1
        }),
        ("NoSuchUpload after a retried Complete", "", |f| {
            f.complete_lost_response = 1
        }),
        (
            "store rejects checksum headers",
            "checksum = \"crc32c\"\n",
            |f| f.reject_checksums = true,
        ),
    ];
    cases
        .into_iter()
        .map(|(name, extra, fault)| {
            scenario_of(name, move || async move {
                let storage = format!("{PARTS}\n{extra}");
                let mut c = Case::new("store", one_cluster(BIG, 1), "", &storage, true).await;
                if let Some(p) = &c.w.proxy {
                    p.set(fault);
                }
                let stats = c.settle_and_check("").await?;
                let injected = c.w.proxy.as_ref().map_or(0, |p| p.seen().injected);
                expect(injected > 0, "the proxy injected its fault")?;
                Ok(Stats {
                    note: format!("{injected} faults injected"),
                    ..stats
                })
            })
        })
        .collect()
}

/// Audit H2 and M4: a store that stops answering (a black hole: the request is read, never
/// answered, the connection never closed) fails that request after `storage.request_timeout`
/// and the retry goes through; a part refused with `BadDigest` is retried with checksums on.
fn store_black_holes() -> Vec<Scenario> {
    type Fault = fn(&mut common::s3_proxy::StoreFaults);
    let cases: Vec<(&str, Fault)> = vec![
        ("h2 store black-holes an UploadPart", |f| {
            f.black_hole_upload_part = 1
        }),
        ("h2 store black-holes CompleteMultipartUpload", |f| {
            f.black_hole_complete = 1
        }),
        ("h2 store black-holes HeadObject", |f| f.black_hole_head = 1),
    ];
    let mut out: Vec<Scenario> = cases
        .into_iter()
        .map(|(name, fault)| {
            scenario_of(name, move || async move {
                let storage = format!("{PARTS}\nrequest_timeout = \"2s\"");
                let mut c = Case::new("hole", one_cluster(BIG, 1), "", &storage, true).await;
                if let Some(p) = &c.w.proxy {
                    p.set(fault);
                }
                let stats = c.settle_and_check("timed out, retried").await?;
                let injected = c.w.proxy.as_ref().map_or(0, |p| p.seen().injected);
                expect(injected == 1, "the proxy swallowed one request")?;
                Ok(Stats {
                    note: "the silent request timed out and was retried".into(),
                    ..stats
                })
            })
        })
        .collect();
    out.push(scenario_of(
        "l7 store refuses AbortMultipartUpload (500)",
        || async {
            let mut c = Case::new("abort500", one_cluster(BIG, 1), "", PARTS, true).await;
            let id = c.w.sim.clusters()[0].snapshots[0].id.clone();
            // The download breaks after two parts and the URL ignores Range, so the upload must
            // be aborted before starting over; the store refuses every try of the first abort.
            c.w.sim.set_faults(|f| {
                f.cut_after.insert(id, 11 << 20);
                f.cut_times = 1;
            });
            if let Some(p) = &c.w.proxy {
                p.set(|f| f.abort_500 = 5);
            }
            let stats = c.settle_and_check("").await?;
            let injected = c.w.proxy.as_ref().map_or(0, |p| p.seen().injected);
            expect(injected >= 1, "the proxy refused an abort")?;
            Ok(Stats {
                note: "the refused abort was kept and retried; no upload left open".into(),
                ..stats
            })
        },
    ));
    out.push(scenario_of(
        "m4 BadDigest on a part keeps checksums on",
        || async {
            let storage = format!("{PARTS}\nchecksum = \"crc32c\"");
            let mut c = Case::new("baddigest", one_cluster(BIG, 1), "", &storage, true).await;
            if let Some(p) = &c.w.proxy {
                p.set(|f| f.upload_part_bad_digest = 1);
            }
            let stats = c.settle_and_check("").await?;
            let seen = c.w.proxy.as_ref().map(|p| p.seen()).unwrap_or_default();
            expect(seen.injected == 1, "one BadDigest injected")?;
            expect(
                !c.outputs.iter().any(|o| o.contains("refuses S3 checksum")),
                "a digest mismatch is not taken for a store that refuses checksums",
            )?;
            expect(
                seen.parts_without_checksum == 0 && seen.parts_with_checksum > 3,
                &format!(
                    "every part carried its CRC32C ({} with, {} without)",
                    seen.parts_with_checksum, seen.parts_without_checksum
                ),
            )?;
            Ok(Stats {
                note: "retried with CRC32C still on".into(),
                ..stats
            })
        },
    ));
    out
}

fn journal_faults() -> Vec<Scenario> {
    vec![
        scenario_of("journal disk full", || async {
            let mut c = Case::new("diskfull", one_cluster(1 << 20, 2), "", "", false).await;
            let mount = c.w.path("jfs");
            std::fs::create_dir_all(&mount).map_err(|e| e.to_string())?;
            let mounted = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
                .arg(&mount)
                .status()
                .is_ok_and(|s| s.success());
            if !mounted {
                return Ok(Stats {
                    archived: 0,
                    retries: 0,
                    note: "SKIPPED: mounting a tmpfs needs root (CI runs as root)".into(),
                });
            }
            let result = disk_full(&mut c, &mount).await;
            let _ = std::process::Command::new("umount").arg(&mount).status();
            result
        }),
        scenario_of("journal truncated mid-page", || async {
            let mut c = Case::new("truncated", one_cluster(1 << 20, 2), "", "", false).await;
            expect(c.once(&[]).await.code == 0, "first run")?;
            let journal = c.w.path("state/journal.sqlite");
            let len = std::fs::metadata(&journal)
                .map_err(|e| e.to_string())?
                .len();
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&journal)
                .map_err(|e| e.to_string())?;
            file.set_len(len / 2 + 777).map_err(|e| e.to_string())?;
            let refused = c.once(&[]).await;
            expect(
                refused.code == 1 && refused.stderr.contains("journal rebuild"),
                "refused with advice",
            )?;
            let rebuilt =
                c.w.run(&["journal", "rebuild", "--config", &c.config], &[])
                    .await;
            expect(rebuilt.code == 0, "journal rebuild")?;
            let downloads = c.w.sim.observed().snapshot_downloads;
            let stats = c
                .settle_and_check("refused, rebuilt from manifests")
                .await?;
            expect(
                c.w.sim.observed().snapshot_downloads == downloads,
                "nothing downloaded twice",
            )?;
            Ok(stats)
        }),
        scenario_of("two processes on one journal", || async {
            let mut c = Case::new("twoproc", one_cluster(4 << 20, 1), "", "", false).await;
            c.w.sim
                .set_faults(|f| f.throttle_bytes_per_sec = Some(2 << 20));
            let first = tokio::process::Command::new(env!("CARGO_BIN_EXE_atlas-archiver"))
                .args(["once", "--config", &c.config])
                .current_dir(c.w.dir.path())
                .env_clear()
                .kill_on_drop(true)
                .output();
            let first = tokio::spawn(first);
            let started = Instant::now();
            while c.w.sim.observed().snapshot_downloads == 0
                && started.elapsed() < Duration::from_secs(20)
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let second = c.once(&[]).await;
            expect(
                second.code == 1
                    && second
                        .stderr
                        .contains("in use by another atlas-archiver process"),
                "the second is refused",
            )?;
            let first = first
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            expect(first.status.code() == Some(0), "the first finishes")?;
            c.w.sim.set_faults(|f| f.throttle_bytes_per_sec = None);
            c.settle_and_check("the second refused with the holder's pid")
                .await
        }),
    ]
}

async fn disk_full(c: &mut Case, mount: &std::path::Path) -> Result<Stats, String> {
    let text = std::fs::read_to_string(&c.config).map_err(|e| e.to_string())?;
    let journal = mount.join("journal.sqlite");
    std::fs::write(
        &c.config,
        text.replace(
            "path = \"state/journal.sqlite\"",
            &format!("path = \"{}\"", journal.display()),
        ),
    )
    .map_err(|e| e.to_string())?;
    expect(c.once(&[]).await.code == 0, "first run")?;
    // Fill the filesystem, then add snapshots so that the next run has to write.
    let filler = mount.join("filler");
    let _ = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=4k"])
        .arg(format!("of={}", filler.display()))
        .stderr(std::process::Stdio::null())
        .status();
    let now = chrono::Utc::now();
    for i in 0..3u64 {
        c.w.sim.add_snapshot(
            PROJECT,
            "rel-flex",
            SimSnapshot {
                id: format!("6a6f78e0dddddddddddd000{i}"),
                size: 1 << 20,
                status: "COMPLETED".into(),
                scheduled: now,
                finished: now,
            },
        );
    }
    let full = c.once(&[]).await;
    expect(
        full.code != 0 && full.stderr.contains("disk is full"),
        &format!(
            "a clear disk-full error, got exit {}:\n{}",
            full.code,
            tail(&full.stderr)
        ),
    )?;
    std::fs::remove_file(&filler).map_err(|e| e.to_string())?;
    c.settle_and_check("clear error, no corruption, finished after space was freed")
        .await
}

fn expect(condition: bool, what: &str) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(format!("expected: {what}"))
    }
}

struct Row {
    name: String,
    outcome: Result<Stats, String>,
    seconds: f64,
}

fn main() {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut scenarios = Vec::new();
    scenarios.extend(crash_points());
    scenarios.extend(random_kills());
    scenarios.push(m3_job_splice());
    scenarios.push(l12_every_byte_journalled());
    scenarios.push(s6_metadata_lag());
    scenarios.push(l5_template_edited_mid_upload());
    scenarios.push(l6_adopt_aborts_the_held_upload());
    scenarios.extend(url_faults());
    scenarios.extend(content_faults());
    scenarios.extend(atlas_faults());
    scenarios.extend(store_faults());
    scenarios.extend(store_black_holes());
    scenarios.extend(journal_faults());
    let server =
        std::env::var("ATLAS_ARCHIVER_TEST_S3_NAME").unwrap_or_else(|_| "s3s-fs (embedded)".into());
    let started = Instant::now();
    let mut rows = Vec::new();
    for s in scenarios
        .iter()
        .filter(|s| filter.as_ref().is_none_or(|f| s.name.contains(f.as_str())))
    {
        let t = Instant::now();
        let fut = (s.run)();
        let outcome = runtime.block_on(async move {
            match tokio::time::timeout(Duration::from_secs(180), tokio::spawn(fut)).await {
                Err(_) => Err("timed out after 180s".to_owned()),
                Ok(Err(join)) => Err(format!("panicked: {join}")),
                Ok(Ok(result)) => result,
            }
        });
        let seconds = t.elapsed().as_secs_f64();
        match &outcome {
            Ok(_) => println!("ok      {:<55} {seconds:>6.1}s", s.name),
            Err(e) => println!("FAILED  {:<55} {seconds:>6.1}s\n{e}\n", s.name),
        }
        rows.push(Row {
            name: s.name.clone(),
            outcome,
            seconds,
        });
    }
    let failed = rows.iter().filter(|r| r.outcome.is_err()).count();
    let mut table = format!(
        "# Reliability matrix\n\nS3 server: {server}. Seed {SEED}, {RANDOM_KILLS} random kill points. {} scenarios in {:.0} s.\nEvery scenario ends with: each snapshot the simulator holds is in the bucket exactly once with the right SHA-256 and manifest, `verify --all` passes, no multipart upload is open, the journal agrees with the bucket, and no secret appears in any output.\n\n| scenario | outcome | snapshots archived | retries | seconds | note |\n|---|---|---|---|---|---|\n",
        rows.len(),
        started.elapsed().as_secs_f64()
    );
    for r in &rows {
        let (outcome, archived, retries, note) = match &r.outcome {
            Ok(s) if s.note.starts_with("SKIPPED") => {
                ("skipped", s.archived, s.retries, s.note.clone())
            }
            Ok(s) => ("pass", s.archived, s.retries, s.note.clone()),
            Err(e) => (
                "FAIL",
                0,
                0,
                e.lines().next().unwrap_or_default().to_owned(),
            ),
        };
        table.push_str(&format!(
            "| {} | {outcome} | {archived} | {retries} | {:.1} | {} |\n",
            r.name,
            r.seconds,
            note.replace('|', "/")
        ));
    }
    println!("\n{table}");
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/reliability.md");
    let _ = std::fs::write(&target, &table);
    if let Ok(doc) = std::env::var("RELIABILITY_DOC") {
        let _ = std::fs::write(doc, &table);
    }
    let by_state: HashMap<bool, usize> = rows.iter().fold(HashMap::new(), |mut m, r| {
        *m.entry(r.outcome.is_ok()).or_default() += 1;
        m
    });
    println!(
        "reliability: {} passed, {} failed",
        by_state.get(&true).copied().unwrap_or(0),
        failed
    );
    if failed > 0 {
        std::process::exit(1);
    }
}
