//! What operators run regsweep with, checked by the tools they would use: metrics files by
//! `promtool` (and the alert rules by `promtool test rules`), completions by bash itself, the
//! manual by `man`, the systemd units by `systemd-analyze verify`, the cron file by its format,
//! the documentation's links by the files and headings they name.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

/// The samples of a metrics file, by name (the labels dropped).
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, rest) = l.split_once('{')?;
            Some((name.to_string(), rest.rsplit(' ').next()?.parse().ok()?))
        })
        .collect()
}

fn promtool_accepts(path: &Path) {
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(path).unwrap())
        .output()
        .expect("promtool must be installed (tests/run.sh installs prometheus)");
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `--metrics-file`: the run's figures, equal to its report, accepted by promtool, replaced
/// atomically (readable by node_exporter, no temporary file left), written by failed runs too,
/// which keep the time of the last success.
#[test]
fn metrics_files_say_what_the_run_did_and_survive_failures() {
    let store = fixture("demo");
    let root = store.path().to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("regsweep.prom");
    let metrics = file.to_str().unwrap();
    let report = regsweep_json(&["prune", "--root", root, "--keep", "2", "--grace", "0s", "--metrics-file", metrics]);
    promtool_accepts(&file);
    let m = samples(&std::fs::read_to_string(&file).unwrap());
    for (metric, field) in [
        ("regsweep_tags_deleted", "tags_deleted"),
        ("regsweep_tags_kept", "tags_kept"),
        ("regsweep_manifests_deleted", "manifests_deleted"),
        ("regsweep_layer_links_deleted", "layer_links_deleted"),
        ("regsweep_blobs_deleted", "blobs_deleted"),
        ("regsweep_uploads_deleted", "uploads_deleted"),
        ("regsweep_freed_bytes", "bytes_freed"),
        ("regsweep_repositories", "repositories"),
    ] {
        assert_eq!(m[metric], report[field].as_f64().unwrap(), "{metric}");
    }
    assert!(m["regsweep_blobs_deleted"] > 0.0);
    assert_eq!(m["regsweep_left_bytes"], blob_bytes(store.path()) as f64, "the bytes left on disk");
    assert_eq!(report["bytes_left"], blob_bytes(store.path()));
    assert_eq!((m["regsweep_exit_code"], m["regsweep_dry_run"], m["regsweep_errors"]), (0.0, 0.0, 0.0));
    let success = m["regsweep_last_success_timestamp_seconds"];
    assert_eq!(success, m["regsweep_last_run_timestamp_seconds"]);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o644, "readable by node_exporter");

    // A run that fails: its exit status, no figures, the last success kept.
    let out = regsweep(&["prune", "--root", "/nonexistent", "--keep", "2", "--metrics-file", metrics]);
    assert_eq!(out.status.code(), Some(1));
    promtool_accepts(&file);
    let m = samples(&std::fs::read_to_string(&file).unwrap());
    assert_eq!(m["regsweep_exit_code"], 1.0);
    assert_eq!(m["regsweep_last_success_timestamp_seconds"], success);
    assert!(m["regsweep_last_run_timestamp_seconds"] > success);
    assert!(!m.contains_key("regsweep_tags_deleted"));
    // A usage error too (exit 2); and a dry run of gc says it is one.
    let out = regsweep(&["prune", "--root", root, "--keep", "2", "--keep-tag", "(", "--metrics-file", metrics]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(samples(&std::fs::read_to_string(&file).unwrap())["regsweep_exit_code"], 2.0);
    regsweep_json(&["gc", "--root", root, "--dry-run", "--metrics-file", metrics]);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("command=\"gc\""), "{text}");
    let m = samples(&text);
    assert_eq!((m["regsweep_dry_run"], m["regsweep_exit_code"]), (1.0, 0.0));
    assert_eq!(m["regsweep_left_bytes"], blob_bytes(store.path()) as f64, "nothing left to collect");
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["regsweep.prom"], "no temporary file left");

    // Online: the same file format, command="online".
    let reg = Registry::serve(store.path());
    let out = regsweep(&[
        "online",
        "--url",
        &reg.url,
        "--keep",
        "1",
        "--order",
        "name",
        "--dry-run",
        "--metrics-file",
        metrics,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    promtool_accepts(&file);
    assert!(std::fs::read_to_string(&file).unwrap().contains("command=\"online\""));
    // A metrics file that cannot be written fails a run that would have succeeded.
    let out = regsweep(&["gc", "--root", root, "--dry-run", "--metrics-file", "/nonexistent/dir/regsweep.prom"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/dir/regsweep.prom"));
}

/// The alert rules of contrib/prometheus: valid, and they fire when they should
/// (regsweep.rules.test.yml).
#[test]
fn the_alert_rules_pass_promtools_tests() {
    let dir = top().join("contrib/prometheus");
    let out =
        Command::new("promtool").args(["check", "rules", "regsweep.rules.yml"]).current_dir(&dir).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let out =
        Command::new("promtool").args(["test", "rules", "regsweep.rules.test.yml"]).current_dir(&dir).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// Completions as bash runs them: commands, then a command's options.
#[test]
fn completions_complete_in_bash_and_parse_in_zsh() {
    let dir = tempfile::tempdir().unwrap();
    let bash = dir.path().join("regsweep.bash");
    let out = regsweep(&["completions", "bash"]);
    assert!(out.status.success());
    std::fs::write(&bash, &out.stdout).unwrap();
    let complete = |words: &str| -> String {
        let script = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); COMP_LINE=\"{words}\"; \
             COMP_POINT=${{#COMP_LINE}}; _regsweep regsweep \"${{COMP_WORDS[-1]}}\" \"${{COMP_WORDS[-2]}}\"; \
             echo \"${{COMPREPLY[@]}}\"",
            bash.display()
        );
        let out = Command::new("bash").args(["-c", &script]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let commands = complete("regsweep pr");
    assert_eq!(commands.split_whitespace().collect::<Vec<_>>(), ["prune"], "{commands}");
    let options = complete("regsweep prune --stop");
    assert!(options.split_whitespace().any(|o| o == "--stop-container"), "{options}");
    let options = complete("regsweep du --u");
    assert!(options.split_whitespace().any(|o| o == "--url"), "{options}");

    let out = regsweep(&["completions", "zsh"]);
    let zsh = dir.path().join("_regsweep");
    std::fs::write(&zsh, &out.stdout).unwrap();
    let check = Command::new("zsh").arg("-n").arg(&zsh).output().expect("zsh (tests/run.sh installs it)");
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let fish = String::from_utf8(regsweep(&["completions", "fish"]).stdout).unwrap();
    assert!(fish.contains("complete -c regsweep") && fish.contains("stop-container"), "{fish}");
}

/// The manual renders with `man`, without warnings: a page per command, the exit status.
#[test]
fn the_manual_renders() {
    let dir = tempfile::tempdir().unwrap();
    let out = regsweep(&["man", "--out-dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for page in ["regsweep", "regsweep-prune", "regsweep-gc", "regsweep-du", "regsweep-online", "regsweep-check"] {
        let path = dir.path().join(format!("{page}.1"));
        let out = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(&path)
            .env("MANWIDTH", "100")
            .env("MAN_KEEP_FORMATTING", "0")
            .stdin(Stdio::null())
            .output()
            .expect("man (tests/run.sh installs man-db)");
        assert!(out.status.success(), "{page}");
        // Bold and underline as overstrikes (`N\bN`): the letters alone.
        let mut text = String::new();
        for c in String::from_utf8_lossy(&out.stdout).chars() {
            if c == '\u{8}' {
                text.pop();
            } else {
                text.push(c);
            }
        }
        assert!(
            String::from_utf8_lossy(&out.stderr).trim().is_empty(),
            "{page}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        match page {
            "regsweep" => assert!(
                text.contains("EXIT STATUS") && text.contains("regsweep-prune(1)") && text.contains("SEE ALSO\n"),
                "{text}"
            ),
            "regsweep-prune" => assert!(
                text.contains("--stop-container") && text.contains("--metrics-file") && text.contains("SEE ALSO\n"),
                "{text}"
            ),
            _ => assert!(text.contains("SYNOPSIS"), "{text}"),
        }
    }
    let top = String::from_utf8(regsweep(&["man"]).stdout).unwrap();
    assert!(top.starts_with(".ie") || top.contains(".TH regsweep 1"), "{top}");
}

/// The units of contrib/systemd pass `systemd-analyze verify` (with the binary where the
/// service says); the registry is started again without blocking; the listener is up before
/// the registry and comes back when it dies.
#[test]
fn the_systemd_units_verify() {
    let dir = tempfile::tempdir().unwrap();
    let units = top().join("contrib/systemd");
    let service = std::fs::read_to_string(units.join("regsweep.service")).unwrap();
    assert!(service.contains("ExecStopPost=/bin/systemctl start --no-block docker-registry.service"));
    assert!(service.contains("Conflicts=docker-registry.service"));
    let bin = env!("CARGO_BIN_EXE_regsweep");
    std::fs::write(dir.path().join("regsweep.service"), service.replace("/usr/local/bin/regsweep", bin)).unwrap();
    std::fs::copy(units.join("regsweep.timer"), dir.path().join("regsweep.timer")).unwrap();
    let listen = std::fs::read_to_string(units.join("regsweep-listen.service")).unwrap();
    assert!(listen.contains("Before=docker-registry.service") && listen.contains("Restart=always"));
    std::fs::write(dir.path().join("regsweep-listen.service"), listen.replace("/usr/local/bin/regsweep", bin)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path().join("regsweep.service"))
        .arg(dir.path().join("regsweep.timer"))
        .arg(dir.path().join("regsweep-listen.service"))
        .output()
        .expect("systemd-analyze (tests/run.sh installs systemd)");
    let err = String::from_utf8_lossy(&out.stderr);
    // Outside a booted systemd it may say so; it must find nothing wrong with the units.
    let problems: Vec<&str> = err.lines().filter(|l| l.contains("regsweep")).collect();
    assert!(out.status.success() && problems.is_empty(), "{err}");
    // The command line of the service is one regsweep accepts.
    let exec = service.lines().find_map(|l| l.strip_prefix("ExecStart=")).unwrap();
    assert_parses(exec);
    let exec = listen.lines().find_map(|l| l.strip_prefix("ExecStart=")).unwrap();
    assert_parses(exec);
}

/// A command line of regsweep's parses (`--help` appended: nothing runs).
fn assert_parses(line: &str) {
    let words: Vec<&str> = line.split_whitespace().collect();
    assert!(words[0].ends_with("/regsweep"), "{line}");
    let out = regsweep(&[&words[1..], &["--help"][..]].concat());
    assert!(out.status.success(), "{line}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A cron job line: five time fields, the user field in /etc/cron.d (`with_user`), a command
/// that is valid sh, holds no `%` (cron turns it into a newline), and names regsweep by its
/// full path (cron's PATH is short) with arguments regsweep accepts.
fn assert_cron_job(line: &str, with_user: bool) {
    let fields: Vec<&str> = line.splitn(if with_user { 7 } else { 6 }, ' ').collect();
    let command = fields.last().unwrap();
    assert_eq!(fields.len(), if with_user { 7 } else { 6 }, "{line}");
    assert!(fields[..5].iter().all(|f| f.chars().all(|c| c.is_ascii_digit() || "*/,-".contains(c))), "{line}");
    if with_user {
        assert_eq!(fields[5], "root", "{line}");
    }
    assert!(!command.contains('%'), "{line}");
    let out = Command::new("sh").args(["-n", "-c", command]).output().unwrap();
    assert!(out.status.success(), "{line}");
    for part in command.split(';').map(str::trim).filter(|p| p.contains("regsweep ")) {
        // Environment assignments first (VAR=$(...) ...), then the command.
        let words: Vec<&str> = part.split(' ').collect();
        let at = words.iter().position(|w| w.ends_with("/regsweep") || *w == "regsweep").unwrap();
        assert_eq!(words[at], "/usr/local/bin/regsweep", "{part}");
        assert_parses(&words[at..].join(" "));
    }
}

/// contrib/cron/regsweep is a valid /etc/cron.d file (environment lines, then jobs), and the
/// cron lines of the documentation (README.md, docs/*.md) are valid in /etc/cron.d (with `root`)
/// or in a user's crontab.
#[test]
fn the_cron_lines_are_valid() {
    let text = std::fs::read_to_string(top().join("contrib/cron/regsweep")).unwrap();
    assert!(text.ends_with('\n'), "cron ignores a last line without a newline");
    let mut jobs = 0;
    for line in text.lines().map(|l| l.strip_prefix('#').filter(|j| j.starts_with("0 ")).unwrap_or(l)) {
        if line.is_empty() || line.starts_with('#') || line.split_once('=').is_some_and(|(k, _)| !k.contains(' ')) {
            continue;
        }
        assert_cron_job(line, true);
        jobs += 1;
    }
    assert_eq!(jobs, 2);
    let docs: Vec<String> = markdown_files().iter().map(|p| std::fs::read_to_string(p).unwrap()).collect();
    let blocks = docs.iter().flat_map(|d| d.split("```cron\n").skip(1).map(|b| b.split("```").next().unwrap()));
    let lines: Vec<&str> = blocks.flat_map(str::lines).filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "{lines:?}");
    for line in lines {
        assert_cron_job(line, line.split(' ').nth(5) == Some("root"));
    }
}

/// The documentation: README.md and docs/*.md.
fn markdown_files() -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(top().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    files.sort();
    files.insert(0, top().join("README.md"));
    files
}

/// The lines of a markdown text outside its fenced code blocks.
fn prose(text: &str) -> impl Iterator<Item = &str> {
    let mut fenced = false;
    text.lines().filter(move |l| {
        if l.trim_start().starts_with("```") {
            fenced = !fenced;
            return false;
        }
        !fenced
    })
}

/// The anchors of a markdown text's headings, as GitHub makes them: the heading's text in lower
/// case, inline code's backticks and every character but letters, digits, `_`, `-` and spaces
/// dropped, spaces made hyphens; a repeated anchor gets `-1`, `-2`, ...
fn anchors(text: &str) -> std::collections::BTreeSet<String> {
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    let mut out = std::collections::BTreeSet::new();
    for line in prose(text) {
        let Some(heading) = line.strip_prefix('#').map(|h| h.trim_start_matches('#')) else { continue };
        if !heading.starts_with(' ') {
            continue;
        }
        let slug: String = heading
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | ' '))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let n = seen.entry(slug.clone()).or_insert(0);
        out.insert(if *n == 0 { slug.clone() } else { format!("{slug}-{n}") });
        *n += 1;
    }
    out
}

/// `-h`, `--help` and the manual name where the documentation is, each command's `--help` its
/// page, and every file they name exists.
#[test]
fn the_help_points_to_the_documentation() {
    let named = regex::Regex::new(r"docs/[A-Za-z]+\.md").unwrap();
    let pages = [
        ("prune", "docs/GUIDE.md"),
        ("gc", "docs/GUIDE.md"),
        ("check", "docs/check.md"),
        ("online", "docs/online.md"),
        ("du", "docs/du.md"),
        ("listen", "docs/pulls.md"),
        ("pulls", "docs/pulls.md"),
        ("gen", "docs/performance.md"),
    ];
    let top_level = [(vec!["-h"], "docs/FAQ.md"), (vec!["--help"], "docs/FAQ.md"), (vec!["man"], "docs/FAQ.md")];
    for (args, page) in top_level.into_iter().chain(pages.map(|(c, page)| (vec![c, "--help"], page))) {
        let text = String::from_utf8(regsweep(&args).stdout).unwrap();
        let files: Vec<&str> = named.find_iter(&text).map(|m| m.as_str()).collect();
        assert!(files.contains(&page), "{args:?} does not name {page}: {text}");
        for file in files {
            assert!(top().join(file).is_file(), "{args:?} names {file}, which does not exist");
        }
    }
}

/// Every relative link of the documentation (README.md, docs/*.md) leads to a file that exists,
/// and its `#anchor`, where it has one, to a heading of that file (GitHub's anchor rule).
#[test]
fn the_documentation_links_resolve() {
    let link = regex::Regex::new(r"\]\(([^)\s]+)\)").unwrap();
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.strip_prefix(top()).unwrap().display().to_string();
        for line in prose(&text) {
            for target in link.captures_iter(line).map(|c| c.get(1).unwrap().as_str()) {
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                checked += 1;
                let (path, anchor) = target.split_once('#').map_or((target, None), |(p, a)| (p, Some(a)));
                let to = if path.is_empty() { file.clone() } else { file.parent().unwrap().join(path) };
                if !to.exists() {
                    broken.push(format!("{name}: {target}: no file {}", to.display()));
                    continue;
                }
                let Some(anchor) = anchor else { continue };
                if to.extension().is_some_and(|x| x == "md")
                    && !anchors(&std::fs::read_to_string(&to).unwrap()).contains(anchor)
                {
                    broken.push(format!("{name}: {target}: no heading #{anchor} in {}", to.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(checked > 50, "only {checked} links found: is the pattern right?");
}

/// The LICENSE file is the license Cargo.toml names.
#[test]
fn the_license_file_matches_cargo_toml() {
    let cargo = std::fs::read_to_string(top().join("Cargo.toml")).unwrap();
    assert!(cargo.contains("license = \"Apache-2.0\""));
    let license = std::fs::read_to_string(top().join("LICENSE")).unwrap();
    assert!(license.contains("Apache License") && license.contains("Version 2.0, January 2004"));
}
