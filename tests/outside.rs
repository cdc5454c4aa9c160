//! A crate outside the workspace, made as the services guide (`docs/services.md`) tells a user
//! to: its `Cargo.toml` and `src/main.rs` are the guide's own blocks, with Warren's crates by
//! path. It is built (against the workspace's `Cargo.lock` and `[profile.*]` settings, in the
//! shared target directory, so that it reuses what the workspace built), run, and called over
//! HTTP.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How long building the crate may take (most of it is linking; the dependencies are built).
const BUILD_LIMIT: Duration = Duration::from_secs(480);

/// The repository.
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The code block that follows `<!-- outside-crate: NAME -->` in the guide.
fn block(guide: &str, name: &str) -> String {
    let marker = format!("<!-- outside-crate: {name} -->");
    let after = guide
        .split_once(&marker)
        .unwrap_or_else(|| panic!("no {marker} in docs/services.md"))
        .1;
    let fence = after.find("```").expect("a code block after the marker");
    let body = &after[fence..];
    let start = body.find('\n').expect("a fence line") + 1;
    let end = body[start..].find("```").expect("the block's end") + start;
    body[start..end].to_owned()
}

/// The `[profile.*]` sections of the workspace's manifest, so the crate's dependencies are
/// built (and found built) with the same settings.
fn profiles(manifest: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in manifest.lines() {
        if line.starts_with('[') {
            inside = line.starts_with("[profile.");
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The workspace's target directory: `CARGO_TARGET_DIR`, or the one the `warren` binary is in.
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_BIN_EXE_warren"))
        .ancestors()
        .nth(2)
        .expect("target/<profile>/warren")
        .to_owned()
}

#[tokio::test]
async fn a_crate_outside_the_workspace_builds_runs_and_answers() {
    let guide = std::fs::read_to_string(repo().join("docs/services.md")).expect("the guide");
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).expect("Cargo.toml");
    let dir = std::env::temp_dir().join(common::unique("outside"));
    std::fs::create_dir_all(dir.join("src")).expect("dir");
    let warren = format!("{}/", repo().display());
    let cargo_toml = block(&guide, "Cargo.toml").replace("../warren/", &warren);
    assert!(
        cargo_toml.contains(&format!("{warren}mesh")),
        "{cargo_toml}"
    );
    // A workspace of its own (it is outside any), and the workspace's profiles.
    let cargo_toml = format!("{cargo_toml}\n[workspace]\n\n{}", profiles(&manifest));
    std::fs::write(dir.join("Cargo.toml"), cargo_toml).expect("Cargo.toml");
    std::fs::write(dir.join("src/main.rs"), block(&guide, "src/main.rs")).expect("main.rs");
    std::fs::copy(repo().join("Cargo.lock"), dir.join("Cargo.lock")).expect("Cargo.lock");

    // Under nextest no cargo holds the target directory while tests run, so the crate is built
    // in it and reuses the workspace's dependencies; under `cargo test`, which may hold it, in
    // a directory of its own.
    let target = if std::env::var_os("NEXTEST").is_some() {
        target_dir()
    } else {
        target_dir().join("outside")
    };
    let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    build
        .args(["build", "--quiet", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target);
    let started = std::time::Instant::now();
    let output = tokio::task::spawn_blocking(move || {
        warren_procs::run(build, "cargo build (outside crate)", BUILD_LIMIT)
            .unwrap_or_else(|e| panic!("{e}"))
    })
    .await
    .expect("task");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("the outside crate built in {:?}", started.elapsed());

    let mut command = Command::new(target.join("debug/hello-service"));
    command
        .env("WARREN_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .env_remove("AMQP_URL");
    let (child, first) =
        tokio::task::spawn_blocking(move || common::process::start(command, "hello-service"))
            .await
            .expect("task");
    assert!(
        first.starts_with("hello-service: gateway on http://"),
        "{first}"
    );
    let address = common::process::http_address(&first);
    let answer = reqwest::Client::new()
        .post(format!("http://{address}/rpc/greeting_service/hello"))
        .json(&serde_json::json!({"name": "Matt"}))
        .send()
        .await
        .expect("send");
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.expect("text"), "\"Hello, Matt!\"");
    let status = tokio::task::spawn_blocking(move || {
        common::process::terminate(child, Duration::from_secs(20))
    })
    .await
    .expect("task");
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(dir);
}
