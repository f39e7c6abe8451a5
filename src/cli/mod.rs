//! The command line: flags ([`args`]), then one handler per subcommand. Maps failures to exit
//! codes: 0 success, 1 a snapshot or run failed, 2 usage or configuration errors.
//! Must not: contain archiving logic (that is `pipeline`).

#[macro_use]
pub(crate) mod output;
mod args;
mod demo;
mod maintenance;
mod once;
mod preflight;
mod progress;
mod prune;
mod restore;
mod status;
mod targets;

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use crate::daemon::DaemonError;
use args::{Cli, Command, JournalAction, LogFormatArg};
use atlas_archiver_engine::atlas::AtlasError;
use atlas_archiver_engine::config::{Config, ConfigError, Secrets, config_path};
use atlas_archiver_engine::journal::JournalError;
use atlas_archiver_engine::pipeline::ArchiveError;
use atlas_archiver_engine::telemetry::{self, Level, LogFormat};

/// A failure at the edge. The exit code follows from its kind ([`Failure::exit_code`]), never
/// from the call site: 2 for usage and configuration, 1 for work that failed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A flag is invalid.
    #[error("{0}")]
    Usage(String),
    /// The journal failed (locked, damaged, full disk, ...).
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Atlas failed outside a snapshot's archiving (client setup).
    #[error(transparent)]
    Atlas(#[from] AtlasError),
    /// The run failed as a whole (the journal died under it, the pipeline could not start).
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// `verify` could not run.
    #[error(transparent)]
    Verify(#[from] atlas_archiver_engine::pipeline::verify::VerifyError),
    /// The daemon failed.
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    /// `restore` failed (not found, a mismatch, a refused entry, the bucket).
    #[error(transparent)]
    Restore(#[from] atlas_archiver_engine::restore::RestoreError),
    /// `list` could not read the bucket or the journal.
    #[error(transparent)]
    Catalog(#[from] atlas_archiver_engine::restore::CatalogError),
    /// A report could not be encoded as JSON.
    #[error("cannot encode the report as JSON: {0}")]
    Encode(#[from] serde_json::Error),
    /// Anything else that failed at run time, in words.
    #[error("{0}")]
    Runtime(String),
}

impl Failure {
    /// The process's exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) | Self::Usage(_) => 2,
            Self::Restore(e) if e.is_usage() => 2,
            Self::Daemon(DaemonError::Refused(_)) => 2,
            Self::Journal(_)
            | Self::Atlas(_)
            | Self::Archive(_)
            | Self::Daemon(_)
            | Self::Verify(_)
            | Self::Restore(_)
            | Self::Catalog(_)
            | Self::Encode(_)
            | Self::Runtime(_) => 1,
        }
    }
}

/// At most this many tokio worker threads, whatever the host's core count: the work is network
/// and hashing bound per transfer, and the systemd unit's `TasksMax` must hold every thread.
pub const MAX_WORKER_THREADS: usize = 8;
/// At most this many blocking threads (SQLite, files, restore's syncs).
pub const MAX_BLOCKING_THREADS: usize = 32;

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let shows_transfers = matches!(
        cli.command,
        Command::Once { dry_run: false, .. } | Command::Verify { .. } | Command::Restore { .. }
    );
    let display = (shows_transfers && cli.log_format == LogFormatArg::Human)
        .then(progress::Display::for_terminal)
        .flatten();
    telemetry::init(
        match cli.log_format {
            LogFormatArg::Human => LogFormat::Human,
            LogFormatArg::Json => LogFormat::Json,
        },
        cli.log_level.as_deref().map_or_else(
            || {
                Level::Default(match cli.command {
                    // The demo tells its story on stdout; routine progress would bury it.
                    Command::Demo { .. } => "warn",
                    _ => "info",
                })
            },
            Level::Given,
        ),
        display.as_ref().map(|d| BoxMakeWriter::new(d.log_writer())),
    );
    let workers = std::thread::available_parallelism()
        .map_or(2, std::num::NonZeroUsize::get)
        .min(MAX_WORKER_THREADS);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "{}",
                telemetry::error_line(&format!("error: cannot start the async runtime: {e}"))
            );
            return ExitCode::from(1);
        }
    };
    let env: HashMap<String, String> = std::env::vars().collect();
    let result = runtime.block_on(dispatch(cli.command, env, display.as_ref()));
    let code = match result {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("{}", telemetry::error_line(&format!("error: {failure}")));
            ExitCode::from(failure.exit_code())
        }
    };
    // The work is done (and journalled), but its report did not reach stdout: say so, and do
    // not exit 0 on a report nobody got.
    match output::failure() {
        Some(e) => {
            eprintln!(
                "{}",
                telemetry::error_line(&format!("error: cannot write the output to stdout: {e}"))
            );
            if code == ExitCode::SUCCESS {
                ExitCode::from(1)
            } else {
                code
            }
        }
        None => code,
    }
}

async fn dispatch(
    command: Command,
    env: HashMap<String, String>,
    display: Option<&progress::Display>,
) -> Result<ExitCode, Failure> {
    match command {
        Command::Once {
            config,
            targets,
            json,
            prune,
            dry_run,
        } => {
            let path = config_path(config.as_deref(), &env);
            if dry_run {
                once::dry_run(&path, &env, &targets, json, prune).await
            } else {
                once::run(&path, &env, &targets, json, prune, display).await
            }
        }
        Command::Prune {
            config,
            targets,
            dry_run,
            json,
        } => {
            let path = config_path(config.as_deref(), &env);
            prune::run(&path, &env, &targets, dry_run, json).await
        }
        Command::Run { config } => {
            let path = config_path(config.as_deref(), &env);
            let config = Config::load(&path, &env, Secrets::Load)?;
            crate::daemon::run(config, once::wait_for_signal).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { config, online } => {
            let path = config_path(config.as_deref(), &env);
            if online {
                let config = Config::load(&path, &env, Secrets::Load)?;
                check_journal_writable(&config)?;
                outln!("# {} is valid; trying it:\n", path.display());
                preflight::run(&config).await
            } else {
                check_config(&path, &env)
            }
        }
        Command::Targets { config, json } => {
            let path = config_path(config.as_deref(), &env);
            targets::run(&path, &env, json).await
        }
        Command::Status { config, json } => {
            let path = config_path(config.as_deref(), &env);
            status::run(&path, &env, json).await
        }
        Command::Verify {
            config,
            targets,
            all,
            json,
        } => {
            let path = config_path(config.as_deref(), &env);
            maintenance::verify(&path, &env, &targets, all, json, display).await
        }
        Command::List {
            config,
            targets,
            json,
        } => {
            let path = config_path(config.as_deref(), &env);
            restore::list(&path, &env, &targets, json).await
        }
        Command::Restore {
            config,
            target,
            snapshot,
            latest,
            before,
            to,
            archive,
            parallel,
            thaw,
            thaw_days,
            json,
        } => {
            let args = restore::RestoreArgs {
                thaw: thaw.then_some(thaw_days),
                config: config_path(config.as_deref(), &env),
                target,
                snapshot,
                latest,
                before,
                to,
                archive,
                parallel,
                json,
            };
            restore::restore(args, &env, display).await
        }
        Command::Journal {
            action: JournalAction::Rebuild { config },
        } => {
            let path = config_path(config.as_deref(), &env);
            maintenance::rebuild(&path, &env).await
        }
        Command::Demo { dir } => demo::run(dir).await,
        Command::Healthcheck { config, url } => {
            let path = config_path(config.as_deref(), &env);
            maintenance::healthcheck(&path, &env, url).await
        }
        Command::NotifyTest { config } => {
            let path = config_path(config.as_deref(), &env);
            maintenance::notify_test(&path, &env).await
        }
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(
                shell,
                &mut command,
                "atlas-archiver",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir } => {
            let command = <Cli as clap::CommandFactory>::command();
            if let Some(dir) = dir {
                clap_mangen::generate_to(command, &dir).map_err(|e| {
                    Failure::Runtime(format!(
                        "cannot write the manual pages into {}: {e}",
                        dir.display()
                    ))
                })?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .map_err(|e| Failure::Runtime(format!("cannot render the manual page: {e}")))?;
            use std::io::Write as _;
            std::io::stdout()
                .write_all(&page)
                .map_err(|e| Failure::Runtime(format!("cannot write the manual page: {e}")))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Simulate {
            listen,
            snapshot_size,
            snapshots,
            clusters,
            range,
            download_via,
        } => {
            demo::simulate(
                listen,
                snapshot_size.as_deref(),
                snapshots,
                clusters,
                range,
                download_via,
            )
            .await
        }
    }
}

fn check_config(path: &Path, env: &HashMap<String, String>) -> Result<ExitCode, Failure> {
    let config = Config::load(path, env, Secrets::Load)?;
    check_journal_writable(&config)?;
    outln!(
        "# {} is valid; effective configuration (secrets shown as ***):\n",
        path.display()
    );
    let text = config
        .redacted_toml()
        .map_err(|e| Failure::Runtime(format!("cannot render the configuration: {e}")))?;
    out!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// Connects to the bucket and checks that it answers, and that it can lock what is written when
/// a lock is configured (commands that write to it).
async fn connect_store(
    config: &Config,
) -> Result<atlas_archiver_engine::store::ObjectStore, Failure> {
    let store = atlas_archiver_engine::store::ObjectStore::connect(&config.storage).await;
    store.check_bucket().await.map_err(|e| {
        Failure::Runtime(format!(
            "cannot reach bucket {}: {e}",
            config.storage.bucket
        ))
    })?;
    store.check_object_lock().await.map_err(|e| {
        if e.is_config_problem() {
            Failure::Usage(format!("config file {}: {e}", config.source.display()))
        } else {
            Failure::Runtime(format!(
                "cannot read the Object Lock configuration of bucket {}: {e}",
                config.storage.bucket
            ))
        }
    })?;
    Ok(store)
}

/// The journal's directory must exist (or be creatable) and accept a new file.
fn check_journal_writable(config: &Config) -> Result<(), Failure> {
    let journal = &config.journal.path;
    let dir = journal
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let fail = |what: String| {
        Failure::Usage(format!(
            "config file {}: `journal.path`: {} is not writable: {what}",
            config.source.display(),
            journal.display()
        ))
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
    let probe = dir.join(format!(".atlas-archiver-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"probe").map_err(|e| fail(e.to_string()))?;
    let _ = std::fs::remove_file(&probe);
    if journal.exists() {
        std::fs::OpenOptions::new()
            .append(true)
            .open(journal)
            .map_err(|e| fail(e.to_string()))?;
    }
    Ok(())
}
