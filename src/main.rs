//! The regsweep binary: parses arguments, calls the library, prints, maps errors to exit codes
//! (0 done, 1 error before anything was deleted, 2 usage, 3 some deletions failed, 4 `check`
//! found a tag that would fail a pull, 5 a container step failed, 130 interrupted).

mod cli;
mod monitor;

use std::io::IsTerminal;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser};
use globset::{GlobBuilder, GlobSetBuilder};
use regex::Regex;

use cli::{
    ApiArgs, AreaArg, CheckArgs, Cli, CollectArgs, Command, CountArgs, DuArgs, FilterArgs, GenArgs, ImportArgs,
    InUseArgs, ListenArgs, OnlineArgs, PullsCommand, ShowArgs, SortArg, StoreArgs,
};
use monitor::{Ended, exit_status, monitored};
use regsweep::Mode;
use regsweep::core::in_use::InUse;
use regsweep::core::plan::Options;
use regsweep::core::policy::{Globs, Order, Retention};
use regsweep::core::progress::Progress;
use regsweep::core::usage::{Area, SortBy};
use regsweep::generate::{self, GenOptions};
use regsweep::model::error::{ErrorKind, RunError};
use regsweep::model::warning::Warning;
use regsweep::model::{ContainerStep, UsageError};
use regsweep::online::OnlineOptions;
use regsweep::online::client::{self, Client, ClientOptions, Credentials};
use regsweep::online::engine::{self, Engine, GcStep};
use regsweep::store::check::CheckOptions;
use regsweep::store::config;
use regsweep::store::location::Location;

/// Prints a report as JSON on stdout, streamed (the report of a large prune lists every tag).
fn print_json(report: &impl serde::Serialize) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, report)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// A usage error: exit 2, as clap's own.
fn usage(msg: String) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg))
}

fn globs(option: &str, patterns: &[String]) -> Result<Option<Globs>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut set = GlobSetBuilder::new();
    for p in patterns {
        let glob = GlobBuilder::new(p)
            .literal_separator(true)
            .build()
            .map_err(|e| usage(format!("bad {option} glob {p:?}: {e}")))?;
        set.add(glob);
    }
    let set = set.build().map_err(|e| usage(format!("bad {option} globs: {e}")))?;
    Ok(Some(Globs { set, patterns: patterns.to_vec() }))
}

/// Where the store is: `--root` (a folder, or `s3://BUCKET/ROOTDIRECTORY`), or the registry's
/// config file, with the warnings of its reading (keys regsweep does not honour): `prune` and
/// `gc` put them in the report's `warnings`, `check` and `du` on stderr, as a run that fails does
/// ([`tell`]).
fn location(store: &StoreArgs) -> Result<(Location, Vec<Warning>)> {
    match (&store.root, &store.config) {
        (Some(r), _) => Ok((Location::from_root(r)?, Vec::new())),
        (None, Some(c)) => config::location_from_config(c, &|k| std::env::var(k).ok()),
        (None, None) => Err(usage("give --root or --config".into())),
    }
}

/// Warnings on stderr, where no report carries them.
fn tell(warnings: &[Warning]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}

/// Threads when `-j` is not given. The work is mostly waiting on small reads and deletions:
/// with a cold page cache a 258k-blob store's gc scan took 29 s with one thread per core, 6.2 s
/// with 32, 5.7 s with 64 and 5.1 s with 128 (2 cores, virtio disk). Warm, 128 cost 0.35 s
/// more than 32 (1.87 s against 1.52 s): a nightly run is a cold one, so 128 (BENCHMARKS.md,
/// "Close to the floor").
const DEFAULT_JOBS: usize = 128;

fn threads(jobs: Option<usize>) -> Result<()> {
    let n = jobs.unwrap_or(DEFAULT_JOBS).max(1);
    rayon::ThreadPoolBuilder::new().num_threads(n).build_global().context("cannot start worker threads")
}

fn progress(quiet: bool, json: bool) -> Progress {
    if !quiet && !json && std::io::stderr().is_terminal() { Progress::stderr() } else { Progress::hidden() }
}

fn generate_store(g: &GenArgs) -> Result<ExitCode> {
    threads(g.jobs.jobs)?;
    let opts = GenOptions {
        repos: g.repos,
        tags: g.tags,
        layers: g.layers,
        shared: g.shared,
        multiarch_every: g.multiarch_every,
        signed_every: g.signed_every,
        untagged: g.untagged,
        seed: g.seed,
    };
    let progress = progress(g.output.quiet, g.output.json);
    let report = match Location::from_root(&g.root)?.empty_bucket()? {
        None => generate::generate(&g.root, &opts, progress)?,
        // Written on disk first, then uploaded in parallel.
        Some(store) => {
            let tmp = tempfile::tempdir().context("cannot make a temporary folder")?;
            let mut report = generate::generate(tmp.path(), &opts, progress)?;
            report.files = store.upload(&tmp.path().join("docker/registry/v2"), progress)?;
            report
        }
    };
    if g.output.json {
        print_json(&report)?;
    } else {
        println!(
            "wrote {} repositories, {} tags, {} manifests, {} blobs ({} files) under {}",
            report.repositories,
            report.tags,
            report.manifests,
            report.blobs,
            report.files,
            g.root.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `check`: exit 4 when some tag would fail a pull (with `--for-registry 3`, on registry 3.x);
/// 3 when a deletion of `--repair` failed.
fn check_store(c: &CheckArgs) -> Result<ExitCode> {
    threads(c.jobs.jobs)?;
    let opts = CheckOptions { verify_digests: c.verify_digests, repair: c.repair, grace: c.grace };
    let progress = progress(c.output.quiet, c.output.json);
    let (at, warnings) = location(&c.store)?;
    tell(&warnings);
    let mut report = at.check(opts, progress)?;
    if c.for_registry == 3 {
        report.as_served_by_v3();
    }
    if c.output.json {
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
        for f in &report.failed {
            eprintln!("error: cannot delete {}: {}", f.path, f.error);
        }
        print_json(&report)?;
    } else {
        print!("{}", report.text());
    }
    Ok(ExitCode::from(report.exit_code()))
}

fn retention(keep: usize, r: &FilterArgs, default_order: Order) -> Result<Retention> {
    let keep_tags = r
        .keep_tag
        .iter()
        .map(|p| Regex::new(p).map_err(|e| usage(format!("bad --keep-tag {p:?}: {e}"))))
        .collect::<Result<_>>()?;
    if r.order == Some(Order::Pull) && r.pulls.is_empty() {
        return Err(usage("--order pull needs the pull record: give --pulls FILE".into()));
    }
    Ok(Retention {
        keep,
        order: r.order.unwrap_or(default_order),
        keep_tags,
        repos: globs("--repo", &r.repo)?,
        exclude: globs("--exclude-repo", &r.exclude_repo)?,
        older_than: r.older_than,
        pulled_within: r.keep_pulled_within,
        pulls: regsweep::read_pulls(&r.pulls, r.count_referrers)?,
        in_use: None,
    })
}

/// The password of `--username`: `REGSWEEP_PASSWORD`, or the first line of stdin.
fn password(api: &ApiArgs) -> Result<String> {
    if api.password_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).context("cannot read the password from stdin")?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    std::env::var("REGSWEEP_PASSWORD")
        .map_err(|_| anyhow::anyhow!("--username needs a password: REGSWEEP_PASSWORD or --password-stdin"))
}

/// A client for the registry at `url`, with the credentials given or the Docker client's.
fn client(url: &str, api: &ApiArgs) -> Result<Client> {
    let credentials = match &api.username {
        Some(u) => Some(Credentials { username: u.clone(), password: password(api)? }),
        None if api.password_stdin => return Err(usage("--password-stdin needs --username".into())),
        None => match docker_config() {
            Some(path) => client::docker_config_credentials(&path, &client::base_url(url)?)?,
            None => None,
        },
    };
    let plain_with_credentials = credentials.is_some();
    let client = Client::new(&ClientOptions {
        url: url.to_string(),
        credentials,
        ca_cert: api.ca_cert.clone(),
        insecure: api.insecure,
        concurrency: api.concurrency,
    })?;
    if client.plain_remote() && plain_with_credentials {
        eprintln!(
            "warning: {} is plain HTTP to another machine: the credentials cross the network in clear",
            client.base
        );
    }
    Ok(client)
}

/// Where the Docker client keeps its config: `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
fn docker_config() -> Option<std::path::PathBuf> {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => Some(std::path::PathBuf::from(dir).join("config.json")),
        None => std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".docker/config.json")),
    }
}

/// `online`: exit 1 before any delete, 3 when some deletes failed, 5 when the container step failed.
fn online(o: &OnlineArgs) -> Result<Ended> {
    // Two readers of one stdin: the password would take the list's first line. (clap cannot
    // refuse a pair of values, only of options: said here, before either reads.)
    if o.api.password_stdin && o.in_use.keep_in_use.iter().any(|p| p.as_os_str() == "-") {
        return Err(usage("--password-stdin and --keep-in-use - both read stdin: give the list as a file".into()));
    }
    let client = client(&o.url, &o.api)?;
    // The redis cache answers before any delete.
    let cache = match &o.cache.redis_cache {
        Some(url) => {
            let cache = regsweep::blobcache::cache_of(None, Some(url), o.cache.redis_ca_cert.as_deref(), &|_| None)?;
            Some(regsweep::blobcache::Keeper::open(cache)?)
        }
        None => None,
    };
    // The URL's host is this registry's name too.
    let url_host = client.base.split_once("://").map_or(client.base.as_str(), |(_, h)| h);
    let in_use = in_use(&o.in_use, || Ok(Some(url_host.split('/').next().unwrap_or_default().to_string())))?;
    let opts = OnlineOptions {
        retention: Retention { in_use, ..retention(o.retention.keep, &o.retention.filters, Order::Created)? },
        dry_run: o.dry_run,
        concurrency: o.api.concurrency,
        gc_delete_untagged: o.gc_container.is_some() && o.gc_delete_untagged,
        allow_tagless: o.allow_tagless,
    };
    let mut report = regsweep::online::run(&client, &opts, progress(o.output.quiet, o.output.json))?;
    let step = o.gc_container.as_ref().map(|container| GcStep {
        container: container.clone(),
        engine: Engine::pick(o.engine, std::env::var("DOCKER_HOST").ok().as_deref()),
        config: o.gc_config.clone(),
        delete_untagged: o.gc_delete_untagged,
        restart: o.restart,
    });
    if let (Some(step), true) = (&step, o.dry_run) {
        // A dry run says now whether the real run's container step would work.
        match engine::probe(step) {
            Ok(found) => eprintln!("note: {found}"),
            Err(e) => report.errors.push(RunError::at(
                ErrorKind::ContainerStep,
                &step.container,
                format!("the container step would fail: {e:#}"),
            )),
        }
    }
    if let (Some(step), false) = (&step, o.dry_run) {
        match engine::collect(step, &client) {
            Ok(c) => report.collector = Some(c),
            Err(e) => report.errors.push(RunError::at(
                ErrorKind::ContainerStep,
                &step.container,
                format!("the container step failed: {e:#}"),
            )),
        }
    }
    // After the container step (or the deletes alone): what was deleted is not known blob by
    // blob, so every key of the registry's cache goes.
    if let Some(cache) = &cache {
        cache.clear_all(&mut report);
    }
    print_report(&report, o.output.json, true)?;
    Ok((report.exit_code(), Some(report)))
}

/// Prints a report: its JSON, or its text (with `verbose`, every repository listed).
fn print_report(report: &regsweep::core::report::Report, json: bool, verbose: bool) -> Result<()> {
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    for e in &report.errors {
        eprintln!("error: {e}");
    }
    if json {
        print_json(report)?;
    } else {
        // Streamed: the report of a large prune has an entry per tag.
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        write!(out, "{}", report.text(verbose))?;
        out.flush()?;
    }
    if json && report.restart_required {
        match report.cache.as_ref().map(|c| c.kind) {
            Some(regsweep::core::report::CacheKind::Redis) => eprintln!(
                "note: the registry's redis cache may still list what was deleted (cache.stale_keys): delete those \
                 keys, or FLUSHDB its database"
            ),
            _ => eprintln!("note: restart the registry that serves this store: its blob cache is stale"),
        }
    }
    Ok(())
}

fn run(cli: Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Gen(g) => generate_store(g),
        Command::Check(c) => check_store(c),
        Command::Du(d) => du(d),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "regsweep", &mut script);
            std::io::stdout().write_all(&script)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { out_dir } => manual(out_dir.as_deref()),
        Command::Listen(l) => listen(l),
        Command::Pulls { command: PullsCommand::Import(i) } => import_pulls(i),
        Command::Pulls { command: PullsCommand::Show(s) } => show_pulls(s),
        Command::Online(o) => monitored(&o.metrics, "online", &o.url, || online(o)),
        Command::Prune(p) => monitored(&p.collect.metrics, "prune", &store_named(&p.store), || {
            let in_use = in_use(&p.in_use, || config_host(&p.store))?;
            let r =
                Retention { in_use: in_use.clone(), ..retention(p.retention.keep, &p.retention.filters, Order::Push)? };
            offline(&p.store, &p.collect, Mode::Prune(Box::new(r)), p.delete_orphan_attachments, in_use)
        }),
        Command::Gc(g) => monitored(&g.collect.metrics, "gc", &store_named(&g.store), || {
            offline(&g.store, &g.collect, Mode::Gc, false, in_use(&g.in_use, || config_host(&g.store))?)
        }),
    }
}

/// `--keep-in-use`, read, with this registry's hosts: `--registry-host` and what `more` gives
/// (the config's `http.host`, online's URL), asked only with `--keep-in-use`.
fn in_use(args: &InUseArgs, more: impl FnOnce() -> Result<Option<String>>) -> Result<Option<Arc<InUse>>> {
    if args.keep_in_use.is_empty() {
        return Ok(None);
    }
    let hosts: Vec<String> = args.registry_host.iter().cloned().chain(more()?).collect();
    regsweep::read_in_use(&args.keep_in_use, &hosts).map(Some)
}

/// The registry's `http.host`, where `--config` names its config.
fn config_host(store: &StoreArgs) -> Result<Option<String>> {
    match &store.config {
        Some(c) => config::registry_host(c, &|k| std::env::var(k).ok()),
        None => Ok(None),
    }
}

/// The store as the operator named it: the metrics' `store` label.
fn store_named(store: &StoreArgs) -> String {
    match (&store.root, &store.config) {
        (Some(root), _) => root.display().to_string(),
        (None, Some(config)) => config.display().to_string(),
        (None, None) => String::new(),
    }
}

/// `prune` and `gc` on a store, with its registry's container stopped around the run when
/// asked: 0 done, 1 an error before any deletion, 3 some deletions failed, 5 the container could
/// not be stopped or started again, 130 interrupted.
fn offline(
    store: &StoreArgs,
    collect: &CollectArgs,
    mode: Mode,
    orphan_attachments: bool,
    in_use: Option<Arc<InUse>>,
) -> Result<Ended> {
    threads(collect.jobs.jobs)?;
    let progress = progress(collect.output.quiet, collect.output.json);
    let opts = Options {
        delete_untagged: collect.plan.delete_untagged,
        grace: collect.plan.grace,
        allow_tagless: collect.allow_tagless,
        upload_age: collect.plan.upload_age,
        now: SystemTime::now(),
        list_kept_tags: matches!(mode, Mode::Prune(_)),
        orphan_attachments,
        bytes_left: collect.metrics.metrics_file.is_some(),
        in_use,
        untagged_collected: false,
    };
    let (at, config_warnings) = location(store)?;
    // The blob cache answers before anything is done (a dry run: that is all it does there).
    let cache = regsweep::blobcache::cache_of(
        store.config.as_deref(),
        collect.cache.redis_cache.as_deref(),
        collect.cache.redis_ca_cert.as_deref(),
        &|k| std::env::var(k).ok(),
    )?;
    let cache = regsweep::blobcache::Keeper::open(cache)?;
    // Before the container stops: a signal then ends the run by itself (not the process), and
    // the container is started again.
    let c = &collect.container;
    if c.stop_container.is_some() {
        regsweep::core::interrupt::install_deferred();
    } else {
        regsweep::core::interrupt::install();
    }
    let engine = Engine::pick(c.engine, std::env::var("DOCKER_HOST").ok().as_deref());
    let mut stopped = None;
    if let Some(name) = &c.stop_container {
        let cannot_stop =
            |e: anyhow::Error| ContainerStep(format!("cannot stop container {name}: {e:#}; nothing was done"));
        match engine::running(&engine, name).map_err(cannot_stop)? {
            false => eprintln!("note: container {name} is not running: the run goes ahead and leaves it stopped"),
            true if collect.dry_run => eprintln!(
                "note: container {name} is running: a real run stops it and starts it again (through the {})",
                engine.describe()
            ),
            true => {
                engine::stop_or_start(&engine, name, "stop").map_err(cannot_stop)?;
                stopped = Some(name);
            }
        }
    }
    let result = regsweep::run_at_kept(&at, &mode, &opts, collect.dry_run, progress, &cache);
    let restarted = stopped.map_or(Ok(()), |name| {
        engine::stop_or_start(&engine, name, "start")?;
        match &c.url {
            Some(url) => engine::wait_until_answers(url, std::time::Duration::from_secs(60)),
            None => Ok(()),
        }
        .with_context(|| format!("container {name} was started again"))
    });
    let down = match (&restarted, stopped) {
        (Err(e), Some(name)) => Some((name, format!("the registry's container {name} may still be down: {e:#}"))),
        _ => None,
    };
    let result = result.map(|mut report| {
        report.warnings.splice(0..0, config_warnings.iter().cloned());
        report
    });
    if result.is_err() {
        tell(&config_warnings);
    }
    let report = match (result, down) {
        (Ok(mut report), None) => {
            // Started again: whatever cache it had in memory began empty.
            if stopped.is_some() && !collect.dry_run {
                if let Some(c) = report.cache.as_mut() {
                    c.restarted = true;
                }
                // A redis cache outlives the registry's restart: its stale keys stay stale.
                if report.cache.as_ref().is_none_or(|c| c.kind != regsweep::core::report::CacheKind::Redis) {
                    report.restart_required = false;
                }
            }
            report
        }
        (Ok(mut report), Some((name, message))) => {
            report.errors.push(RunError::at(ErrorKind::ContainerStep, name, message));
            report
        }
        (Err(e), Some((_, message))) => {
            eprintln!("error: {message}");
            return Err(ContainerStep(format!("{e:#}")).into());
        }
        (Err(e), None) => return Err(e),
    };
    print_report(&report, collect.output.json, collect.verbose)?;
    if report.interrupted {
        eprintln!(
            "interrupted: deleted {} tags, {} manifests, {} layer links, {} blobs before stopping; run again to finish",
            report.tags_deleted, report.manifests_deleted, report.layer_links_deleted, report.blobs_deleted
        );
    }
    Ok((report.exit_code(), Some(report)))
}

/// `du`: the table, or the JSON report.
fn du(d: &DuArgs) -> Result<ExitCode> {
    threads(d.jobs.jobs)?;
    let progress = progress(d.output.quiet, d.output.json);
    // The API has no push times: there the newest are by `created`, as in `online`.
    let order = if d.url.is_some() { Order::Created } else { Order::Push };
    let retention = d.keep.map(|keep| retention(keep, &d.filters, order)).transpose()?;
    // The record, read once and before the scan (with --keep, by the retention): the last pull
    // of each repository.
    let pulls = match &retention {
        Some(r) => r.pulls.clone(),
        None => regsweep::read_pulls(&d.filters.pulls, d.filters.count_referrers)?,
    };
    let (mut usage, warnings) = match &d.url {
        Some(url) => {
            if d.plan.delete_untagged {
                return Err(usage("--delete-untagged: the API shows no untagged manifests".into()));
            }
            regsweep::online::du::du(&client(url, &d.api)?, retention.as_ref(), d.api.concurrency, progress)?
        }
        None => {
            let mode = match retention {
                Some(r) => Mode::Prune(Box::new(r)),
                None => Mode::Gc,
            };
            let opts = Options {
                delete_untagged: d.plan.delete_untagged,
                grace: d.plan.grace,
                allow_tagless: false,
                upload_age: d.plan.upload_age,
                now: SystemTime::now(),
                list_kept_tags: false,
                orphan_attachments: false,
                bytes_left: false,
                in_use: None,
                untagged_collected: false,
            };
            let (at, mut warnings) = location(&d.store)?;
            let (usage, more) = regsweep::du_at(&at, &mode, &opts, progress).inspect_err(|_| tell(&warnings))?;
            warnings.extend(more);
            (usage, warnings)
        }
    };
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    if let Some(p) = pulls {
        usage.note_pulls(&p, SystemTime::now());
    }
    let by = match d.sort {
        SortArg::Unique => SortBy::Unique,
        SortArg::Referenced => SortBy::Referenced,
        SortArg::Reclaimable => SortBy::Reclaimable,
        SortArg::Name => SortBy::Name,
    };
    usage.sort(by, d.top);
    let area = match d.area {
        AreaArg::Referenced => Area::Referenced,
        AreaArg::Unique => Area::Unique,
    };
    if let Some(path) = &d.html {
        std::fs::write(path, usage.html(area)).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &d.svg {
        std::fs::write(path, usage.svg(area, 1000, 560)).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if d.output.json {
        print_json(&usage)?;
    } else {
        println!("{usage}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Which requests count as pulls.
fn pull_filter(c: &CountArgs) -> Result<regsweep::pulls::events::Filter> {
    let ignore_agents = if c.ignore_agent.is_empty() {
        None
    } else {
        Some(regex::RegexSet::new(&c.ignore_agent).map_err(|e| usage(format!("bad --ignore-agent: {e}")))?)
    };
    Ok(regsweep::pulls::events::Filter { count_head: c.count_head, ignore_agents })
}

/// `listen`: until SIGTERM or SIGINT (exit 0 then).
fn listen(l: &ListenArgs) -> Result<ExitCode> {
    let token = match (&l.token, &l.token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(f)) => {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("cannot read the token file {}", f.display()))?;
            Some(text.lines().next().unwrap_or("").trim().to_string())
        }
        (None, None) => None,
    };
    if token.as_deref() == Some("") {
        return Err(usage("the listener's token is empty".into()));
    }
    let opts = regsweep::pulls::listen::ListenOptions {
        pulls: l.pulls.clone(),
        addr: l.addr.clone(),
        token,
        filter: pull_filter(&l.count)?,
        max_body: l.max_body,
        sync_every_commit: l.sync == cli::SyncArg::Full,
        tls: l.tls_cert.clone().zip(l.tls_key.clone()),
    };
    regsweep::pulls::listen::listen(&opts)?;
    Ok(ExitCode::SUCCESS)
}

/// `pulls import`: the access log's manifest pulls into the record.
fn import_pulls(i: &ImportArgs) -> Result<ExitCode> {
    use regsweep::pulls::{log, record::Record};
    let resolver = i.root.as_deref().map(log::Resolver::new).transpose().map_err(|e| anyhow::anyhow!(e))?;
    let filter = pull_filter(&i.count)?;
    // The logs and the store first: a typo creates no record.
    let files = log::open_logs(&i.logs)?;
    let mut record = Record::open(&i.pulls, regsweep::pulls::nanos(SystemTime::now()))?;
    let done = log::import(&mut record, &i.logs, files, &filter, resolver.as_ref())?;
    eprintln!(
        "read {} lines: {} pulls into {}{}",
        done.lines,
        done.pulls,
        i.pulls.display(),
        match done.tags_without_digest {
            0 => String::new(),
            n => format!(" ({n} tag pulls without their digest: give --root, or the tag was pushed since)"),
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// `pulls show`: the record as a table or JSON.
fn show_pulls(s: &ShowArgs) -> Result<ExitCode> {
    let pulls = regsweep::pulls::record::Pulls::read(&s.pulls)?;
    let shown = regsweep::pulls::show::shown(&pulls, s.repo.as_deref());
    if s.json {
        print_json(&shown)?;
    } else {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        write!(out, "{shown}")?;
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The manual: the top page on stdout, or a page per command (regsweep-prune.1, ...) in `dir`.
fn manual(dir: Option<&std::path::Path>) -> Result<ExitCode> {
    let page = |cmd: clap::Command| -> Result<Vec<u8>> {
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut out)?;
        Ok(closing_sections(&String::from_utf8_lossy(&out)).into_bytes())
    };
    let Some(dir) = dir else {
        std::io::stdout().write_all(&page(Cli::command())?)?;
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cmd = Cli::command();
    let pages = cmd.get_subcommands().filter(|s| s.get_name() != "help").map(|sub| {
        let name = format!("regsweep-{}", sub.get_name());
        (name.clone(), sub.clone().name(name).bin_name(format!("regsweep {}", sub.get_name())))
    });
    for (name, cmd) in pages.chain([("regsweep".to_string(), cmd.clone())]) {
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, page(cmd)?).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Names the closing text clap_mangen heads EXTRA: the top page's is the exit status, then where
/// the documentation is (SEE ALSO); a command's, where its documentation is.
fn closing_sections(page: &str) -> String {
    let mut out = String::with_capacity(page.len() + 32);
    let mut lines = page.lines().peekable();
    while let Some(line) = lines.next() {
        let documentation = |l: &str| l.starts_with(cli::DOCUMENTATION_START);
        if line == ".SH EXTRA" {
            let docs_alone = lines.peek().is_some_and(|next| documentation(next));
            out.push_str(if docs_alone { ".SH \"SEE ALSO\"" } else { ".SH \"EXIT STATUS\"" });
        } else if documentation(line) && !out.ends_with("\"SEE ALSO\"\n") {
            out.push_str(".SH \"SEE ALSO\"\n");
            out.push_str(line);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// True when the command was asked for a JSON report.
fn json_output(cli: &Cli) -> bool {
    match &cli.command {
        Command::Gen(g) => g.output.json,
        Command::Check(c) => c.output.json,
        Command::Online(o) => o.output.json,
        Command::Prune(p) => p.collect.output.json,
        Command::Gc(g) => g.collect.output.json,
        Command::Du(d) => d.output.json,
        Command::Pulls { command: PullsCommand::Show(s) } => s.json,
        Command::Completions { .. } | Command::Man { .. } | Command::Listen(_) | Command::Pulls { .. } => false,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = json_output(&cli);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let code = exit_status(&e);
            if code != 0 {
                eprintln!("error: {e:#}");
                if json {
                    // A cron job reading the JSON learns of the failure from it too.
                    let kind = ErrorKind::of(&e);
                    println!("{}", serde_json::json!({"error": format!("{e:#}"), "kind": kind, "exit": code}));
                }
            }
            ExitCode::from(code)
        }
    }
}
