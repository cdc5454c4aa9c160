//! `--with-nameko`: nameko 2.14's own `@http` gateway (`tests/interop/http_gateway.py`, an
//! `RpcProxy` to the same greeter) loaded like Warren's gateway, so the comparison is one command.
//!
//! The venv is `$WARREN_VENV` or `<repo>/.venv/nameko`, created (idempotently) by
//! `scripts/nameko-venv.sh`, which pip-installs the pins of `tests/interop/requirements.txt`.

use super::procs::Process;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository the bench was built from (the scripts live there).
fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's python, creating the venv when it is missing or stale.
fn venv_python() -> Result<PathBuf> {
    let script = repo().join("scripts/nameko-venv.sh");
    println!("nameko: preparing the venv ({})", script.display());
    let output = Command::new("bash")
        .arg(&script)
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let python = stdout.lines().last().unwrap_or_default().trim();
    if python.is_empty() {
        bail!("{} named no python", script.display());
    }
    Ok(PathBuf::from(python))
}

/// Starts nameko's HTTP gateway on a free local port against `amqp_url`.
pub fn start(amqp_url: &str) -> Result<Process> {
    let python = venv_python()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut command = Command::new(python);
    command
        .arg(repo().join("tests/interop/http_gateway.py"))
        .arg(port.to_string())
        .env("AMQP_URI", amqp_url);
    Process::spawn(command, "nameko's http gateway")
}
