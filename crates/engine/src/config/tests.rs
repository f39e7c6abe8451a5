use std::collections::HashMap;
use std::path::PathBuf;

use super::*;

const GOOD: &str = r#"
[atlas]
client_id = "mdb_sa_id_x"
client_secret = "s3cr3t-value"

[storage]
bucket = "atlas-archive"
endpoint = "http://127.0.0.1:9000"

[journal]
path = "journal.sqlite"

[[target]]
project_id = "32b6e34b3d91647abb20e7b8"
cluster = "orders-flex"
"#;

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn write(&self, text: &str) -> PathBuf {
        let p = self.dir.path().join("config.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    fn load(&self, text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let path = self.write(text);
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::load(&path, &env, Secrets::Load)
    }

    fn error(&self, text: &str, env: &[(&str, &str)]) -> String {
        match self.load(text, env) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }
}

fn loaded(c: &Case, text: &str, env: &[(&str, &str)]) -> Config {
    c.load(text, env).unwrap()
}

#[test]
fn a_good_config_loads_with_defaults() {
    let c = Case::new();
    let config = loaded(&c, GOOD, &[]);
    assert_eq!(config.targets.len(), 1);
    assert_eq!(config.storage.part_size, PartSize::Auto);
    assert_eq!(config.storage.parts_in_flight, 3);
    assert!(
        config.storage.force_path_style,
        "custom endpoints default to path style"
    );
    assert_eq!(
        config.storage.checksum_calculation,
        Some(ChecksumCalculation::WhenRequired)
    );
    assert_eq!(config.atlas.base_url.as_str(), "https://cloud.mongodb.com/");
    assert_eq!(config.journal.path, c.dir.path().join("journal.sqlite"));
    assert!(matches!(
        config.atlas.credentials,
        AtlasCredentials::ServiceAccount { .. }
    ));
}

#[test]
fn every_mistake_names_the_file_and_the_key() {
    let c = Case::new();
    let file = c.dir.path().join("config.toml").display().to_string();
    let cases: Vec<(String, &str)> = vec![
        (GOOD.replace("bucket = ", "bukcet = "), "bukcet"),
        (format!("{GOOD}\n[extra]\nx = 1\n"), "extra"),
        (
            GOOD.replace("32b6e34b3d91647abb20e7b8", "32B6E34B3D91647ABB20E7B8"),
            "target[0].project_id",
        ),
        (
            GOOD.replace("32b6e34b3d91647abb20e7b8", "1234"),
            "^[a-f0-9]{24}$",
        ),
        (GOOD.replace("orders-flex", "-orders"), "target[0].cluster"),
        (
            GOOD.replace("orders-flex", "orders_flex"),
            "^[a-zA-Z0-9][a-zA-Z0-9-]*$",
        ),
        (
            format!(
                "{GOOD}\n[[target]]\nproject_id = \"32b6e34b3d91647abb20e7b8\"\ncluster = \"orders-flex\"\n"
            ),
            "duplicate target",
        ),
        (
            GOOD.replace("[storage]", "[storage]\npart_size = \"1MiB\""),
            "storage.part_size",
        ),
        (
            GOOD.replace("[storage]", "[storage]\npart_size = \"6GiB\""),
            "5MiB to 5GiB",
        ),
        (
            GOOD.replace("[storage]", "[storage]\npart_size = \"big\""),
            "storage.part_size",
        ),
        (
            GOOD.replace("[storage]", "[storage]\nparts_in_flight = 0"),
            "storage.parts_in_flight",
        ),
        (
            GOOD.replace(
                "[storage]",
                "[storage]\nrequest_checksum_calculation = \"always\"",
            ),
            "storage.request_checksum_calculation",
        ),
        (
            GOOD.replace(
                "[storage]",
                "[storage]\nkey_template = \"{prefix}{cluster}.tgz\"",
            ),
            "storage.key_template",
        ),
        (
            GOOD.replace("[storage]", "[storage]\nprefix = \"/abs/\""),
            "storage.prefix",
        ),
        (
            GOOD.replace("bucket = \"atlas-archive\"", "bucket = \"Atlas_Archive\""),
            "storage.bucket",
        ),
        (
            GOOD.replace("bucket = \"atlas-archive\"\n", ""),
            "storage.bucket",
        ),
        (
            GOOD.replace(
                "endpoint = \"http://127.0.0.1:9000\"",
                "endpoint = \"127.0.0.1:9000\"",
            ),
            "storage.endpoint",
        ),
        (
            GOOD.replace("[atlas]", "[atlas]\nbase_url = \"ftp://x\""),
            "atlas.base_url",
        ),
        (
            GOOD.replace("[atlas]", "[atlas]\npoll_interval = \"5 fortnights\""),
            "atlas.poll_interval",
        ),
        (
            GOOD.replace("[atlas]", "[atlas]\nrestore_timeout = \"0s\""),
            "atlas.restore_timeout",
        ),
        (
            GOOD.replace("[atlas]", "[atlas]\npublic_key = \"abc\""),
            "keep one",
        ),
        (
            GOOD.replace(
                "client_secret = \"s3cr3t-value\"",
                "client_secret = \"s3cr3t-value\"\nclient_secret_file = \"x\"",
            ),
            "not both",
        ),
        (
            GOOD.replace(
                "client_id = \"mdb_sa_id_x\"\nclient_secret = \"s3cr3t-value\"",
                "",
            ),
            "atlas.client_id",
        ),
        (
            GOOD.replace("client_secret = \"s3cr3t-value\"", ""),
            "atlas.client_secret",
        ),
        (
            GOOD.replace(
                "client_secret = \"s3cr3t-value\"",
                "client_secret_file = \"missing-file\"",
            ),
            "atlas.client_secret_file",
        ),
        (
            GOOD.split("[[target]]")
                .next()
                .unwrap_or_default()
                .to_owned(),
            "[[target]]",
        ),
        (
            GOOD.replace("[storage]", "[storage]\nparts_in_flight = \"many\""),
            "parts_in_flight",
        ),
        (
            format!("{GOOD}\n[schedule]\ncron = \"61 * * * *\"\n"),
            "schedule.cron",
        ),
        (
            format!("{GOOD}\n[schedule]\ncron = \"0 3 * *\"\n"),
            "5 (minute hour day month weekday)",
        ),
        (
            format!("{GOOD}\n[schedule]\ntimezone = \"Mars/Olympus\"\n"),
            "schedule.timezone",
        ),
        (
            format!("{GOOD}\n[schedule]\njitter = \"a while\"\n"),
            "schedule.jitter",
        ),
        (format!("{GOOD}cron = \"0 0 31 2 *\"\n"), "target[0].cron"),
        (
            format!("{GOOD}timezone = \"Berlin\"\n"),
            "target[0].timezone",
        ),
        (
            format!("{GOOD}\n[server]\nlisten = \"localhost\"\n"),
            "server.listen",
        ),
        (
            format!("{GOOD}\n[server]\nlisten = \"0.0.0.0:9187\"\n"),
            "server.token",
        ),
        (
            GOOD.replace("[storage]", "[storage]\nmax_concurrent_transfers = 0"),
            "storage.max_concurrent_transfers",
        ),
        ("this is = not toml [".to_owned(), &file),
        (
            GOOD.replace("s3cr3t-value", ""),
            "`atlas.client_secret`: is empty",
        ),
        (
            GOOD.replace(
                "[atlas]",
                "[atlas]\nbase_url = \"http://atlas.example.com\"",
            ),
            "atlas.base_url",
        ),
        (
            format!("{GOOD}\n[server]\nlisten = \"0.0.0.0:9187\"\ntoken = \" \"\n"),
            "`server.token`: is empty",
        ),
        (
            format!("{GOOD}\n[schedule]\nstall_timeout = \"5m\"\n"),
            "not longer than 5 × storage.request_timeout",
        ),
        (
            format!("{GOOD}\n[schedule]\nstall_timeout = \"5s\"\n"),
            "at least 10s",
        ),
    ];
    for (text, needle) in cases {
        let message = c.error(&text, &[]);
        assert!(message.contains(&file), "{message:?} should name the file");
        assert!(
            message.contains(needle),
            "{message:?} should mention {needle:?}"
        );
        assert!(
            !message.contains("s3cr3t-value"),
            "{message:?} leaks the secret"
        );
    }
}

#[test]
fn schedules_per_target_and_the_server() {
    let c = Case::new();
    let text = format!(
        "{GOOD}cron = \"30 2 * * *\"\ntimezone = \"Europe/Berlin\"\n\n[schedule]\ncron = \"0 4 * * *\"\njitter = \"10m\"\n\n[server]\nlisten = \"0.0.0.0:9187\"\ntoken = \"t0k3n-t0k3n-t0k3n\"\n"
    );
    let config = loaded(&c, &text, &[]);
    let t = &config.targets[0];
    assert_eq!(config.schedule_for(t).expression(), "30 2 * * *");
    assert_eq!(config.schedule_for(t).zone().name(), "Europe/Berlin");
    assert_eq!(config.schedule.default.expression(), "0 4 * * *");
    assert_eq!(config.schedule.jitter, Duration::from_secs(600));
    assert_eq!(config.schedule.shutdown_grace, Duration::from_secs(300));
    assert!(config.server.listen.is_some_and(|a| a.port() == 9187));
    assert!(!config.redacted_toml().unwrap().contains("t0k3n"));
    let off = loaded(&c, &format!("{GOOD}\n[server]\nlisten = \"\"\n"), &[]);
    assert!(off.server.listen.is_none());
}

#[test]
fn a_missing_file_says_how_to_point_at_one() {
    let env = HashMap::new();
    let e = Config::load(
        std::path::Path::new("/nonexistent/config.toml"),
        &env,
        Secrets::Load,
    );
    let message = e
        .map(|_| ())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        message.contains("/nonexistent/config.toml") && message.contains("--config"),
        "{message}"
    );
}

#[test]
fn environment_overrides_and_fallbacks() {
    let c = Case::new();
    let text = GOOD
        .replace(
            "client_id = \"mdb_sa_id_x\"\nclient_secret = \"s3cr3t-value\"",
            "",
        )
        .replace("endpoint = \"http://127.0.0.1:9000\"\n", "");
    let config = loaded(
        &c,
        &text,
        &[
            ("ATLAS_ARCHIVER__STORAGE__BUCKET", "other-bucket"),
            ("ATLAS_ARCHIVER__STORAGE__PARTS_IN_FLIGHT", "5"),
            ("ATLAS_ARCHIVER__ATLAS__POLL_INTERVAL", "2s"),
            ("MONGODB_ATLAS_CLIENT_ID", "mdb_sa_id_env"),
            ("MONGODB_ATLAS_CLIENT_SECRET", "env-secret"),
            ("AWS_ENDPOINT_URL", "http://10.0.0.1:3900"),
            ("AWS_REGION", "garage"),
        ],
    );
    assert_eq!(config.storage.bucket, "other-bucket");
    assert_eq!(config.storage.parts_in_flight, 5);
    assert_eq!(config.atlas.poll_interval, Duration::from_secs(2));
    assert_eq!(config.storage.region.as_deref(), Some("garage"));
    assert_eq!(
        config.storage.endpoint.as_ref().map(Url::as_str),
        Some("http://10.0.0.1:3900/")
    );
    match &config.atlas.credentials {
        AtlasCredentials::ServiceAccount {
            client_id,
            client_secret,
        } => {
            assert_eq!(client_id, "mdb_sa_id_env");
            assert_eq!(expose(client_secret), "env-secret");
        }
        other => panic!("{other:?}"),
    }
    let keyed = loaded(
        &c,
        &text,
        &[
            ("MONGODB_ATLAS_PUBLIC_API_KEY", "pub"),
            ("MONGODB_ATLAS_PRIVATE_API_KEY", "priv"),
        ],
    );
    assert!(
        matches!(keyed.atlas.credentials, AtlasCredentials::ApiKey { ref public_key, .. } if public_key == "pub")
    );
    let bad = c.error(GOOD, &[("ATLAS_ARCHIVER__STORAGE__PART_SIZE", "2MiB")]);
    assert!(bad.contains("storage.part_size"), "{bad}");
    // The S3-specific endpoint variable wins over the general one and gets the same
    // S3-compatible defaults; AWS_DEFAULT_REGION is the older name of AWS_REGION.
    let s3_only = loaded(
        &c,
        &text,
        &[
            ("AWS_ENDPOINT_URL", "http://10.0.0.1:3900"),
            ("AWS_ENDPOINT_URL_S3", "http://10.0.0.2:9000"),
            ("AWS_DEFAULT_REGION", "eu-west-3"),
            ("MONGODB_ATLAS_CLIENT_ID", "mdb_sa_id_env"),
            ("MONGODB_ATLAS_CLIENT_SECRET", "env-secret"),
        ],
    );
    assert_eq!(
        s3_only.storage.endpoint.as_ref().map(Url::as_str),
        Some("http://10.0.0.2:9000/")
    );
    assert!(s3_only.storage.force_path_style);
    assert_eq!(s3_only.storage.object_checksum, ObjectChecksum::None);
    assert_eq!(s3_only.storage.region.as_deref(), Some("eu-west-3"));
}

/// Issue 14: a trigger token others can reach must not be guessable.
#[test]
fn a_short_token_on_an_exposed_listener_is_refused() {
    let c = Case::new();
    let exposed =
        |token: &str| format!("{GOOD}\n[server]\nlisten = \"0.0.0.0:9187\"\ntoken = \"{token}\"\n");
    let e = c.error(&exposed("t0k3n"), &[]);
    assert!(
        e.contains("`server.token`") && e.contains("16 characters"),
        "{e}"
    );
    assert!(c.load(&exposed("0123456789abcdef0123"), &[]).is_ok());
    // On loopback only this host can reach it: any token will do.
    let local = format!("{GOOD}\n[server]\nlisten = \"127.0.0.1:9187\"\ntoken = \"t0k3n\"\n");
    assert!(c.load(&local, &[]).is_ok());
}

#[test]
fn secret_files_resolve_in_the_credentials_directory_and_are_trimmed() {
    let c = Case::new();
    let creds = c.dir.path().join("creds");
    std::fs::create_dir_all(&creds).unwrap();
    std::fs::write(creds.join("atlas"), "from-credential-dir\n").unwrap();
    let text = GOOD.replace(
        "client_secret = \"s3cr3t-value\"",
        "client_secret_file = \"atlas\"",
    );
    let config = loaded(
        &c,
        &text,
        &[("CREDENTIALS_DIRECTORY", &creds.display().to_string())],
    );
    match &config.atlas.credentials {
        AtlasCredentials::ServiceAccount { client_secret, .. } => {
            assert_eq!(expose(client_secret), "from-credential-dir")
        }
        other => panic!("{other:?}"),
    }
    std::fs::write(creds.join("atlas"), "\n").unwrap();
    let e = c.error(
        &text,
        &[("CREDENTIALS_DIRECTORY", &creds.display().to_string())],
    );
    assert!(e.contains("empty"), "{e}");
}

#[test]
fn secrets_never_print() {
    let c = Case::new();
    let text = GOOD.replace(
        "[storage]",
        "[storage]\naccess_key_id = \"AKIA\"\nsecret_access_key = \"aws-secret-value\"",
    );
    let config = loaded(&c, &text, &[]);
    let summary = config.redacted_toml().unwrap();
    let debug = format!("{config:?}");
    for shown in [&summary, &debug] {
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
        assert!(!shown.contains("aws-secret-value"), "{shown}");
    }
    assert!(
        summary.contains("client_secret = \"***\"")
            && summary.contains("secret_access_key = \"***\""),
        "{summary}"
    );
}

#[test]
fn status_can_load_without_secrets() {
    let c = Case::new();
    let path = c.write(&GOOD.replace(
        "client_secret = \"s3cr3t-value\"",
        "client_secret_file = \"/root/not-readable\"",
    ));
    let config = Config::load(&path, &HashMap::new(), Secrets::Skip).unwrap();
    assert!(matches!(
        config.atlas.credentials,
        AtlasCredentials::NotLoaded
    ));
}

#[test]
fn target_flag_parsing() {
    assert!(Target::parse("32b6e34b3d91647abb20e7b8/orders-flex").is_ok());
    assert!(Target::parse("32b6e34b3d91647abb20e7b8").is_err());
    assert!(Target::parse("xyz/orders").is_err());
}

#[test]
fn the_shipped_example_config_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../config/atlas-archiver.example.toml");
    let config = Config::load(&path, &HashMap::new(), Secrets::Skip).unwrap();
    assert_eq!(config.targets.len(), 1);
    assert_eq!(config.storage.prefix, "atlas/");
}

/// Issue 8: `check-config` prints what the loader reads. Its output (secrets filled back) loads to
/// the same configuration, and so does the redacted output itself (`***` is a valid secret);
/// every value is in a form the loader accepts (no `sdk default`, no `µs`).
#[test]
fn check_config_output_loads_back_to_the_same_config() {
    let c = Case::new();
    let text = format!(
        "{GOOD}cron = \"0 4 * * *\"\ntimezone = \"Europe/Paris\"\n\n[[target]]\nproject_id = \"32b6e34b3d91647abb20e7b9\"\ncluster = \"billing\"\nretention = {{ keep_daily = 30 }}\n"
    )
    .replace(
        "[storage]\n",
        "[storage]\npart_size = \"1.5GiB\"\nrequest_timeout = \"1h30m\"\naccess_key_id = \"AKIA\"\nsecret_access_key = \"aws-secret-value\"\n",
    )
    .replace("[atlas]\n", "[atlas]\npoll_interval = \"2.5s\"\nrestore_timeout = \"45m\"\n")
        + "\n[schedule]\njitter = \"0s\"\nshutdown_grace = \"90s\"\n\n[server]\nlisten = \"127.0.0.1:9187\"\ntoken = \"t0k3n\"\n\n[retention]\nkeep_daily = 7\nkeep_monthly = 12\nkeep_within = \"30d\"\ntimezone = \"Europe/Berlin\"\n";
    let config = loaded(&c, &text, &[]);
    assert_eq!(config.storage.part_size, PartSize::Fixed(3 << 29));
    let exposed = config.to_raw(render::SecretView::Exposed);
    let printed = toml::to_string(&exposed).unwrap();
    let reloaded = loaded(&c, &printed, &[]);
    assert_eq!(
        reloaded.to_raw(render::SecretView::Exposed),
        exposed,
        "{printed}"
    );
    assert_eq!(reloaded.storage.part_size, config.storage.part_size);
    assert_eq!(reloaded.atlas.poll_interval, Duration::from_millis(2500));
    assert_eq!(reloaded.storage.request_timeout, Duration::from_secs(5400));

    let redacted = config.redacted_toml().unwrap();
    for secret in ["s3cr3t-value", "aws-secret-value", "t0k3n"] {
        assert!(!redacted.contains(secret), "{redacted}");
    }
    let from_redacted = loaded(&c, &redacted, &[]);
    assert_eq!(from_redacted.redacted_toml().unwrap(), redacted);
    assert!(
        redacted.contains("[[target]]") && redacted.contains("timezone = \"Europe/Paris\""),
        "{redacted}"
    );
}

/// Issue 11: `[retention]`, a target's own keys over it, and the policies refused.
#[test]
fn retention_merges_per_target_and_refuses_empty_policies() {
    let c = Case::new();
    let text = format!(
        "{GOOD}retention = {{ keep_daily = 30, min_keep = 5 }}\n\n[[target]]\nproject_id = \"32b6e34b3d91647abb20e7b9\"\ncluster = \"billing\"\n\n[retention]\nkeep_daily = 7\nkeep_yearly = 2\ntimezone = \"Europe/Berlin\"\n"
    );
    let config = loaded(&c, &text, &[]);
    let orders = &config.targets[0];
    let billing = &config.targets[1];
    let own = config.retention_for(orders).unwrap();
    assert_eq!((own.keep_daily, own.keep_yearly, own.min_keep), (30, 2, 5));
    assert_eq!(own.timezone, chrono_tz::Europe::Berlin);
    let default = config.retention_for(billing).unwrap();
    assert_eq!(
        (default.keep_daily, default.keep_yearly, default.min_keep),
        (7, 2, 3)
    );
    // No table: keep everything.
    assert!(loaded(&c, GOOD, &[]).retention_for(orders).is_none());

    for (table, key, words) in [
        (
            "[retention]\ntimezone = \"UTC\"\n",
            "`retention`",
            "keeps nothing",
        ),
        (
            "[retention]\nkeep_daily = 0\nkeep_within = \"0s\"\n",
            "`retention`",
            "keeps nothing",
        ),
        (
            "[retention]\nkeep_daily = 7\ntimezone = \"Mars/Olympus\"\n",
            "`retention.timezone`",
            "IANA",
        ),
        (
            "[retention]\nkeep_daily = 7\nkeep_within = \"a while\"\n",
            "`retention.keep_within`",
            "",
        ),
        (
            "[retention]\nkeep_daily = 7\nmin_keep = 0\n",
            "`retention.min_keep`",
            "at least 1",
        ),
        (
            "[retention]\nkeep_dayly = 7\n",
            "keep_dayly",
            "unknown field",
        ),
    ] {
        let e = c.error(&format!("{GOOD}\n{table}"), &[]);
        assert!(e.contains(key) && e.contains(words), "{table}: {e}");
    }
}

/// Issue 11: `[storage.object_lock]`, `storage_class` and encryption: what is accepted, what it
/// implies (a lock forces CRC32C), what `check-config` prints, and what is refused.
#[test]
fn protection_settings_validate_and_print() {
    let c = Case::new();
    let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    std::fs::write(c.dir.path().join("ssec.key"), format!("{key}\n")).unwrap();
    let text = GOOD.replace(
        "[journal]",
        "storage_class = \"DEEP_ARCHIVE\"\nsse_customer_key_file = \"ssec.key\"\n\n[storage.object_lock]\nmode = \"compliance\"\nretain = \"35d\"\n\n[journal]",
    );
    let config = loaded(&c, &text, &[]);
    let p = &config.storage.protection;
    assert_eq!(
        p.object_lock,
        Some(ObjectLock {
            mode: LockMode::Compliance,
            retain: Duration::from_secs(35 * 86_400),
            legal_hold: false,
        })
    );
    assert_eq!(p.storage_class.as_deref(), Some("DEEP_ARCHIVE"));
    assert_eq!(
        p.encryption.customer_key().map(CustomerKey::key_base64),
        Some(key)
    );
    // A lock needs a checksum on every write: "auto" on a custom endpoint becomes CRC32C.
    assert_eq!(config.storage.object_checksum, ObjectChecksum::Crc32c);
    let printed = config.redacted_toml().unwrap();
    assert!(!printed.contains(key), "{printed}");
    assert!(
        printed.contains("sse_customer_key = \"***\"")
            && printed.contains("mode = \"compliance\"")
            && printed.contains("storage_class = \"DEEP_ARCHIVE\""),
        "{printed}"
    );
    let kms = GOOD.replace(
        "[journal]",
        "sse = \"aws:kms\"\nsse_kms_key_id = \"alias/backups\"\n\n[journal]",
    );
    assert!(matches!(
        loaded(&c, &kms, &[]).storage.protection.encryption,
        Encryption::Kms { key_id: Some(ref k) } if k == "alias/backups"
    ));

    let lock = "\n[storage.object_lock]\nmode = \"governance\"\nretain = \"35d\"\n";
    for (storage, key, words) in [
        (
            "[storage.object_lock]\nretain = \"35d\"\n",
            "`storage.object_lock.mode`",
            "missing",
        ),
        (
            "[storage.object_lock]\nmode = \"strict\"\nretain = \"35d\"\n",
            "`storage.object_lock.mode`",
            "\"governance\" or \"compliance\"",
        ),
        (
            "[storage.object_lock]\nmode = \"governance\"\nretain = \"2h\"\n",
            "`storage.object_lock.retain`",
            "shorter than a day",
        ),
        (
            &format!("checksum = \"none\"\n{lock}"),
            "`storage.checksum`",
            "Object Lock",
        ),
        (
            "storage_class = \"standard-ia\"\n",
            "`storage.storage_class`",
            "upper-case",
        ),
        (
            "sse = \"aes\"\n",
            "`storage.sse`",
            "\"AES256\" or \"aws:kms\"",
        ),
        (
            "sse_kms_key_id = \"k\"\n",
            "`storage.sse_kms_key_id`",
            "not \"aws:kms\"",
        ),
        (
            "sse_customer_key = \"c2hvcnQ=\"\n",
            "`storage.sse_customer_key`",
            "32 bytes",
        ),
        (
            &format!("sse = \"AES256\"\nsse_customer_key = \"{key}\"\n"),
            "`storage.sse`",
            "choose one",
        ),
    ] {
        let e = c.error(
            &GOOD.replace("[journal]", &format!("{storage}\n[journal]")),
            &[],
        );
        assert!(e.contains(key) && e.contains(words), "{storage}: {e}");
    }
    // SSE-C over plain http to another host would send the key in clear text.
    let remote = GOOD
        .replace("http://127.0.0.1:9000", "http://s3.example.net")
        .replace(
            "[journal]",
            &format!("sse_customer_key = \"{key}\"\n\n[journal]"),
        );
    assert!(c.error(&remote, &[]).contains("clear text"));
}

/// Issue 14: the shipped example is the complete reference: every key of every table of the
/// loader (`raw.rs`, `protection.rs`) appears in it as `key =` (commented where optional), and
/// every table as its header, so the two cannot drift apart.
#[test]
fn the_example_config_names_every_key() {
    let example = include_str!("../../../../config/atlas-archiver.example.toml");
    let sources = [
        include_str!("raw.rs"),
        include_str!("protection.rs"),
        include_str!("notify.rs"),
    ];
    let mut in_raw_struct = false;
    let mut checked = 0;
    for line in sources.iter().flat_map(|s| s.lines()) {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("pub struct ") {
            in_raw_struct = rest.starts_with("Raw");
            continue;
        }
        if line == "}" {
            in_raw_struct = false;
        }
        let Some((name, ty)) = line
            .strip_prefix("pub ")
            .and_then(|l| l.split_once(": "))
            .filter(|_| in_raw_struct)
        else {
            continue;
        };
        let wanted = match (name, ty.contains("Raw")) {
            ("targets", _) => "[[target]]".to_owned(),
            ("discover", _) => "[[discover]]".to_owned(),
            ("object_lock", _) => "[storage.object_lock]".to_owned(),
            (table, true) if table != "retention" => format!("[{table}]"),
            ("retention", _) => "[retention]".to_owned(),
            (key, false) => format!("{key} ="),
            _ => unreachable!(),
        };
        assert!(
            example.contains(&wanted),
            "config/atlas-archiver.example.toml does not name `{wanted}` ({name}: {ty})"
        );
        checked += 1;
    }
    assert!(
        checked > 60,
        "only {checked} keys found in the loader's sources"
    );
}

/// Issue 13: `[heartbeat]` and `[[notify]]` load with their defaults; a channel that cannot
/// work is refused naming its key, and a URL (a credential) never appears in the error.
#[test]
fn notification_channels_load_and_mistakes_name_the_key() {
    let c = Case::new();
    let text = format!(
        "{GOOD}\n[heartbeat]\nurl = \"https://hc-ping.com/abc-uuid\"\n\n[[notify]]\nkind = \"slack\"\nurl = \"https://hooks.slack.com/services/T0/B0/secretpart\"\n"
    );
    let config = loaded(&c, &text, &[]);
    let channel = &config.notify.channels[0];
    assert_eq!(channel.kind, ChannelKind::Slack);
    assert_eq!(channel.events, EventKind::ALL.to_vec());
    assert_eq!(channel.never_succeeded_after, 3);
    assert_eq!(channel.url.redacted(), "https://hooks.slack.com/…");
    assert!(!format!("{config:?}").contains("secretpart"));
    assert!(!config.redacted_toml().unwrap().contains("secretpart"));
    assert!(config.notify.heartbeat.is_some());
    let email = loaded(
        &c,
        &format!(
            "{GOOD}\n[[notify]]\nkind = \"email\"\nurl = \"smtp://me:secretpart@mail.example.com:587\"\nto = [\"oncall@example.com\", \"Backup Team <backup@example.com>\"]\nfrom = \"atlas-archiver <archiver@example.com>\"\n"
        ),
        &[],
    );
    let channel = &email.notify.channels[0];
    assert_eq!(channel.kind, ChannelKind::Email);
    assert_eq!(channel.url.redacted(), "smtp://mail.example.com/…");
    assert_eq!(
        channel.email.as_ref().map(|e| e.to.len()),
        Some(2),
        "{channel:?}"
    );
    assert!(!format!("{email:?}").contains("secretpart"));
    assert!(!email.redacted_toml().unwrap().contains("secretpart"));
    for (table, key, says) in [
        (
            "kind = \"email\"\nurl = \"https://x.example/secretpart\"",
            "notify[0].url",
            "not an SMTP URL",
        ),
        (
            "kind = \"email\"\nurl = \"smtp://me:secretpart@mail.example.com:587\"\nfrom = \"a@example.com\"",
            "notify[0].to",
            "missing",
        ),
        (
            "kind = \"email\"\nurl = \"smtp://me:secretpart@mail.example.com:587\"\nto = [\"oncall at example.com\"]\nfrom = \"a@example.com\"",
            "notify[0].to",
            "`oncall at example.com` is not an email address",
        ),
        (
            "kind = \"email\"\nurl = \"smtp://me:secretpart@mail.example.com:587\"\nto = [\"oncall@example.com\"]",
            "notify[0].from",
            "missing",
        ),
        (
            "kind = \"email\"\nurl = \"smtp://me:secretpart@mail.example.com:587\"\nto = [\"oncall@example.com\"]\nfrom = \"a@example.com\"\nca_file = \"no-such-ca.pem\"",
            "notify[0].ca_file",
            "cannot read",
        ),
        (
            "kind = \"slack\"\nurl = \"https://x.example/h\"\nto = [\"oncall@example.com\"]",
            "notify[0].to",
            "only an \"email\" channel",
        ),
        (
            "kind = \"pager\"\nurl = \"https://x.example/h\"",
            "notify[0].kind",
            "not a channel",
        ),
        (
            "kind = \"slack\"\nurl = \"http://hooks.example.com/secretpart\"",
            "notify[0].url",
            "plain HTTP",
        ),
        (
            "kind = \"slack\"\nurl = \"not a url secretpart\"",
            "notify[0].url",
            "not an http(s) URL",
        ),
        ("kind = \"slack\"", "notify[0].url", "missing"),
        (
            "kind = \"webhook\"\nurl = \"https://x.example/h\"\non = [\"failures\"]",
            "notify[0].on",
            "never_succeeded",
        ),
        (
            "kind = \"teams\"\nurl = \"https://x.example/h\"\nsigning_key = \"k\"",
            "notify[0].signing_key",
            "only a \"webhook\"",
        ),
        (
            "kind = \"webhook\"\nurl = \"https://x.example/h\"\nnever_succeeded_after = 0",
            "notify[0].never_succeeded_after",
            "at least 1",
        ),
    ] {
        let e = c.error(&format!("{GOOD}\n[[notify]]\n{table}\n"), &[]);
        assert!(e.contains(key) && e.contains(says), "{table}: {e}");
        assert!(!e.contains("secretpart"), "{e}");
    }
}

/// Issue 13: the service account secret's declared expiry loads as a date or a time; a typo or
/// an API key (which does not expire) is refused naming the key.
#[test]
fn the_secret_expiry_is_a_date_of_a_service_account() {
    let c = Case::new();
    let with = |v: &str| {
        GOOD.replacen(
            "[atlas]\n",
            &format!("[atlas]\nclient_secret_expires_at = \"{v}\"\n"),
            1,
        )
    };
    let day = loaded(&c, &with("2027-03-01"), &[]);
    assert_eq!(
        day.atlas
            .secret_expires_at
            .map(|t| t.to_rfc3339())
            .as_deref(),
        Some("2027-03-01T00:00:00+00:00")
    );
    let time = loaded(&c, &with("2027-03-01T12:30:00+02:00"), &[]);
    assert_eq!(
        time.atlas
            .secret_expires_at
            .map(|t| t.to_rfc3339())
            .as_deref(),
        Some("2027-03-01T10:30:00+00:00")
    );
    let e = c.error(&with("next march"), &[]);
    assert!(
        e.contains("atlas.client_secret_expires_at") && e.contains("not a date"),
        "{e}"
    );
    let keys = GOOD.replace(
        "client_id = \"mdb_sa_id_x\"\nclient_secret = \"s3cr3t-value\"",
        "public_key = \"abcdefgh\"\nprivate_key = \"0000-1111\"\nclient_secret_expires_at = \"2027-03-01\"",
    );
    assert!(keys.contains("public_key"), "{keys}");
    let e = c.error(&keys, &[]);
    assert!(
        e.contains("atlas.client_secret_expires_at") && e.contains("API keys do not expire"),
        "{e}"
    );
}

/// Counts and durations out of range name their key and the range that would be valid.
#[test]
fn numbers_out_of_range_and_zero_durations_are_refused_by_key() {
    let c = Case::new();
    let atlas = |line: &str| GOOD.replace("[atlas]\n", &format!("[atlas]\n{line}\n"));
    let storage = |line: &str| GOOD.replace("[storage]\n", &format!("[storage]\n{line}\n"));
    for (text, key, valid) in [
        (
            atlas("download_connections = 0"),
            "atlas.download_connections",
            "use 1 to 16",
        ),
        (
            atlas("download_connections = 17"),
            "atlas.download_connections",
            "use 1 to 16",
        ),
        (
            atlas("max_attempts = 101"),
            "atlas.max_attempts",
            "use 1 to 100",
        ),
        (
            storage("parts_in_flight = 0"),
            "storage.parts_in_flight",
            "use 1 to 64",
        ),
        (
            storage("max_concurrent_transfers = 65"),
            "storage.max_concurrent_transfers",
            "use 1 to 64",
        ),
        (
            atlas("poll_interval = \"0s\""),
            "atlas.poll_interval",
            "longer than zero",
        ),
    ] {
        let e = c.error(&text, &[]);
        assert!(e.contains(&format!("`{key}`")) && e.contains(valid), "{e}");
    }
    let ok = c.load(&atlas("download_connections = 16"), &[]).unwrap();
    assert_eq!(ok.atlas.download_connections, 16);
}
