use super::*;
use crate::reason::Reason;
use crate::target::Target;
use chrono::{DateTime, Utc};

fn key(id: &str) -> SnapshotKey {
    SnapshotKey {
        project_id: "32b6e34b3d91647abb20e7b8".into(),
        cluster: "orders-flex".into(),
        snapshot_id: id.into(),
    }
}

fn open(dir: &tempfile::TempDir) -> Journal {
    Journal::open(&dir.path().join("j.sqlite")).unwrap()
}

fn plan(object_key: &str) -> UploadPlan {
    UploadPlan {
        object_key: object_key.into(),
        part_size: 8 << 20,
        source_etag: Some("\"e1\"".into()),
        source_length: Some(42),
    }
}

fn assert_refused(result: Result<SnapshotRecord, JournalError>, what: &str) {
    assert!(
        matches!(result, Err(JournalError::InvalidTransition { .. })),
        "{what}: {result:?}"
    );
}

#[tokio::test]
async fn each_step_writes_its_columns_and_refuses_the_states_it_does_not_accept() {
    let dir = tempfile::tempdir().unwrap();
    let j = open(&dir);
    let k = key("6a6f78e0cab84da5c4476b25");
    let r = j
        .discover(k.clone(), SnapshotFacts::default())
        .await
        .unwrap();
    assert_eq!(r.state, SnapshotState::Discovered);
    assert_refused(
        j.start_upload(&k, plan("k")).await,
        "no upload before a download",
    );
    assert_refused(
        j.archive(&k).await,
        "no archive before the object is confirmed",
    );
    assert_refused(j.discard_object(&k).await, "nothing to discard yet");

    let r = j.request_download(&k).await.unwrap();
    assert_eq!(
        (r.state, r.restore_job_id.as_deref()),
        (SnapshotState::DownloadRequested, None)
    );
    let r = j.record_job(&k, "job1").await.unwrap();
    assert_eq!(r.restore_job_id.as_deref(), Some("job1"));
    let r = j.start_upload(&k, plan("k")).await.unwrap();
    assert_eq!(r.state, SnapshotState::Uploading);
    assert_eq!(
        (r.object_key.as_deref(), r.part_size, r.source_length),
        (Some("k"), Some(8 << 20), Some(42))
    );
    assert_eq!(
        r.upload_id, None,
        "the intent is recorded before the store answers"
    );
    let r = j.record_upload(&k, "up1", true).await.unwrap();
    assert_eq!(
        (r.upload_id.as_deref(), r.upload_crc32c),
        (Some("up1"), true)
    );
    j.record_part(&k, "up1", part(1)).await.unwrap();

    let failed = j
        .fail(&k, &Reason::DownloadInterrupted, "cut")
        .await
        .unwrap();
    assert_eq!(failed.attempts, 1);
    assert_eq!(
        failed.upload_id.as_deref(),
        Some("up1"),
        "a failure keeps the upload for a resume"
    );
    assert_eq!(
        failed.restore_job_id.as_deref(),
        Some("job1"),
        "the job is kept for reuse"
    );
    assert_eq!(failed.last_reason.as_deref(), Some("DOWNLOAD_INTERRUPTED"));
    let r = j.forget_upload(&k, "up1").await.unwrap();
    assert_eq!((r.state, r.upload_id), (SnapshotState::Failed, None));
    assert!(
        j.parts(&k, "up1").await.unwrap().is_empty(),
        "an aborted upload's parts are forgotten"
    );

    let r = j.record_job(&k, "job1").await.unwrap();
    assert_eq!(r.state, SnapshotState::DownloadRequested);
    j.start_upload(&k, plan("k")).await.unwrap();
    j.record_upload(&k, "up2", false).await.unwrap();
    let r = j
        .stream_complete(
            &k,
            &StreamResult {
                size_bytes: 42,
                sha256: "ab".into(),
                crc32c: "cd".into(),
                parts: 1,
            },
        )
        .await
        .unwrap();
    assert_eq!((r.size_bytes, r.sha256.as_deref()), (Some(42), Some("ab")));
    let r = j.object_confirmed(&k, 42).await.unwrap();
    assert_eq!((r.state, r.upload_id), (SnapshotState::Uploaded, None));
    let done = j.archive(&k).await.unwrap();
    assert_eq!(done.state, SnapshotState::Archived);
    assert_eq!(done.last_error, None, "archiving clears the last error");
    assert_eq!(done.attempts, 1, "only the failure counted an attempt");
    assert!(done.archived_at.is_some());
    assert_refused(j.request_download(&k).await, "archived is final");
    assert_refused(
        j.fail(&k, &Reason::Internal, "x").await,
        "archived is final",
    );
    let rediscovered = j
        .discover(k.clone(), SnapshotFacts::default())
        .await
        .unwrap();
    assert_eq!(
        rediscovered.state,
        SnapshotState::Archived,
        "discovering again changes nothing"
    );

    let events = j.events(&k).await.unwrap();
    let path: Vec<&str> = events.iter().map(|e| e.2.as_str()).collect();
    assert_eq!(
        path,
        [
            "discovered",
            "download_requested",
            "download_requested",
            "uploading",
            "uploading",
            "failed",
            "failed",
            "download_requested",
            "uploading",
            "uploading",
            "uploading",
            "uploaded",
            "archived"
        ]
    );
    let unknown = j
        .fail(&key("ffffffffffffffffffffffff"), &Reason::Internal, "x")
        .await;
    assert!(matches!(unknown, Err(JournalError::UnknownSnapshot(_))));
}

/// Audit L9 / issue 8: a refused URL is one failed attempt, however many steps record it.
#[tokio::test]
async fn a_refused_url_counts_one_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let j = open(&dir);
    let k = key("6a6f78e0cab84da5c4476b25");
    j.discover(k.clone(), SnapshotFacts::default())
        .await
        .unwrap();
    j.request_download(&k).await.unwrap();
    j.record_job(&k, "job1").await.unwrap();
    j.fail(&k, &Reason::UrlExpired, "the snapshot URL was refused")
        .await
        .unwrap();
    let r = j.forget_job(&k).await.unwrap();
    assert_eq!((r.attempts, r.restore_job_id), (1, None));
    let r = j.interrupted(&k).await.unwrap();
    assert_eq!(r.attempts, 1, "a shutdown is not an attempt");
}

#[tokio::test]
async fn adopting_and_discarding_record_what_the_bucket_holds() {
    let dir = tempfile::tempdir().unwrap();
    let j = open(&dir);
    let a = key("6a6f78e0cab84da5c4476b25");
    j.discover(a.clone(), SnapshotFacts::default())
        .await
        .unwrap();
    j.request_download(&a).await.unwrap();
    j.record_job(&a, "job1").await.unwrap();
    j.start_upload(&a, plan("a")).await.unwrap();
    j.record_upload(&a, "up1", false).await.unwrap();
    j.record_part(&a, "up1", part(1)).await.unwrap();
    let object = ArchivedObject {
        object_key: "a".into(),
        size_bytes: 7,
        sha256: "s".into(),
        crc32c: "c".into(),
        restore_job_id: None,
    };
    let r = j.adopt(&a, object, "adopted").await.unwrap();
    assert_eq!(r.state, SnapshotState::Archived);
    assert_eq!(
        (r.size_bytes, r.upload_id, r.restore_job_id.as_deref()),
        (Some(7), None, Some("job1"))
    );
    assert!(j.parts(&a, "up1").await.unwrap().is_empty());

    let b = key("6a6f78e0cab84da5c4476b26");
    j.discover(b.clone(), SnapshotFacts::default())
        .await
        .unwrap();
    j.request_download(&b).await.unwrap();
    j.record_job(&b, "job2").await.unwrap();
    j.start_upload(&b, plan("b")).await.unwrap();
    j.stream_complete(
        &b,
        &StreamResult {
            size_bytes: 3,
            sha256: "s".into(),
            crc32c: "c".into(),
            parts: 1,
        },
    )
    .await
    .unwrap();
    j.object_confirmed(&b, 3).await.unwrap();
    let r = j.discard_object(&b).await.unwrap();
    assert_eq!(r.state, SnapshotState::Failed);
    assert_eq!(
        (r.size_bytes, r.sha256, r.restore_job_id, r.attempts),
        (None, None, None, 0)
    );
}

fn part(number: i32) -> PartRecord {
    PartRecord {
        number,
        size: 8 << 20,
        etag: format!("\"p{number}\""),
        sha256_state: String::new(),
        part_crc32c: 0,
        crc32c_after: 0,
        bytes_after: 8 << 20,
    }
}
#[tokio::test]
async fn runs_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let j = open(&dir);
    let id = j.start_run("once").await.unwrap();
    j.finish_run(
        id,
        RunSummary {
            archived: 2,
            skipped: 1,
            failed: 1,
            error: None,
        },
    )
    .await
    .unwrap();
    let runs = j.recent_runs(5).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (runs[0].status.as_str(), runs[0].archived, runs[0].failed),
        ("failed", 2, 1)
    );
}

#[test]
fn a_second_process_is_refused_with_the_holders_pid() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(&dir);
    let second = Journal::open(&dir.path().join("j.sqlite"));
    let message = second
        .map(|_| ())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        message.contains("in use") && message.contains(&format!("pid {}", std::process::id())),
        "{message}"
    );
    // Readers need no lock.
    assert!(Journal::open_read_only(first.path()).is_ok());
    drop(first);
    assert!(
        Journal::open(&dir.path().join("j.sqlite")).is_ok(),
        "the lock goes with its holder"
    );
}

#[test]
fn a_newer_schema_is_refused_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.sqlite");
    drop(open(&dir));
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let message = Journal::open(&path)
        .map(|_| ())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        message.contains("schema version 99") && message.contains("upgrade atlas-archiver"),
        "{message}"
    );
}

#[test]
fn a_damaged_file_is_refused_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.sqlite");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let message = Journal::open(&path)
        .map(|_| ())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        message.contains("damaged") && message.contains("journal rebuild"),
        "{message}"
    );
}

#[test]
fn l13_two_rebuilds_in_one_second_keep_both_saved_journals() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.sqlite");
    drop(open(&dir));
    for _ in 0..2 {
        let (journal, moved) = Journal::open_fresh(&path).unwrap();
        assert!(moved.is_some());
        drop(journal);
    }
    let saved = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.contains(".replaced-") && !name.ends_with("-wal") && !name.ends_with("-shm")
        })
        .count();
    assert_eq!(saved, 2, "the first saved journal was overwritten");
}

#[tokio::test]
async fn m3_the_upload_remembers_the_job_that_fed_it_when_a_new_job_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let j = open(&dir);
    let k = key("6a6f78e0cab84da5c4476b26");
    j.discover(k.clone(), SnapshotFacts::default())
        .await
        .unwrap();
    j.request_download(&k).await.unwrap();
    j.record_job(&k, "job0").await.unwrap();
    j.start_upload(&k, plan("k")).await.unwrap();
    let r = j.record_upload(&k, "up0", true).await.unwrap();
    assert_eq!(r.upload_job_id.as_deref(), Some("job0"));
    j.fail(&k, &Reason::DownloadInterrupted, "cut")
        .await
        .unwrap();
    // Job 0 expired; a new one is recorded while the upload is still open (and a crash may
    // come now): the upload stays bound to the job that fed it.
    let r = j.record_job(&k, "job1").await.unwrap();
    assert_eq!(
        (
            r.restore_job_id.as_deref(),
            r.upload_id.as_deref(),
            r.upload_job_id.as_deref()
        ),
        (Some("job1"), Some("up0"), Some("job0"))
    );
    let r = j.forget_upload(&k, "up0").await.unwrap();
    assert_eq!((r.upload_id, r.upload_job_id), (None, None));
    let r = j.start_upload(&k, plan("k")).await.unwrap();
    assert_eq!(r.upload_job_id.as_deref(), Some("job1"));
}

/// Issue 11: a version-4 journal migrates to 5 with its rows, and then takes the `pruned` state,
/// which is final: no step but `prune` itself accepts it.
#[tokio::test]
async fn a_version_4_journal_migrates_and_pruned_is_final() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.sqlite");
    {
        let conn = Connection::open(&path).unwrap();
        for sql in &schema::MIGRATIONS[..4] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 4).unwrap();
        conn.execute(
            "INSERT INTO snapshots (project_id, cluster, snapshot_id, state, object_key, size_bytes, sha256, crc32c, updated_at)
             VALUES ('32b6e34b3d91647abb20e7b8', 'orders-flex', 'aaaaaaaaaaaaaaaaaaaaaaaa', 'archived', 'k.tar.gz', 7, 'ab', 'cd', '2026-11-01T00:00:00Z')",
            [],
        )
        .unwrap();
    }
    let j = Journal::open(&path).unwrap();
    let k = key("aaaaaaaaaaaaaaaaaaaaaaaa");
    let row = j.get(&k).await.unwrap().unwrap();
    assert_eq!(
        (row.state, row.object_key.as_deref()),
        (SnapshotState::Archived, Some("k.tar.gz"))
    );
    let object = ArchivedObject {
        object_key: "k.tar.gz".into(),
        size_bytes: 7,
        sha256: "ab".into(),
        crc32c: "cd".into(),
        restore_job_id: None,
    };
    let pruned = j
        .prune(&k, SnapshotFacts::default(), object.clone(), "test")
        .await
        .unwrap();
    assert_eq!(pruned.state, SnapshotState::Pruned);
    // Pruning again is a no-op; nothing else moves it.
    assert_eq!(
        j.prune(&k, SnapshotFacts::default(), object.clone(), "again")
            .await
            .unwrap()
            .state,
        SnapshotState::Pruned
    );
    assert_refused(j.adopt(&k, object.clone(), "x").await, "adopt a pruned row");
    assert_refused(
        j.fail(&k, &Reason::SnapshotLost, "x").await,
        "fail a pruned row",
    );
    // A snapshot the journal never knew (a lost journal) is recorded, then pruned.
    let unknown = key("bbbbbbbbbbbbbbbbbbbbbbbb");
    let r = j
        .prune(&unknown, SnapshotFacts::default(), object, "lost journal")
        .await
        .unwrap();
    assert_eq!(r.state, SnapshotState::Pruned);
}

/// Issue 13: a version-5 journal migrates to 6 taking each target's last start as its first;
/// from then on the first start stays the first, whatever runs follow.
#[tokio::test]
async fn a_version_5_journal_migrates_and_the_first_start_stays_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.sqlite");
    {
        let conn = Connection::open(&path).unwrap();
        for sql in &schema::MIGRATIONS[..5] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 5).unwrap();
        conn.execute(
            "INSERT INTO target_runs (project_id, cluster, last_started_at) VALUES ('32b6e34b3d91647abb20e7b8', 'orders-flex', '2026-11-01T00:00:00+00:00')",
            [],
        )
        .unwrap();
    }
    let j = Journal::open(&path).unwrap();
    let first = |h: &[TargetHistory], cluster: &str| {
        h.iter()
            .find(|t| t.target.cluster == cluster)
            .and_then(|t| t.first_started_at)
            .map(|t| t.to_rfc3339())
    };
    let history = j.target_history().await.unwrap();
    assert_eq!(
        first(&history, "orders-flex").as_deref(),
        Some("2026-11-01T00:00:00+00:00")
    );
    let t = |cluster: &str| Target {
        project_id: "32b6e34b3d91647abb20e7b8".into(),
        cluster: cluster.into(),
    };
    let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
    j.target_started(&t("orders-flex"), at("2026-12-01T00:00:00Z"))
        .await
        .unwrap();
    j.target_started(&t("new-flex"), at("2026-12-02T00:00:00Z"))
        .await
        .unwrap();
    j.target_started(&t("new-flex"), at("2026-12-03T00:00:00Z"))
        .await
        .unwrap();
    let history = j.target_history().await.unwrap();
    assert_eq!(
        first(&history, "orders-flex").as_deref(),
        Some("2026-11-01T00:00:00+00:00")
    );
    assert_eq!(
        first(&history, "new-flex").as_deref(),
        Some("2026-12-02T00:00:00+00:00")
    );
}

/// Issue 13 (status page): a target's run that failed as a whole keeps why; the next
/// successful run clears it.
#[tokio::test]
async fn a_target_failure_keeps_its_reason_until_a_success() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(&dir.path().join("j.sqlite")).unwrap();
    let t = Target {
        project_id: "32b6e34b3d91647abb20e7b8".into(),
        cluster: "orders-flex".into(),
    };
    let error_of = |h: Vec<TargetHistory>| h.into_iter().next().and_then(|h| h.last_error);
    j.target_started(&t, Utc::now()).await.unwrap();
    j.target_finished(
        &t,
        false,
        Some("cannot list snapshots: HTTP 503"),
        Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(
        error_of(j.target_history().await.unwrap()).as_deref(),
        Some("cannot list snapshots: HTTP 503")
    );
    j.target_started(&t, Utc::now()).await.unwrap();
    j.target_finished(&t, true, None, Utc::now()).await.unwrap();
    assert_eq!(error_of(j.target_history().await.unwrap()), None);
}
