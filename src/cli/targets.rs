//! `targets`: what the configuration resolves to right now (configured targets, and the
//! clusters each `[[discover]]` takes, with why, and the ones it does not take, with why not),
//! so that an operator can check a selector before trusting it; and [`resolve`], the one
//! place the commands that archive run discovery.
//! Must not: archive or write anything.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use super::Failure;
use atlas_archiver_engine::atlas::AtlasClient;
use atlas_archiver_engine::config::{Config, Secrets};
use atlas_archiver_engine::discover::{self, Origin, Resolved};

/// The configured targets plus the discovered ones (when the config has `[[discover]]`), and
/// what discovery found. A selector whose listing failed is logged; its clusters are
/// missing from this run, which the caller must count as a failure.
pub(super) async fn resolve(config: Config) -> Result<(Config, Resolved), Failure> {
    if config.discover.is_empty() {
        let resolved = Resolved::configured(&config);
        return Ok((config, resolved));
    }
    let client = AtlasClient::new(&config.atlas)?;
    let resolved = discover::resolve(&config, &client).await;
    Ok((resolved.apply(&config), resolved))
}

pub(super) async fn run(
    path: &Path,
    env: &HashMap<String, String>,
    json: bool,
) -> Result<ExitCode, Failure> {
    let config = Config::load(path, env, Secrets::Load)?;
    let (_, resolved) = resolve(config).await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&resolved)?);
    } else {
        print(&resolved);
    }
    Ok(if resolved.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print(resolved: &Resolved) {
    let kind =
        |k: Option<atlas_archiver_engine::target::ClusterKind>| k.map_or("auto", |k| k.name());
    for r in &resolved.targets {
        match &r.origin {
            Origin::Configured => {
                outln!(
                    "configured  {:<48}  {:<9}  [[target]]",
                    r.target.to_string(),
                    kind(r.kind)
                );
            }
            Origin::Discovered { rule, why } => {
                outln!(
                    "discovered  {:<48}  {:<9}  discover[{rule}]: {why}",
                    r.target.to_string(),
                    kind(r.kind)
                );
            }
        }
    }
    for s in &resolved.skipped {
        outln!(
            "skipped     {:<48}  {:<9}  discover[{}]: {}",
            s.target.to_string(),
            s.kind.name(),
            s.rule,
            s.why
        );
    }
    for f in &resolved.failures {
        outln!("FAILED      discover[{}]: {}", f.rule, f.error);
    }
    if resolved.targets.is_empty() {
        outln!("no targets: nothing would be archived");
    }
}
