//! The Atlas client against the simulator over real HTTP on loopback: paging, auth, the retry
//! policy, restore-job polling, and error envelopes.
// A test crate: its helpers may unwrap (clippy.toml allows it inside `#[test]` functions only).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use atlas_archiver::atlas::{AtlasClient, AtlasError};
use atlas_archiver::config::{AtlasConfig, AtlasCredentials, RetryConfig};
use atlas_archiver::simulator::{
    SIM_CLIENT_ID, SIM_CLIENT_SECRET, SIM_PRIVATE_KEY, SIM_PUBLIC_KEY, SimCluster, Simulator,
    scenario,
};
use atlas_archiver::target::ClusterKind;
use secrecy::SecretString;

const PROJECT: &str = "5f0a1b2c3d4e5f60718293a4";

async fn sim(clusters: Vec<SimCluster>) -> Simulator {
    Simulator::start("127.0.0.1:0".parse().unwrap(), clusters)
        .await
        .unwrap()
}

fn config(sim: &Simulator, credentials: AtlasCredentials) -> AtlasConfig {
    AtlasConfig {
        base_url: sim.base_url().parse().unwrap(),
        credentials,
        secret_expires_at: None,
        poll_interval: Duration::from_millis(20),
        restore_timeout: Duration::from_secs(5),
        retry: RetryConfig {
            max_attempts: 5,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_secs(2),
        },
        request_timeout: Duration::from_secs(10),
        download_read_timeout: Duration::from_secs(10),
        download_connections: 1,
    }
}

fn service_account() -> AtlasCredentials {
    AtlasCredentials::ServiceAccount {
        client_id: SIM_CLIENT_ID.into(),
        client_secret: SecretString::from(SIM_CLIENT_SECRET),
    }
}

fn client(sim: &Simulator) -> AtlasClient {
    AtlasClient::new(&config(sim, service_account())).unwrap()
}

#[tokio::test]
async fn lists_every_page_and_caches_the_token() {
    let s = sim(scenario(PROJECT, &["big-flex"], 230, &[1])).await;
    let c = client(&s);
    let listed = c
        .cluster(ClusterKind::Flex, PROJECT, "big-flex")
        .list_snapshots()
        .await
        .unwrap();
    assert_eq!(listed.len(), 230);
    let mut ids: Vec<_> = listed.iter().filter_map(|x| x.id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 230, "no duplicates, none missing");
    let seen = s.observed();
    assert_eq!(seen.api_requests, 3, "three pages of 100");
    assert_eq!(seen.token_requests, 1);
}

#[tokio::test]
async fn concurrent_callers_share_one_token_refresh() {
    let s = sim(scenario(PROJECT, &["a-flex"], 2, &[1])).await;
    let c = client(&s);
    let calls = (0..10).map(|_| {
        let c = c.clone();
        tokio::spawn(async move {
            c.cluster(ClusterKind::Flex, PROJECT, "a-flex")
                .list_snapshots()
                .await
        })
    });
    for call in calls {
        assert!(call.await.is_ok_and(|r| r.is_ok()));
    }
    assert_eq!(s.observed().token_requests, 1, "single-flight refresh");
}

#[tokio::test]
async fn a_revoked_token_is_refreshed_once_on_401() {
    let s = sim(scenario(PROJECT, &["a-flex"], 1, &[1])).await;
    let c = client(&s);
    assert!(
        c.cluster(ClusterKind::Flex, PROJECT, "a-flex")
            .list_snapshots()
            .await
            .is_ok()
    );
    s.revoke_tokens();
    assert!(
        c.cluster(ClusterKind::Flex, PROJECT, "a-flex")
            .list_snapshots()
            .await
            .is_ok()
    );
    assert_eq!(s.observed().token_requests, 2);
}

#[tokio::test]
async fn short_lived_tokens_are_renewed_before_they_expire() {
    let s = sim(scenario(PROJECT, &["a-flex"], 1, &[1])).await;
    s.set_faults(|f| f.token_lifetime_secs = Some(2));
    let c = client(&s);
    assert!(
        c.cluster(ClusterKind::Flex, PROJECT, "a-flex")
            .list_snapshots()
            .await
            .is_ok()
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        c.cluster(ClusterKind::Flex, PROJECT, "a-flex")
            .list_snapshots()
            .await
            .is_ok()
    );
    let seen = s.observed();
    assert_eq!(
        seen.token_requests, 2,
        "renewed at half its life, before Atlas would refuse it"
    );
    assert_eq!(seen.api_requests, 2, "no 401 round trip was needed");
}

#[tokio::test]
async fn wrong_credentials_fail_fast_and_stay_failed() {
    let s = sim(scenario(PROJECT, &["a-flex"], 1, &[1])).await;
    let c = AtlasClient::new(&config(
        &s,
        AtlasCredentials::ServiceAccount {
            client_id: SIM_CLIENT_ID.into(),
            client_secret: SecretString::from("wrong"),
        },
    ))
    .unwrap();
    for _ in 0..3 {
        let e = c
            .cluster(ClusterKind::Flex, PROJECT, "a-flex")
            .list_snapshots()
            .await;
        assert!(matches!(e, Err(AtlasError::Unauthorized { .. })), "{e:?}");
    }
    assert_eq!(s.observed().token_requests, 1);
}

#[tokio::test]
async fn digest_keys_authenticate_and_reuse_the_challenge() {
    let s = sim(scenario(PROJECT, &["a-flex"], 1, &[1])).await;
    let c = AtlasClient::new(&config(
        &s,
        AtlasCredentials::ApiKey {
            public_key: SIM_PUBLIC_KEY.into(),
            private_key: SecretString::from(SIM_PRIVATE_KEY),
        },
    ))
    .unwrap();
    for _ in 0..3 {
        assert!(
            c.cluster(ClusterKind::Flex, PROJECT, "a-flex")
                .list_snapshots()
                .await
                .is_ok()
        );
    }
    let seen = s.observed();
    assert_eq!(seen.digest_ok, 3);
    assert_eq!(
        seen.api_requests, 4,
        "one challenge round trip, then the nonce is reused with nc++"
    );
    let wrong = AtlasClient::new(&config(
        &s,
        AtlasCredentials::ApiKey {
            public_key: SIM_PUBLIC_KEY.into(),
            private_key: SecretString::from("nope"),
        },
    ))
    .unwrap();
    assert!(matches!(
        wrong
            .cluster(ClusterKind::Flex, PROJECT, "a-flex")
            .list_snapshots()
            .await,
        Err(AtlasError::Unauthorized { .. })
    ));
}

#[tokio::test]
async fn rate_limits_honour_retry_after_and_fall_back_to_backoff() {
    let s = sim(scenario(PROJECT, &["a-flex"], 1, &[1])).await;
    let c = client(&s);
    s.set_faults(|f| {
        f.api_429_burst = 2;
        f.retry_after_secs = Some(1);
    });
    let started = Instant::now();
    assert!(
        c.cluster(ClusterKind::Flex, PROJECT, "a-flex")
            .list_snapshots()
            .await
            .is_ok()
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "waited Retry-After twice"
    );
    s.set_faults(|f| {
        f.api_429_burst = 3;
        f.retry_after_secs = None;
    });
    assert!(
        c.cluster(ClusterKind::Flex, PROJECT, "a-flex")
            .list_snapshots()
            .await
            .is_ok()
    );
    assert_eq!(s.observed().throttled, 5);
}

#[tokio::test]
async fn server_errors_are_retried_a_bounded_number_of_times() {
    let s = sim(scenario(PROJECT, &["a-flex"], 1, &[1])).await;
    let c = client(&s);
    s.set_faults(|f| f.api_500_burst = 4);
    assert!(
        c.cluster(ClusterKind::Flex, PROJECT, "a-flex")
            .list_snapshots()
            .await
            .is_ok(),
        "four 500s, five attempts"
    );
    s.set_faults(|f| f.api_500_burst = 50);
    let before = s.observed().api_requests;
    let e = c
        .cluster(ClusterKind::Flex, PROJECT, "a-flex")
        .list_snapshots()
        .await;
    assert!(
        matches!(e, Err(AtlasError::Api { status: 500, .. })),
        "{e:?}"
    );
    assert_eq!(
        s.observed().api_requests - before,
        5,
        "max_attempts bounds the retries"
    );
}

#[tokio::test]
async fn the_download_post_is_not_retried_after_a_500() {
    let s = sim(scenario(PROJECT, &["a-flex"], 1, &[1])).await;
    let c = client(&s);
    let id = s.clusters()[0].snapshots[0].id.clone();
    assert!(
        c.cluster(ClusterKind::Flex, PROJECT, "a-flex")
            .list_snapshots()
            .await
            .is_ok()
    );
    s.set_faults(|f| f.api_500_burst = 1);
    let e = c
        .cluster(ClusterKind::Flex, PROJECT, "a-flex")
        .request_download(&id)
        .await;
    assert!(
        matches!(e, Err(AtlasError::Api { status: 500, .. })),
        "Atlas may have acted: {e:?}"
    );
    s.set_faults(|f| f.api_503_burst = 1);
    assert!(
        c.cluster(ClusterKind::Flex, PROJECT, "a-flex")
            .request_download(&id)
            .await
            .is_ok(),
        "503 means not acted on: retried"
    );
}

#[tokio::test]
async fn client_errors_carry_the_envelope_and_are_not_retried() {
    let mut clusters = scenario(PROJECT, &["a-flex"], 1, &[1]);
    clusters.push(SimCluster {
        project_id: PROJECT.into(),
        name: "dedicated-m10".into(),
        snapshots: vec![],
        dedicated: true,
        ..SimCluster::default()
    });
    let s = sim(clusters).await;
    let c = client(&s);
    let before = s.observed().api_requests;
    match c
        .cluster(ClusterKind::Flex, PROJECT, "missing")
        .list_snapshots()
        .await
    {
        Err(AtlasError::Api {
            status: 404,
            error_code,
            ..
        }) => assert_eq!(error_code, "CLUSTER_NOT_FOUND"),
        other => panic!("{other:?}"),
    }
    match c
        .cluster(ClusterKind::Flex, PROJECT, "dedicated-m10")
        .list_snapshots()
        .await
    {
        Err(e @ AtlasError::Api { status: 400, .. }) => {
            assert_eq!(
                e.reason().to_string(),
                "CANNOT_USE_NON_FLEX_CLUSTER_IN_FLEX_API"
            );
            assert!(e.to_string().contains("kind = \"auto\""), "{e}");
            assert_eq!(e.actual_kind(), Some(ClusterKind::Dedicated));
        }
        other => panic!("{other:?}"),
    }
    match c
        .cluster(ClusterKind::Flex, "aaaaaaaaaaaaaaaaaaaaaaaa", "a-flex")
        .list_snapshots()
        .await
    {
        Err(AtlasError::Api { error_code, .. }) => assert_eq!(error_code, "GROUP_NOT_FOUND"),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.observed().api_requests - before, 3, "one request each");
}

#[tokio::test]
async fn restore_jobs_are_polled_until_the_url_appears() {
    let s = sim(scenario(PROJECT, &["a-flex"], 2, &[1])).await;
    let c = client(&s);
    let id = s.clusters()[0].snapshots[0].id.clone();
    let job = c
        .cluster(ClusterKind::Flex, PROJECT, "a-flex")
        .request_download(&id)
        .await
        .unwrap();
    assert_eq!(job.status.as_deref(), Some("PENDING"));
    assert!(job.snapshot_url.is_none());
    let before = s.observed().api_requests;
    let ready = c
        .cluster(ClusterKind::Flex, PROJECT, "a-flex")
        .wait_for_url(job)
        .await
        .unwrap();
    assert!(ready.snapshot_url.is_some());
    assert_eq!(
        s.observed().api_requests - before,
        2,
        "RUNNING, then COMPLETED"
    );

    // A second download while the first is prepared: Atlas answers 409.
    let other = s.clusters()[0].snapshots[1].id.clone();
    s.set_faults(|f| f.polls_until_complete = Some(100));
    let _pending = c
        .cluster(ClusterKind::Flex, PROJECT, "a-flex")
        .request_download(&other)
        .await
        .unwrap();
    match c
        .cluster(ClusterKind::Flex, PROJECT, "a-flex")
        .request_download(&other)
        .await
    {
        Err(AtlasError::Api {
            status: 409,
            error_code,
            ..
        }) => assert_eq!(error_code, "CANNOT_DOWNLOAD_SNAPSHOT_CONCURRENTLY"),
        other => panic!("{other:?}"),
    }
    let jobs = c
        .cluster(ClusterKind::Flex, PROJECT, "a-flex")
        .list_restore_jobs()
        .await
        .unwrap();
    assert_eq!(jobs.len(), 2);
}

#[tokio::test]
async fn a_url_in_the_post_answer_is_used_without_polling() {
    let s = sim(scenario(PROJECT, &["a-flex"], 1, &[1])).await;
    s.set_faults(|f| f.url_in_post = true);
    let c = client(&s);
    let id = s.clusters()[0].snapshots[0].id.clone();
    let job = c
        .cluster(ClusterKind::Flex, PROJECT, "a-flex")
        .request_download(&id)
        .await
        .unwrap();
    let before = s.observed().api_requests;
    assert!(
        c.cluster(ClusterKind::Flex, PROJECT, "a-flex")
            .wait_for_url(job)
            .await
            .is_ok()
    );
    assert_eq!(s.observed().api_requests, before, "no poll");
}

#[tokio::test]
async fn failed_and_stuck_jobs_end_with_an_error() {
    let s = sim(scenario(PROJECT, &["a-flex"], 2, &[1])).await;
    let ids: Vec<String> = s.clusters()[0]
        .snapshots
        .iter()
        .map(|x| x.id.clone())
        .collect();
    s.set_faults(|f| {
        f.fail_jobs_for.insert(ids[0].clone());
    });
    let c = client(&s);
    let job = c
        .cluster(ClusterKind::Flex, PROJECT, "a-flex")
        .request_download(&ids[0])
        .await
        .unwrap();
    assert!(matches!(
        c.cluster(ClusterKind::Flex, PROJECT, "a-flex")
            .wait_for_url(job)
            .await,
        Err(AtlasError::RestoreFailed { .. })
    ));

    s.set_faults(|f| f.jobs_never_complete = true);
    let mut cfg = config(&s, service_account());
    cfg.restore_timeout = Duration::from_millis(300);
    let c = AtlasClient::new(&cfg).unwrap();
    let job = c
        .cluster(ClusterKind::Flex, PROJECT, "a-flex")
        .request_download(&ids[1])
        .await
        .unwrap();
    match c
        .cluster(ClusterKind::Flex, PROJECT, "a-flex")
        .wait_for_url(job)
        .await
    {
        Err(e @ AtlasError::RestoreTimeout { .. }) => {
            assert!(e.to_string().contains("atlas.restore_timeout"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_list_that_changes_between_pages_yields_no_duplicates_and_misses_nothing_old() {
    let s = sim(scenario(PROJECT, &["busy-flex"], 150, &[1])).await;
    let before: Vec<String> = s.clusters()[0]
        .snapshots
        .iter()
        .map(|x| x.id.clone())
        .collect();
    s.set_faults(|f| f.new_snapshot_after_first_page = true);
    let c = client(&s);
    let listed = c
        .cluster(ClusterKind::Flex, PROJECT, "busy-flex")
        .list_snapshots()
        .await
        .unwrap();
    let ids: Vec<String> = listed.iter().filter_map(|x| x.id.clone()).collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        ids.len(),
        "the shifted page repeated one item; it is kept once"
    );
    assert!(
        before.iter().all(|id| ids.contains(id)),
        "every snapshot listed before is still found"
    );
    // The new one comes with the next listing.
    let again = c
        .cluster(ClusterKind::Flex, PROJECT, "busy-flex")
        .list_snapshots()
        .await
        .unwrap();
    assert_eq!(again.len(), 151);
}

#[tokio::test]
async fn listings_follow_next_links_and_total_count_when_atlas_pages_short() {
    // Atlas may serve fewer items than `itemsPerPage` on a page that is not the last.
    let s = sim(scenario(PROJECT, &["short-flex"], 25, &[1])).await;
    s.set_faults(|f| f.page_cap = Some(7));
    let c = client(&s);
    let listed = c
        .cluster(ClusterKind::Flex, PROJECT, "short-flex")
        .list_snapshots()
        .await
        .unwrap();
    assert_eq!(listed.len(), 25, "every snapshot, not only the first page");
    assert_eq!(s.observed().api_requests, 4, "pages of 7, 7, 7 and 4");
}

#[tokio::test]
async fn h3_a_rejected_login_is_retried_after_a_pause_not_remembered_forever() {
    let s = sim(scenario(PROJECT, &["a-flex"], 1, &[1])).await;
    s.set_faults(|f| f.reject_next_logins = 1);
    let c = client(&s);
    let first = c
        .cluster(ClusterKind::Flex, PROJECT, "a-flex")
        .list_snapshots()
        .await;
    assert!(
        matches!(first, Err(AtlasError::Unauthorized { .. })),
        "{first:?}"
    );
    // Within a burst of calls the rejection is remembered: no storm of logins.
    let second = c
        .cluster(ClusterKind::Flex, PROJECT, "a-flex")
        .list_snapshots()
        .await;
    assert!(matches!(second, Err(AtlasError::Unauthorized { .. })));
    assert_eq!(s.observed().token_requests, 1);
    // Later, the client asks again and recovers without a restart.
    tokio::time::sleep(Duration::from_secs(21)).await;
    let third = c
        .cluster(ClusterKind::Flex, PROJECT, "a-flex")
        .list_snapshots()
        .await;
    assert!(third.is_ok(), "{third:?}");
    assert_eq!(s.observed().token_requests, 2);
}

#[tokio::test]
async fn m1_an_absurd_token_lifetime_does_not_panic() {
    let s = sim(scenario(PROJECT, &["a-flex"], 1, &[1])).await;
    s.set_faults(|f| f.token_lifetime_secs = Some(u64::MAX));
    let c = client(&s);
    for _ in 0..2 {
        let listed = c
            .cluster(ClusterKind::Flex, PROJECT, "a-flex")
            .list_snapshots()
            .await;
        assert!(listed.is_ok(), "{listed:?}");
    }
    assert_eq!(
        s.observed().token_requests,
        1,
        "the clamped token is reused"
    );
}

#[tokio::test]
async fn l8_a_listing_cut_mid_body_is_retried_as_network_trouble() {
    let s = sim(scenario(PROJECT, &["a-flex"], 3, &[1])).await;
    let c = client(&s);
    s.set_faults(|f| f.cut_listing_bodies = 2);
    let listed = c
        .cluster(ClusterKind::Flex, PROJECT, "a-flex")
        .list_snapshots()
        .await
        .unwrap();
    assert_eq!(listed.len(), 3, "the third attempt read the whole page");
    // With every attempt cut, the error is network trouble (transient, retried next run), not
    // a malformed answer.
    s.set_faults(|f| f.cut_listing_bodies = 10);
    let e = c
        .cluster(ClusterKind::Flex, PROJECT, "a-flex")
        .list_snapshots()
        .await
        .unwrap_err();
    assert!(
        matches!(e, AtlasError::Transport { attempts: 5, .. }),
        "{e}"
    );
    assert!(e.is_transient(), "{e}");
}

#[tokio::test]
async fn l16_an_answer_larger_than_any_atlas_answer_is_refused_unread() {
    let s = sim(scenario(PROJECT, &["a-flex"], 1, &[1])).await;
    let c = client(&s);
    s.set_faults(|f| f.oversized_listing = Some((1, 64 << 20)));
    let e = c
        .cluster(ClusterKind::Flex, PROJECT, "a-flex")
        .list_snapshots()
        .await
        .unwrap_err();
    assert!(matches!(e, AtlasError::Decode { .. }), "{e}");
    assert!(e.to_string().contains("larger than 16 MiB"), "{e}");
    // The next listing is an ordinary one.
    assert_eq!(
        c.cluster(ClusterKind::Flex, PROJECT, "a-flex")
            .list_snapshots()
            .await
            .unwrap()
            .len(),
        1
    );
}

fn digest_client(s: &Simulator) -> AtlasClient {
    AtlasClient::new(&config(
        s,
        AtlasCredentials::ApiKey {
            public_key: SIM_PUBLIC_KEY.into(),
            private_key: SecretString::from(SIM_PRIVATE_KEY),
        },
    ))
    .unwrap()
}

#[tokio::test]
async fn s2_a_stale_digest_nonce_is_answered_not_taken_as_a_rejection() {
    let s = sim(scenario(PROJECT, &["a-flex"], 1, &[1])).await;
    let c = digest_client(&s);
    assert!(
        c.cluster(ClusterKind::Flex, PROJECT, "a-flex")
            .list_snapshots()
            .await
            .is_ok()
    );
    // Three stale challenges in a row (good credentials, a nonce the server no longer takes):
    // more than the one re-authentication a 401 allows, and still not a rejected login.
    s.set_faults(|f| f.stale_next_digests = 3);
    assert!(
        c.cluster(ClusterKind::Flex, PROJECT, "a-flex")
            .list_snapshots()
            .await
            .is_ok()
    );
    assert!(
        c.cluster(ClusterKind::Flex, PROJECT, "a-flex")
            .list_snapshots()
            .await
            .is_ok(),
        "no memo of a rejection"
    );
    let seen = s.observed();
    assert_eq!((seen.stale_digests, seen.digest_ok), (3, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_concurrent_digest_calls_survive_a_server_that_enforces_nc_order() {
    let names: Vec<String> = (0..10).map(|i| format!("c{i}-flex")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let s = sim(scenario(PROJECT, &refs, 2, &[1])).await;
    s.set_faults(|f| f.strict_digest_nc = true);
    let c = digest_client(&s);
    for _ in 0..3 {
        let mut calls = tokio::task::JoinSet::new();
        for name in &names {
            let (c, name) = (c.clone(), name.clone());
            calls.spawn(async move {
                c.cluster(ClusterKind::Flex, PROJECT, &name)
                    .list_snapshots()
                    .await
                    .map(|l| l.len())
            });
        }
        while let Some(done) = calls.join_next().await {
            assert_eq!(done.unwrap().unwrap(), 2);
        }
    }
    // Out-of-order arrivals, if any happened, were answered as stale and retried.
    assert_eq!(s.observed().digest_ok, 30);
}
