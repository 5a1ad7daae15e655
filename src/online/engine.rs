//! The container step of online mode: `registry garbage-collect` inside the registry's container,
//! then a restart (its blob cache is stale after a collection), through a container engine: the
//! `podman` or `docker` CLI, or the Docker Engine API on the unix socket of `DOCKER_HOST` (which
//! Docker and `podman system service` both serve).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::client::{self, CATALOG_SCOPE, Client, ClientOptions};
use crate::core::report::CollectorReport;

/// Which engine the operator named.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineKind {
    Docker,
    Podman,
}

/// How regsweep talks to the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Engine {
    /// A command-line client: `podman`, `docker`.
    Cli(String),
    /// The Docker Engine API on a unix socket.
    Api(PathBuf),
}

impl Engine {
    /// `podman`: its CLI. `docker`: the API on the socket of `DOCKER_HOST` (default
    /// `/var/run/docker.sock`), or the `docker` CLI for a `tcp://` or `ssh://` host.
    pub fn pick(kind: EngineKind, docker_host: Option<&str>) -> Engine {
        match (kind, docker_host) {
            (EngineKind::Podman, _) => Engine::Cli("podman".into()),
            (EngineKind::Docker, None) => Engine::Api("/var/run/docker.sock".into()),
            (EngineKind::Docker, Some(h)) => match h.strip_prefix("unix://") {
                Some(path) => Engine::Api(path.into()),
                None => Engine::Cli("docker".into()),
            },
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Engine::Cli(bin) => format!("{bin} CLI"),
            Engine::Api(sock) => format!("Docker Engine API on unix://{}", sock.display()),
        }
    }
}

/// What to run and where.
#[derive(Clone, Debug)]
pub struct GcStep {
    pub container: String,
    pub engine: Engine,
    /// The registry's config inside the container: `--gc-config`, else the one its own command
    /// serves ([`config_of`]).
    pub config: Option<String>,
    pub delete_untagged: bool,
    pub restart: bool,
}

/// The last `max` bytes of a text, on a character boundary.
fn tail(s: &str, max: usize) -> String {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_string()
}

/// `garbage-collect` ends with `N blobs marked, M blobs and K manifests eligible for deletion`.
fn blobs_deleted(output: &str) -> Option<u64> {
    let line = output.lines().rev().find(|l| l.contains("blobs eligible for deletion") || l.contains("blobs and"))?;
    let after = line.split("marked, ").nth(1)?;
    after.split_whitespace().next()?.parse().ok()
}

fn cli(bin: &str, args: &[&str]) -> Result<(i64, String)> {
    let out = Command::new(bin)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {bin} (is it installed? --engine names it)"))?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok((out.status.code().map_or(-1, i64::from), text))
}

/// The methods regsweep sends the Docker Engine API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Get,
    Post,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::Get => "GET",
            Method::Post => "POST",
        })
    }
}

/// One request to the Docker Engine API on a unix socket: the status and the body.
fn api(socket: &PathBuf, method: Method, path: &str, body: Option<&serde_json::Value>) -> Result<(u16, Vec<u8>)> {
    let mut s = UnixStream::connect(socket)
        .with_context(|| format!("cannot connect to the engine at unix://{}", socket.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(3600)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} /v1.41{path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).with_context(|| format!("{method} {path}: the engine's answer broke off"))?;
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").context("the engine sent no HTTP header")?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("the engine sent no status: {head:?}"))?;
    let mut rest = raw[end + 4..].to_vec();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_ascii_lowercase())
        })
    };
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        rest = dechunk(&rest)?;
    } else if let Some(n) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        rest.truncate(n);
    }
    Ok((status, rest))
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").context("a broken chunk")?;
        let size_text = String::from_utf8_lossy(&b[..eol]);
        let size =
            usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).context("a broken chunk")?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(b.get(..size).context("a truncated chunk")?);
        b = b.get(size + 2..).unwrap_or_default();
    }
}

/// The output of an exec without a TTY: 8-byte frame headers (stream, 0, 0, 0, size BE).
fn demux(mut b: &[u8]) -> String {
    let mut out = Vec::new();
    while b.len() >= 8 && b[0] <= 2 && b[1..4] == [0, 0, 0] {
        let size = u32::from_be_bytes([b[4], b[5], b[6], b[7]]) as usize;
        let end = (8 + size).min(b.len());
        out.extend_from_slice(&b[8..end]);
        b = &b[end..];
    }
    out.extend_from_slice(b);
    String::from_utf8_lossy(&out).into_owned()
}

fn api_ok(
    socket: &PathBuf,
    method: Method,
    path: &str,
    body: Option<&serde_json::Value>,
    ok: &[u16],
) -> Result<Vec<u8>> {
    let (status, body) = api(socket, method, path, body)?;
    if !ok.contains(&status) {
        let msg = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
        bail!("{method} {path}: the engine answered {status}: {msg}");
    }
    Ok(body)
}

/// Runs a command in the container through the API: its exit code and output.
fn api_exec(socket: &PathBuf, container: &str, cmd: &[String]) -> Result<(i64, String)> {
    let created = api_ok(
        socket,
        Method::Post,
        &format!("/containers/{container}/exec"),
        Some(&serde_json::json!({"AttachStdout": true, "AttachStderr": true, "Cmd": cmd})),
        &[200, 201],
    )?;
    let id: String = serde_json::from_slice::<serde_json::Value>(&created)?["Id"]
        .as_str()
        .context("the engine gave no exec id")?
        .to_string();
    let out = api_ok(
        socket,
        Method::Post,
        &format!("/exec/{id}/start"),
        Some(&serde_json::json!({"Detach": false, "Tty": false})),
        &[200],
    )?;
    let info = api_ok(socket, Method::Get, &format!("/exec/{id}/json"), None, &[200])?;
    let code = serde_json::from_slice::<serde_json::Value>(&info)?["ExitCode"].as_i64().unwrap_or(-1);
    Ok((code, demux(&out)))
}

/// Waits until the registry's `/v2/` answers again.
fn wait_for_registry(client: &Client, within: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        match client.ping() {
            Ok(()) => return Ok(()),
            Err(e) if start.elapsed() > within => {
                return Err(e).context(format!("the registry did not answer within {within:?} of its restart"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Whether the container runs; an error with the engine's words when it does not exist or the
/// engine does not answer.
pub fn running(engine: &Engine, c: &str) -> Result<bool> {
    Ok(match engine {
        Engine::Cli(bin) => {
            let (code, out) = cli(bin, &["inspect", "--format", "{{.State.Running}}", c])?;
            if code != 0 {
                bail!("{bin} inspect {c} failed (exit {code}): {}", out.trim());
            }
            out.trim() == "true"
        }
        Engine::Api(sock) => {
            let body = api_ok(sock, Method::Get, &format!("/containers/{c}/json"), None, &[200])?;
            serde_json::from_slice::<serde_json::Value>(&body)?["State"]["Running"].as_bool().unwrap_or(false)
        }
    })
}

/// Stops (`action` "stop") or starts ("start") a container.
pub fn stop_or_start(engine: &Engine, c: &str, action: &str) -> Result<()> {
    match engine {
        Engine::Cli(bin) => {
            let (code, out) = cli(bin, &[action, c])?;
            if code != 0 {
                bail!("{bin} {action} {c} failed (exit {code}): {}", out.trim());
            }
        }
        Engine::Api(sock) => {
            api_ok(sock, Method::Post, &format!("/containers/{c}/{action}"), None, &[204, 304])?;
        }
    }
    Ok(())
}

/// Waits until `/v2/` at `url` gives any HTTP answer (401 included: the registry is up), for an
/// offline run that started the registry's container again.
pub fn wait_until_answers(url: &str, within: Duration) -> Result<()> {
    let client = Client::new(&ClientOptions {
        url: url.to_string(),
        credentials: None,
        ca_cert: None,
        insecure: false,
        concurrency: 1,
    })?;
    let start = Instant::now();
    loop {
        let answer = client.send(client::Method::Get, "/v2/", CATALOG_SCOPE, None);
        match answer {
            Ok(r) if r.status < 500 && r.status != 429 => return Ok(()),
            Err(e) if super::client::is_refusal(&e) => return Ok(()),
            Ok(r) if start.elapsed() > within => {
                bail!("{}/v2/ still answers {} after {within:?}", client.base, r.status)
            }
            Err(e) if start.elapsed() > within => {
                return Err(e).context(format!("the registry did not answer within {within:?} of its start"));
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Asks the engine whether the container exists and runs (a dry run's check that the container
/// step would work): `Ok` with what it found, or an error with the engine's words.
pub fn probe(step: &GcStep) -> Result<String> {
    let c = &step.container;
    if !running(&step.engine, c)? {
        bail!("container {c} exists but is not running ({}): garbage-collect cannot run in it", step.engine.describe());
    }
    let config = config(step)?;
    Ok(format!(
        "the {} answers and container {c} is running; its collector would read {config}",
        step.engine.describe()
    ))
}

/// The config the collector reads: `--gc-config`, else the one the container serves.
fn config(step: &GcStep) -> Result<String> {
    match &step.config {
        Some(c) => Ok(c.clone()),
        None => config_of(&step.engine, &step.container),
    }
}

/// The config.yml a registry container serves, read from its own command line: the last argument
/// naming a `.yml` or `.yaml` file (`registry serve /etc/distribution/config.yml` in `registry:3`,
/// `/etc/docker/registry/config.yml` after `registry:2`'s entrypoint), else its
/// `REGISTRY_CONFIGURATION_PATH`. An error naming the container when neither says.
pub fn config_of(engine: &Engine, c: &str) -> Result<String> {
    let inspected: serde_json::Value = match engine {
        Engine::Cli(bin) => {
            let (code, out) = cli(bin, &["inspect", "--format", "{{json .}}", c])?;
            if code != 0 {
                bail!("{bin} inspect {c} failed (exit {code}): {}", out.trim());
            }
            // podman prints an array of one, docker the object.
            let v: serde_json::Value =
                serde_json::from_str(out.trim()).with_context(|| format!("{bin} inspect {c}: not JSON"))?;
            match v {
                serde_json::Value::Array(mut a) if !a.is_empty() => a.swap_remove(0),
                v => v,
            }
        }
        Engine::Api(sock) => {
            let body = api_ok(sock, Method::Get, &format!("/containers/{c}/json"), None, &[200])?;
            serde_json::from_slice(&body).with_context(|| format!("container {c}: its inspection is not JSON"))?
        }
    };
    config_in(&inspected).with_context(|| {
        format!(
            "container {c}: its command names no config.yml and it sets no REGISTRY_CONFIGURATION_PATH: give \
             --gc-config PATH (registry:3 serves /etc/distribution/config.yml, registry:2 /etc/docker/registry/config.yml)"
        )
    })
}

/// [`config_of`] from a container's inspection (`Path`, `Args`, `Config.Env`), as the registry
/// takes it: the argument after `serve` (whatever its name), else its `REGISTRY_CONFIGURATION_PATH`;
/// a command without `serve` (`registry:2`'s entrypoint script, which adds it) names its config
/// as a `.yml`/`.yaml` argument. A shell's script (`sh -c "..."`) names none that can be trusted.
fn config_in(inspected: &serde_json::Value) -> Option<String> {
    let args: Vec<&str> = std::iter::once(&inspected["Path"])
        .chain(inspected["Args"].as_array().into_iter().flatten())
        .filter_map(|a| a.as_str())
        .collect();
    let named = match args.iter().position(|a| *a == "serve") {
        Some(i) => args.get(i + 1).copied(),
        None => args.iter().copied().rfind(|a| a.ends_with(".yml") || a.ends_with(".yaml")),
    }
    .filter(|a| !a.contains(char::is_whitespace) && !a.starts_with('-'));
    let env = || {
        inspected["Config"]["Env"]
            .as_array()?
            .iter()
            .filter_map(|e| e.as_str()?.strip_prefix("REGISTRY_CONFIGURATION_PATH="))
            .find(|v| !v.is_empty())
    };
    named.or_else(env).map(String::from)
}

/// Runs the collector in the container, then (with `restart`) stops and starts it and waits
/// for the registry. A failed collector or restart is an error carrying the engine's message.
pub fn collect(step: &GcStep, client: &Client) -> Result<CollectorReport> {
    let mut cmd: Vec<String> = vec!["registry".into(), "garbage-collect".into()];
    if step.delete_untagged {
        cmd.push("--delete-untagged".into());
    }
    cmd.push(config(step)?);
    let c = &step.container;
    let (exit_code, output) = match &step.engine {
        Engine::Cli(bin) => {
            let mut args = vec!["exec", c.as_str()];
            args.extend(cmd.iter().map(String::as_str));
            cli(bin, &args)?
        }
        Engine::Api(sock) => api_exec(sock, c, &cmd)?,
    };
    let mut report = CollectorReport {
        container: c.clone(),
        engine: step.engine.describe(),
        command: cmd,
        exit_code,
        blobs_deleted: blobs_deleted(&output),
        output: tail(&output, 64 << 10),
        restarted: false,
    };
    if exit_code != 0 {
        bail!(
            "garbage-collect in container {c} failed (exit {exit_code}) through the {}:\n{}",
            report.engine,
            tail(&report.output, 4000)
        );
    }
    if step.restart {
        for action in ["stop", "start"] {
            stop_or_start(&step.engine, c, action)?;
        }
        wait_for_registry(client, Duration::from_secs(60))?;
        report.restarted = true;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_is_the_one_the_container_serves() {
        let of = |v: serde_json::Value| config_in(&v);
        let v3 = serde_json::json!({"Path": "registry", "Args": ["serve", "/etc/distribution/config.yml"]});
        assert_eq!(of(v3).as_deref(), Some("/etc/distribution/config.yml"));
        let v2 = serde_json::json!({"Path": "/entrypoint.sh", "Args": ["/etc/docker/registry/config.yml"]});
        assert_eq!(of(v2).as_deref(), Some("/etc/docker/registry/config.yml"));
        let env = serde_json::json!({"Path": "registry", "Args": ["serve"],
            "Config": {"Env": ["PATH=/bin", "REGISTRY_CONFIGURATION_PATH=/c/r.yaml"]}});
        assert_eq!(of(env).as_deref(), Some("/c/r.yaml"));
        assert_eq!(of(serde_json::json!({"Path": "registry", "Args": ["serve"]})), None);
        // The registry's own rule: the argument after serve, before the variable.
        let conf = serde_json::json!({"Path": "registry", "Args": ["serve", "/etc/r/config.conf"],
            "Config": {"Env": ["REGISTRY_CONFIGURATION_PATH=/other.yml"]}});
        assert_eq!(of(conf).as_deref(), Some("/etc/r/config.conf"));
        let shell = serde_json::json!({"Path": "sh", "Args": ["-c", "registry serve /x/config.yml"]});
        assert_eq!(of(shell), None);
    }

    #[test]
    fn engine_choice() {
        assert_eq!(Engine::pick(EngineKind::Podman, Some("unix:///x")), Engine::Cli("podman".into()));
        assert_eq!(Engine::pick(EngineKind::Docker, Some("unix:///tmp/x.sock")), Engine::Api("/tmp/x.sock".into()));
        assert_eq!(Engine::pick(EngineKind::Docker, Some("tcp://h:2376")), Engine::Cli("docker".into()));
        assert_eq!(Engine::pick(EngineKind::Docker, None), Engine::Api("/var/run/docker.sock".into()));
    }

    #[test]
    fn framing() {
        let mut b = vec![1, 0, 0, 0, 0, 0, 0, 3];
        b.extend_from_slice(b"ab\n");
        b.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 2]);
        b.extend_from_slice(b"e\n");
        assert_eq!(demux(&b), "ab\ne\n");
        assert_eq!(demux(b"plain"), "plain");
        assert_eq!(dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap(), b"abcde");
        assert_eq!(blobs_deleted("x\n12 blobs marked, 5 blobs and 2 manifests eligible for deletion\n"), Some(5));
    }
}
