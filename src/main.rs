//! The `atlas-archiver` binary: all of it lives in the library; see `cli`.

fn main() -> std::process::ExitCode {
    atlas_archiver::cli::main()
}
