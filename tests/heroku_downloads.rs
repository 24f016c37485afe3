//! Issue 13, points 3 and 4: what a Heroku user fetches is what `pg_restore` reads.
//!
//! - `heroku pg:backups:url` gives a link whose body is a dump: `curl -o latest.dump "$URL" &&
//!   pg_restore latest.dump`. So does ours (tests/object_storage.rs shows it on S3 too).
//! - `heroku pg:backups:download` writes `latest.dump`, a compressed custom-format dump, and a
//!   second download becomes `latest.dump.1`. Ours too: no larger than `pg_dump -Fc`'s own file,
//!   read by `pg_restore --jobs`, never replacing a file, with a progress bar on a terminal.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{Cluster, PG_BIN, Service};

/// Rows that compress well and a large object, as most databases have.
const DATA: &str = "CREATE TABLE events (id int PRIMARY KEY, kind text, body text);
INSERT INTO events SELECT g, 'kind-' || (g % 7), repeat('payload ' || g, 8) FROM generate_series(1, 40000) g;
CREATE TABLE empty_one (x int);
SELECT lo_from_bytea(0, convert_to(repeat('large object ', 2000), 'UTF8'));";

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The CLI run in `dir` (where a download lands by default), pointed at `svc`.
fn cli_in(svc: &Service, dir: &Path, args: &[&str]) -> Output {
    Command::new(common::binary())
        .args(args)
        .current_dir(dir)
        .env("PGBACKUPS_URL", &svc.url)
        .env("PGBACKUPS_TOKEN", svc.token())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn tool(name: &str) -> Command {
    Command::new(format!("{PG_BIN}/{name}"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The large objects of `db`, as text.
fn large_objects(pg: &Cluster, db: &str) -> String {
    pg.psql(
        db,
        "SELECT string_agg(md5(lo_get(oid)), ',' ORDER BY oid) FROM pg_largeobject_metadata",
    )
}

#[test]
fn heroku_download_is_latest_dump_then_latest_dump_1_compressed_like_pg_dump_fc_and_read_by_pg_restore_jobs()
 {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql("app", DATA);
    let svc = Service::start();
    svc.ok(&["databases:add", "main", &pg.url("app")]);
    let out = svc.ok(&["backups:capture", "main"]);
    assert!(out.contains("b001"), "{out}");
    let dir = tempfile::tempdir().unwrap();

    // Heroku: the first download is latest.dump, the second latest.dump.1.
    let first = cli_in(&svc, dir.path(), &["backups:download"]);
    assert!(first.status.success(), "{}", text(&first));
    assert!(text(&first).contains("latest.dump "), "{}", text(&first));
    let second = cli_in(&svc, dir.path(), &["backups:download", "b001"]);
    assert!(second.status.success(), "{}", text(&second));
    assert!(
        text(&second).contains("latest.dump.1 "),
        "{}",
        text(&second)
    );
    let latest = dir.path().join("latest.dump");
    let again = dir.path().join("latest.dump.1");
    assert_eq!(
        std::fs::read(&latest).unwrap(),
        std::fs::read(&again).unwrap()
    );
    // Not a terminal: no progress bar in the output.
    assert!(!text(&first).contains("ETA"), "{}", text(&first));

    // An explicit name is never overwritten either.
    let mine = dir.path().join("mine.dump");
    std::fs::write(&mine, "my own notes").unwrap();
    let out = cli_in(&svc, dir.path(), &["backups:download", "-o", "mine.dump"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&mine).unwrap(), "my own notes");
    assert!(dir.path().join("mine.dump.1").exists());
    // Nothing half-written is left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".part")), "{names:?}");

    // Compressed as pg_dump -Fc compresses (gzip), and no larger than its file.
    let list = run(tool("pg_restore").arg("--list").arg(&latest));
    assert!(
        list.contains("Compression: ") && !list.contains("Compression: 0"),
        "{list}"
    );
    assert!(list.contains("TABLE DATA public events"), "{list}");
    let fc = dir.path().join("pg_dump_fc.dump");
    run(tool("pg_dump")
        .args(["-Fc", "-f"])
        .arg(&fc)
        .arg(pg.url("app")));
    let (ours, theirs) = (
        std::fs::metadata(&latest).unwrap().len(),
        std::fs::metadata(&fc).unwrap().len(),
    );
    assert!(
        ours <= theirs,
        "the download ({ours} bytes) is larger than pg_dump -Fc's file ({theirs} bytes)"
    );
    let info = svc.info("b001");
    assert!(
        ours * 5 < info["dump_size"].as_u64().unwrap(),
        "{ours} bytes is hardly compressed: {info}"
    );

    // Its data offsets are filled in, as in a file pg_dump writes itself.
    let index = pgbackups::pg::archive::scan(std::io::BufReader::new(
        std::fs::File::open(&latest).unwrap(),
    ))
    .unwrap()
    .unwrap();
    assert!(index.blocks.len() >= 3, "{index:?}");
    for block in &index.blocks {
        let entry = index.entries.iter().find(|e| e.dump_id == block.dump_id);
        assert_eq!(entry.map(|e| e.offset_flag), Some(2), "{block:?}");
    }

    // The stock pg_restore --jobs restores it whole: rows and large objects.
    pg.create_db("restored");
    run(tool("pg_restore")
        .args(["--jobs", "2", "--no-owner", "-d"])
        .arg(pg.url("restored"))
        .arg(&latest));
    assert_eq!(pg.row_counts("restored"), pg.row_counts("app"));
    assert_eq!(large_objects(&pg, "restored"), large_objects(&pg, "app"));
}

#[test]
fn heroku_download_shows_a_progress_bar_with_rate_and_eta_on_a_terminal() {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql("app", DATA);
    let svc = Service::start();
    svc.ok(&["databases:add", "main", &pg.url("app")]);
    svc.ok(&["backups:capture", "main"]);
    let dir = tempfile::tempdir().unwrap();
    // `script` gives the CLI a terminal, as a user's shell does.
    let out = Command::new("script")
        .args([
            "-qec",
            &format!("{} backups:download", common::binary()),
            "/dev/null",
        ])
        .current_dir(dir.path())
        .env("PGBACKUPS_URL", &svc.url)
        .env("PGBACKUPS_TOKEN", svc.token())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("Downloading latest.dump") && shown.contains("ETA"),
        "{shown}"
    );
    assert!(dir.path().join("latest.dump").exists());
}

#[test]
fn heroku_url_body_is_a_dump_that_curl_then_pg_restore_reads_even_through_a_pipe() {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql("app", DATA);
    let svc = Service::start();
    svc.ok(&["databases:add", "main", &pg.url("app")]);
    svc.ok(&["backups:capture", "main"]);
    let url = svc.ok(&["backups:url"]);
    let url = url.trim();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("latest.dump");

    // `curl -o latest.dump "$URL" && pg_restore --list latest.dump`, as Heroku's docs say.
    run(Command::new("curl")
        .args(["-sSf", "-o"])
        .arg(&file)
        .arg(url));
    let list = run(tool("pg_restore").arg("--list").arg(&file));
    assert!(list.contains("TABLE DATA public events"), "{list}");
    pg.create_db("from_file");
    run(tool("pg_restore")
        .args(["--jobs", "2", "--no-owner", "-d"])
        .arg(pg.url("from_file"))
        .arg(&file));
    assert_eq!(pg.row_counts("from_file"), pg.row_counts("app"));

    // `curl URL | pg_restore -d DB`: no file, no seeking.
    pg.create_db("from_pipe");
    let piped = Command::new("bash")
        .args([
            "-o",
            "pipefail",
            "-c",
            &format!(
                "curl -sSf '{url}' | {PG_BIN}/pg_restore --no-owner -d '{}'",
                pg.url("from_pipe")
            ),
        ])
        .output()
        .unwrap();
    assert!(piped.status.success(), "{}", text(&piped));
    assert_eq!(pg.row_counts("from_pipe"), pg.row_counts("app"));
    assert_eq!(large_objects(&pg, "from_pipe"), large_objects(&pg, "app"));

    // --raw: the stored object as it is, zstd.
    let raw = svc.ok(&["backups:url", "--raw"]);
    let body = Command::new("curl")
        .args(["-sSf", raw.trim()])
        .output()
        .unwrap();
    assert!(body.status.success(), "{}", text(&body));
    assert_eq!(&zstd::decode_all(&body.stdout[..]).unwrap()[..5], b"PGDMP");
}
