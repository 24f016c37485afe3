//! The `pgbackups` binary: parses the command line and hands over to the library.

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = match pgbackups::cli::Cli::try_parse() {
        Ok(cli) => cli,
        // As restore_command, any exit below 126 means "not archived" and ends recovery: a
        // command line this version does not understand must stop recovery instead.
        Err(e) if std::env::args().nth(1).as_deref() == Some("wal-fetch") => {
            eprintln!("pgbackups wal-fetch: {e}");
            std::process::exit(126);
        }
        // clap quotes the arguments it could not place: a URL among them keeps no password.
        Err(e) if e.use_stderr() => {
            eprint!("{}", pgbackups::pg::redact(&e.render().to_string()));
            std::process::exit(e.exit_code());
        }
        Err(e) => e.exit(),
    };
    pgbackups::install_crypto();
    fixed_mmap_threshold();
    let filter = tracing_subscriber::EnvFilter::try_from_env("PGBACKUPS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // The environment the commands read, read here once (secrets included: they stay in it).
    let env = pgbackups::cli::Env::new(|k| std::env::var(k).ok());
    let code = match pgbackups::cli::run(cli, env).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", pgbackups::pg::redact(&e.to_string()));
            1
        }
    };
    std::process::exit(code);
}

/// Makes glibc serve large buffers (multipart parts, zstd's) with mmap and give them back to
/// the system when freed. By default glibc raises its mmap threshold after the first such
/// buffer is freed and keeps later ones in its heaps, so the service's RSS crept up with each
/// upload to an object store (bench/RESULTS-storage.md: 84 → 148 MB over three captures,
/// flat at 75 MB with this).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn fixed_mmap_threshold() {
    // SAFETY: mallopt only changes allocator parameters (process-wide); it is called once,
    // at start, before any large buffer is allocated.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn fixed_mmap_threshold() {}
