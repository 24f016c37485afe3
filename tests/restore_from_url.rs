//! Restores from an http URL, served by a small HTTP server the test starts on 127.0.0.1:
//! a good file, a 404, a truncated file, an HTML page, and a server that stops sending.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use common::{Cluster, Service, text, transfer_id};

/// Serves `/good.dump` (the dump), `/cut.dump` (half of it, announced whole), `/page.html`,
/// `/slow.dump` (headers, a few bytes, then silence) and 404 for anything else.
fn serve(dump: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let dump = dump.clone();
            std::thread::spawn(move || {
                let mut first = String::new();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                reader.read_line(&mut first).unwrap_or(0);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) <= 2 {
                        break;
                    }
                }
                let target = first.split_whitespace().nth(1).unwrap_or("/");
                let path = target.split('?').next().unwrap_or("/").to_string();
                let head = |status: &str, len: usize, kind: &str| {
                    format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {len}\r\nContent-Type: {kind}\r\nConnection: close\r\n\r\n"
                    )
                };
                let _ = match path.as_str() {
                    "/good.dump" => stream
                        .write_all(
                            head("200 OK", dump.len(), "application/octet-stream").as_bytes(),
                        )
                        .and_then(|_| stream.write_all(&dump)),
                    "/cut.dump" => stream
                        .write_all(
                            head("200 OK", dump.len(), "application/octet-stream").as_bytes(),
                        )
                        .and_then(|_| stream.write_all(&dump[..dump.len() / 2])),
                    "/page.html" => {
                        let page = b"<!DOCTYPE html><html><body>Download your backup</body></html>";
                        stream
                            .write_all(head("200 OK", page.len(), "text/html").as_bytes())
                            .and_then(|_| stream.write_all(page))
                    }
                    "/slow.dump" => {
                        let r = stream
                            .write_all(
                                head("200 OK", dump.len(), "application/octet-stream").as_bytes(),
                            )
                            .and_then(|_| stream.write_all(&dump[..100]));
                        std::thread::sleep(Duration::from_secs(30));
                        r
                    }
                    _ => stream.write_all(head("404 Not Found", 0, "text/plain").as_bytes()),
                };
            });
        }
    });
    base
}

#[test]
fn restores_from_a_url_and_refuses_bad_downloads_before_touching_the_target() {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql(
        "app",
        "CREATE TABLE t AS SELECT g, md5(g::text) AS h FROM generate_series(1, 20000) g",
    );
    // A dump as any user would have one: from the stock pg_dump, to a file.
    let dir = tempfile::tempdir().unwrap();
    let file: PathBuf = dir.path().join("app.dump");
    let out = std::process::Command::new(format!("{}/pg_dump", common::PG_BIN))
        .args([
            "-Fc",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-p",
            &pg.port.to_string(),
            "-f",
        ])
        .arg(&file)
        .arg("app")
        .env("PGPASSWORD", common::PASSWORD)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let base = serve(std::fs::read(&file).unwrap());

    pg.create_db("target");
    pg.psql(
        "target",
        "CREATE TABLE precious (x int); INSERT INTO precious VALUES (42)",
    );
    let dir2 = tempfile::tempdir().unwrap();
    let svc = Service::start_in_with(
        dir2.path().join("data"),
        &[("PGBACKUPS_URL_READ_TIMEOUT", "2")],
    );
    let target = pg.url("target");

    let refused = |path: &str| -> String {
        let url = format!("{base}{path}?X-Amz-Signature=s3cr3t");
        let out = svc.cli(&["backups:restore", &url, &target, "--confirm", "target"]);
        assert!(!out.status.success(), "{path}: {}", text(&out));
        let info = svc.info(&transfer_id(&out));
        assert_eq!(info["state"], "failed");
        assert_eq!(
            pg.psql("target", "SELECT x FROM precious").trim(),
            "42",
            "{path}"
        );
        let shown = format!("{}{}", text(&out), info);
        assert!(!shown.contains("s3cr3t"), "the signature leaked: {shown}");
        info["error"].as_str().unwrap().to_string()
    };
    assert!(refused("/missing.dump").contains("404"));
    let page = refused("/page.html");
    assert!(page.contains("web page"), "{page}");
    let cut = refused("/cut.dump");
    assert!(
        cut.contains("broke off") || cut.contains("not a complete"),
        "{cut}"
    );
    assert!(refused("/slow.dump").contains("sent nothing for 2 s"));

    let out = svc.cli(&[
        "backups:restore",
        &format!("{base}/good.dump"),
        &target,
        "--confirm",
        "target",
        "--jobs",
        "2",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(pg.row_counts("app"), pg.row_counts("target"));
    let info = svc.info(&transfer_id(&out));
    assert_eq!(info["source"], format!("{base}/good.dump"));
    assert!(svc.ok(&["backups"]).contains("good.dump"));

    // A local file, uploaded by the CLI.
    pg.psql("target", "DROP TABLE t");
    let f = file.to_str().unwrap();
    let out = svc.cli(&[
        "backups:restore",
        "--file",
        f,
        &target,
        "--confirm",
        "target",
        "--jobs",
        "2",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(pg.row_counts("app"), pg.row_counts("target"));
    assert!(
        svc.info(&transfer_id(&out))["source"]
            .as_str()
            .unwrap()
            .contains("app.dump")
    );
    let not_a_dump = dir.path().join("notes.txt");
    std::fs::write(&not_a_dump, "just some text").unwrap();
    let out = svc.cli(&[
        "backups:restore",
        "--file",
        not_a_dump.to_str().unwrap(),
        &target,
        "--confirm",
        "target",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("not a custom-format dump"),
        "{}",
        text(&out)
    );
    assert_eq!(pg.row_counts("app"), pg.row_counts("target"));
    // Nothing is left in scratch space, used or refused.
    let left: Vec<_> = std::fs::read_dir(svc.data_dir.join("tmp"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");

    let out = svc.cli(&[
        "backups:restore",
        "ftp://example.com/x.dump",
        &target,
        "--confirm",
        "target",
    ]);
    assert!(!out.status.success());
}

/// Heroku asks for the name before a destructive restore. Ours asks before the file is sent,
/// so that it is sent once: a FIFO, which can be read only once, restores (a second sending
/// would wait forever for a writer).
#[test]
fn a_file_restore_confirmed_at_the_prompt_sends_the_file_once() {
    let pg = Cluster::start();
    pg.create_db("app");
    pg.psql(
        "app",
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 70) g",
    );
    pg.create_db("staging");
    let svc = Service::start();
    svc.ok(&["databases:add", "staging", &pg.url("staging")]);
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("app.dump");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let (dump_to, app) = (fifo.clone(), pg.url("app"));
    let writer = std::thread::spawn(move || {
        std::process::Command::new("timeout")
            .arg("60")
            .arg(format!("{}/pg_dump", common::PG_BIN))
            .args(["-Fc", "--no-sync", "-f"])
            .arg(&dump_to)
            .arg(app)
            .status()
            .unwrap()
    });
    // `script` runs the CLI on a pseudo-terminal and types what it reads from its stdin. Its
    // shell is pinned to sh, as on CI, where sh does not exec the command: `timeout` must then
    // stay in the terminal's foreground group (`--foreground`), or the CLI's read of the
    // answer stops it (SIGTTIN) and the test hangs.
    let mut child = std::process::Command::new("script")
        .args([
            "-qec",
            "timeout --foreground 60 \"$BIN\" backups:restore --file \"$FILE\" staging",
            "/dev/null",
        ])
        .env("SHELL", "/bin/sh")
        .env("BIN", common::binary())
        .env("FILE", &fifo)
        .env("PGBACKUPS_URL", &svc.url)
        .env("PGBACKUPS_TOKEN", svc.token())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"staging\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let shown = common::text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("Destructive action"), "{shown}");
    assert!(
        writer.join().unwrap().success(),
        "pg_dump could not write the FIFO"
    );
    assert_eq!(pg.psql("staging", "SELECT count(*) FROM t").trim(), "70");
}
