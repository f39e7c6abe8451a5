use super::*;

fn key(id: &str) -> SnapshotKey {
    SnapshotKey {
        project_id: "32b6e34b3d91647abb20e7b8".into(),
        cluster: "orders-flex".into(),
        snapshot_id: id.into(),
    }
}

fn open(dir: &tempfile::TempDir) -> Journal {
    Journal::open(&dir.path().join("j.sqlite")).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_state_machine_allows_only_the_documented_moves() {
    use SnapshotState::*;
    let all = [
        Discovered,
        DownloadRequested,
        Uploading,
        Uploaded,
        Archived,
        Failed,
    ];
    let allowed = [
        (Discovered, DownloadRequested),
        (Discovered, Archived),
        (Discovered, Failed),
        (DownloadRequested, DownloadRequested),
        (DownloadRequested, Uploading),
        (DownloadRequested, Archived),
        (DownloadRequested, Failed),
        (Uploading, DownloadRequested),
        (Uploading, Uploading),
        (Uploading, Uploaded),
        (Uploading, Archived),
        (Uploading, Failed),
        (Uploaded, DownloadRequested),
        (Uploaded, Uploaded),
        (Uploaded, Archived),
        (Uploaded, Failed),
        (Failed, Uploaded),
        (Failed, DownloadRequested),
        (Failed, Archived),
        (Failed, Failed),
    ];
    for from in all {
        for to in all {
            assert_eq!(
                from.may_become(to),
                allowed.contains(&(from, to)),
                "{from} -> {to}"
            );
        }
    }
}

#[tokio::test]
async fn transitions_are_recorded_and_impossible_ones_refused() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let j = open(&dir);
    let k = key("6a6f78e0cab84da5c4476b25");
    let r = j
        .discover(k.clone(), SnapshotFacts::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.state, SnapshotState::Discovered);
    let refused = j
        .transition(&k, SnapshotState::Uploading, Change::default())
        .await;
    assert!(
        matches!(refused, Err(JournalError::InvalidTransition { .. })),
        "{refused:?}"
    );
    j.transition(
        &k,
        SnapshotState::DownloadRequested,
        Change {
            restore_job_id: Some("job1".into()),
            ..Change::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    j.transition(
        &k,
        SnapshotState::Uploading,
        Change {
            upload_id: Some("up1".into()),
            object_key: Some("k".into()),
            ..Change::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let failed = j
        .transition(
            &k,
            SnapshotState::Failed,
            Change {
                error: Some("cut".into()),
                reason: Some("DOWNLOAD_INTERRUPTED".into()),
                upload_id: Some(String::new()),
                ..Change::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(failed.attempts, 1);
    assert_eq!(failed.upload_id, None, "an aborted upload is forgotten");
    assert_eq!(
        failed.restore_job_id.as_deref(),
        Some("job1"),
        "the job is kept for reuse"
    );
    assert_eq!(failed.last_reason.as_deref(), Some("DOWNLOAD_INTERRUPTED"));
    let done = j
        .transition(
            &k,
            SnapshotState::Archived,
            Change {
                size_bytes: Some(42),
                sha256: Some("ab".into()),
                ..Change::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(done.state, SnapshotState::Archived);
    assert_eq!(done.last_error, None, "archiving clears the last error");
    assert!(done.archived_at.is_some());
    let again = j
        .transition(&k, SnapshotState::DownloadRequested, Change::default())
        .await;
    assert!(
        matches!(again, Err(JournalError::InvalidTransition { .. })),
        "archived is final"
    );
    let rediscovered = j
        .discover(k.clone(), SnapshotFacts::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        rediscovered.state,
        SnapshotState::Archived,
        "discovering again changes nothing"
    );
    let events = j.events(&k).await.unwrap_or_else(|e| panic!("{e}"));
    let path: Vec<&str> = events.iter().map(|e| e.2.as_str()).collect();
    assert_eq!(
        path,
        [
            "discovered",
            "download_requested",
            "uploading",
            "failed",
            "archived"
        ]
    );
    let unknown = j
        .transition(
            &key("ffffffffffffffffffffffff"),
            SnapshotState::Failed,
            Change::default(),
        )
        .await;
    assert!(matches!(unknown, Err(JournalError::UnknownSnapshot(_))));
}

#[tokio::test]
async fn runs_are_recorded() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let j = open(&dir);
    let id = j.start_run("once").await.unwrap_or_else(|e| panic!("{e}"));
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
    .unwrap_or_else(|e| panic!("{e}"));
    let runs = j.recent_runs(5).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (runs[0].status.as_str(), runs[0].archived, runs[0].failed),
        ("failed", 2, 1)
    );
}

#[test]
fn a_second_process_is_refused_with_the_holders_pid() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
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
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("j.sqlite");
    drop(open(&dir));
    let conn = Connection::open(&path).unwrap_or_else(|e| panic!("{e}"));
    conn.pragma_update(None, "user_version", 99)
        .unwrap_or_else(|e| panic!("{e}"));
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
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("j.sqlite");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap_or_else(|e| panic!("{e}"));
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
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("j.sqlite");
    drop(open(&dir));
    for _ in 0..2 {
        let (journal, moved) = Journal::open_fresh(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(moved.is_some());
        drop(journal);
    }
    let saved = std::fs::read_dir(dir.path())
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.contains(".replaced-") && !name.ends_with("-wal") && !name.ends_with("-shm")
        })
        .count();
    assert_eq!(saved, 2, "the first saved journal was overwritten");
}
