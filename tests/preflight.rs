//! `check-config --online`, the preflight, through the real binary on the real S3 server of
//! scripts/test.sh (moto, then Garage): every check passes on a good configuration and leaves
//! nothing behind; a wrong bucket secret and a wrong Atlas secret fail the checks that need them,
//! with what to fix, and never print a secret.
// A test crate: its helpers may unwrap (clippy.toml allows it inside `#[test]` functions only).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use atlas_archiver::simulator::scenario;
use common::World;

const PROJECT: &str = "5f0a1b2c3d4e5f60718293a4";

fn row<'a>(stdout: &'a str, check: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(check))
        .unwrap_or_else(|| panic!("no row {check:?} in:\n{stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preflight_passes_on_a_good_config_and_leaves_nothing_behind() {
    let w = World::new("preflight", scenario(PROJECT, &["orders-flex"], 3, &[1000])).await;
    let config = w.write_config("", "");
    let cfg = config.to_string_lossy().into_owned();
    let run = w
        .run(&["check-config", "--config", &cfg, "--online"], &[])
        .await;
    run.assert_code(0);
    run.assert_no_secrets(&w.secrets());
    let out = &run.stdout;
    assert!(
        row(
            out,
            &format!("Atlas: list snapshots of {PROJECT}/orders-flex")
        )
        .contains("3 snapshots listed"),
        "{out}"
    );
    // Every store passes these; the part and upload listings may only warn (moto's ListParts
    // answer, s3s-fs's missing upload listing), and nothing fails.
    for check in [
        "bucket reachable",
        "list the prefix",
        "write an object",
        "read it back",
        "delete it",
        "start a multipart upload",
        "upload a part",
        "abort it",
    ] {
        assert!(row(out, check).contains("  ok  "), "{check}: {out}");
    }
    assert!(row(out, "Object Lock").contains("skip"), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    assert!(
        out.contains("0 failed; this configuration can archive"),
        "{out}"
    );
    assert!(
        w.keys().await.is_empty(),
        "the probes are gone: {:?}",
        w.keys().await
    );
    assert!(
        w.open_uploads().await.is_empty(),
        "the probe upload is aborted"
    );
    assert_eq!(
        w.sim.observed().snapshot_downloads,
        0,
        "nothing is downloaded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secrets_fail_the_checks_that_need_them_and_say_what_to_fix() {
    let w = World::new(
        "preflight-bad",
        scenario(PROJECT, &["orders-flex"], 1, &[1000]),
    )
    .await;
    let config = w.write_config("", "");
    let cfg = config.to_string_lossy().into_owned();
    // moto checks no S3 signatures, so the bucket is made wrong by its name.
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("bucket = \"{}\"", w.s3.bucket),
        "bucket = \"no-such-bucket-here\"",
    );
    std::fs::write(&config, text).unwrap();
    std::fs::write(w.path("atlas_secret"), "not-the-atlas-secret").unwrap();
    let run = w
        .run(&["check-config", "--config", &cfg, "--online"], &[])
        .await;
    run.assert_code(1);
    let out = &run.stdout;
    let atlas = row(out, "Atlas: list snapshots");
    assert!(
        atlas.contains("FAIL") && atlas.contains("service account"),
        "{out}"
    );
    let bucket = row(out, "bucket reachable");
    assert!(
        bucket.contains("FAIL") && bucket.contains("credentials"),
        "{out}"
    );
    assert!(
        !out.contains("write an object"),
        "no probe without a bucket: {out}"
    );
    run.assert_no_secrets(&[
        "not-the-secret".to_owned(),
        "not-the-atlas-secret".to_owned(),
    ]);
}

/// Issue 14: with no `storage.region`, `AWS_REGION` or `AWS_DEFAULT_REGION`, the region is the
/// AWS profile's (as the AWS CLI takes it), and an explicit one still wins over the profile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_region_comes_from_the_aws_profile_unless_one_is_given() {
    let w = World::new(
        "preflight-region",
        scenario(PROJECT, &["orders-flex"], 1, &[1000]),
    )
    .await;
    let config = w.write_config("", "");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("region = \"us-east-1\"\n"), "{text}");
    std::fs::write(&config, text.replace("region = \"us-east-1\"\n", "")).unwrap();
    let cfg = config.to_string_lossy().into_owned();
    // The test stores sign for us-east-1; the profile names it, and a second profile names
    // another region, so the source and the value can both be seen.
    let aws = w.path("aws-config");
    std::fs::write(
        &aws,
        "[default]\nregion = us-east-1\n\n[profile elsewhere]\nregion = eu-archive-9\n",
    )
    .unwrap();
    let aws = aws.to_string_lossy().into_owned();
    let args = ["check-config", "--config", &cfg, "--online"];

    let from_profile = w.run(&args, &[("AWS_CONFIG_FILE", &aws)]).await;
    from_profile.assert_code(0);
    assert!(
        row(&from_profile.stdout, "region").contains("us-east-1 (from the AWS profile)"),
        "{}",
        from_profile.stdout
    );
    let other = w
        .run(
            &args,
            &[("AWS_CONFIG_FILE", &aws), ("AWS_PROFILE", "elsewhere")],
        )
        .await;
    assert!(
        row(&other.stdout, "region").contains("eu-archive-9 (from the AWS profile)"),
        "{}",
        other.stdout
    );
    let explicit = w
        .run(
            &args,
            &[
                ("AWS_CONFIG_FILE", &aws),
                ("AWS_PROFILE", "elsewhere"),
                ("AWS_REGION", "us-east-1"),
            ],
        )
        .await;
    explicit.assert_code(0);
    assert!(
        row(&explicit.stdout, "region").contains("us-east-1 (from storage.region, AWS_REGION"),
        "{}",
        explicit.stdout
    );
    let none = w.run(&args, &[("AWS_CONFIG_FILE", "/nonexistent")]).await;
    none.assert_code(0);
    assert!(
        row(&none.stdout, "region").contains("us-east-1 (from the default)"),
        "{}",
        none.stdout
    );
}
