//! The Tool type against real small programs (`sh -c`).

use super::*;

fn sh(script: &str) -> Tool {
    let mut t = Tool::new("sh-tool", "/bin/sh");
    t.arg("-c").arg(script);
    t
}

#[test]
fn summarises_tool_errors() {
    let tail = vec![
        "pg_dump: dumping contents of table \"public.a\"".to_string(),
        "pg_dump: error: Dumping the contents of table \"b\" failed".to_string(),
        "pg_dump: detail: Error message from server: boom".to_string(),
    ];
    assert_eq!(
        error_summary(&tail),
        "pg_dump: error: Dumping the contents of table \"b\" failed / pg_dump: detail: Error message from server: boom"
    );
}

#[tokio::test]
async fn non_utf8_stderr_is_drained_to_the_end() {
    // A non-UTF-8 line, then many lines after it: every one reaches the sink, and the child
    // is never blocked on a full pipe.
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let s = seen.clone();
    let mut tool = sh(
        "printf 'caf\\351 latin1\\n'; i=0; while [ $i -lt 20000 ]; do echo \"line $i\" >&2; i=$((i+1)); done; printf 'bad \\377\\376 end\\n' >&2; echo last >&2",
    );
    tool.log_to(Arc::new(move |l: &str| {
        s.lock().unwrap().push(l.to_string())
    }));
    let out = tool.output(None).await.unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, b"caf\xe9 latin1\n");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 20002);
    assert_eq!(seen[20000], "bad \u{fffd}\u{fffd} end");
    assert_eq!(seen[20001], "last");
    assert_eq!(
        out.stderr.tail_text(),
        "line 19999\nbad \u{fffd}\u{fffd} end\nlast"
    );
}

#[tokio::test]
async fn a_failure_names_the_tool_its_status_and_stderr_tail() {
    let mut tool =
        sh("echo starting >&2; echo 'sh-tool: error: it broke' >&2; echo bye >&2; exit 3");
    let err = tool.output(None).await.unwrap().check().unwrap_err();
    let RunError::Failed { tool, status, .. } = &err else {
        panic!("not a failure: {err}")
    };
    assert_eq!(tool, "sh-tool");
    assert_eq!(status.code(), Some(3));
    assert_eq!(
        err.to_string(),
        "sh-tool failed (exit status: 3): sh-tool: error: it broke"
    );
    // Without error lines, the last lines explain it.
    let err = sh("echo one >&2; echo two >&2; echo three >&2; echo four >&2; exit 1")
        .output(None)
        .await
        .unwrap()
        .check()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "sh-tool failed (exit status: 1): two / three / four"
    );
}

#[tokio::test]
async fn a_missing_executable_is_named() {
    let err = Tool::new("pg_nothing", "/nonexistent/pg_nothing")
        .spawn()
        .err()
        .unwrap();
    assert!(
        err.to_string().starts_with("could not start pg_nothing: "),
        "{err}"
    );
}

#[tokio::test]
async fn cancel_kills_a_child_that_ignores_sigterm_after_the_grace() {
    let mut tool = sh("trap '' TERM; echo ready >&2; exec sleep 30");
    tool.grace(Duration::from_millis(300));
    let running = tool.spawn().unwrap();
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        s.cancel();
    });
    let started = std::time::Instant::now();
    let finished = running.wait(&stop, None).await.unwrap();
    let took = started.elapsed();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(finished.status.signal(), Some(9), "{:?}", finished.status);
    assert!(took >= Duration::from_millis(450), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(finished.stderr.lines(), vec!["ready".to_string()]);
}

#[tokio::test]
async fn sigterm_is_enough_for_a_child_that_heeds_it() {
    let mut tool = sh("exec sleep 30");
    let running = tool.spawn().unwrap();
    let started = std::time::Instant::now();
    let finished = running.stop().await.unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(finished.status.signal(), Some(15));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn the_environment_is_only_what_is_given() {
    // Our own HOME must not reach the child.
    assert!(std::env::var_os("HOME").is_some());
    let mut tool = sh("echo \"[$HOME][$GIVEN]\"");
    tool.env("GIVEN", "yes");
    let out = tool.output(None).await.unwrap().check().unwrap();
    assert_eq!(out.stdout_text(), "[][yes]\n");
}

#[test]
fn output_blocking_feeds_stdin() {
    let out = sh("tr a-z A-Z").feed("shout\n").output_blocking().unwrap();
    assert_eq!(out.check().unwrap().stdout_text(), "SHOUT\n");
}

#[tokio::test]
async fn output_feeds_stdin() {
    let out = sh("tr a-z A-Z").feed("shout\n").output(None).await.unwrap();
    assert_eq!(out.check().unwrap().stdout_text(), "SHOUT\n");
}

#[test]
fn output_blocking_keeps_stderr_and_stdout() {
    let out = sh("echo out; printf 'x\\377\\n' >&2; exit 2")
        .output_blocking()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(out.stdout_text(), "out\n");
    assert_eq!(out.stderr.lines(), vec!["x\u{fffd}".to_string()]);
}

#[test]
fn a_detached_child_runs_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let mut tool = sh("echo $$ > \"$1\"");
    tool.arg("sh")
        .arg(&marker)
        .own_process_group()
        .close_inherited_fds();
    let pid = tool.spawn_detached().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(&marker).map_or(true, |s| s.trim().is_empty()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the detached child never ran"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap().trim(),
        pid.to_string()
    );
}

#[tokio::test]
async fn a_second_token_also_stops_it() {
    let mut tool = sh("exec sleep 30");
    let running = tool.spawn().unwrap();
    let (stop, abort) = (CancellationToken::new(), CancellationToken::new());
    abort.cancel();
    let finished = running.wait(&stop, Some(&abort)).await.unwrap();
    assert!(!finished.success());
}

#[tokio::test]
async fn a_line_without_end_is_cut_not_hoarded() {
    let seen = Arc::new(Mutex::new(Vec::<usize>::new()));
    let s = seen.clone();
    let mut tool = sh("head -c 200000 /dev/zero | tr '\\0' x >&2");
    tool.log_to(Arc::new(move |l: &str| s.lock().unwrap().push(l.len())));
    tool.output(None).await.unwrap().check().unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.iter().sum::<usize>(), 200000);
    assert!(seen.iter().all(|n| *n <= 64 << 10), "{seen:?}");
}
