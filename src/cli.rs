//! The command-line interface: clap structures, their help texts, and nothing else.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use regsweep::core::policy::Order;
use regsweep::online::engine::EngineKind;

/// The exit status, closing `--help` and the manual page (its EXIT STATUS section; each error's
/// kind is in docs/GUIDE.md, "Exit status").
macro_rules! exit_status {
    () => {
        "Exit status: 0 done; 1 an error before anything was deleted; 2 a usage error; 3 some deletions \
         failed, or the registry's redis blob cache could not be evicted (run again); 4 check found a tag \
         that would fail a pull; 5 the container step failed; 130 interrupted (run again to finish)."
    };
}

/// Where the rest is written: closes `-h`, `--help` and the manual page (its SEE ALSO section).
macro_rules! documentation {
    () => {
        "Documentation: README.md and docs/ in regsweep's source: docs/GUIDE.md (every option, reading \
         the plan, the JSON report, each exit status), docs/FAQ.md, docs/safety.md, docs/buckets.md, \
         docs/online.md, docs/pulls.md, docs/operations.md (cron, systemd, containers, metrics), \
         docs/check.md, docs/du.md."
    };
}

/// The first words of the documentation's paragraph, where the manual's SEE ALSO begins.
pub const DOCUMENTATION_START: &str = "Documentation: ";

/// Fast, safe retention and garbage collection for a CNCF Distribution registry's store: a folder
/// or a bucket (S3, Azure Blob Storage, Google Cloud Storage), or through its HTTP API.
#[derive(Debug, Parser)]
#[command(
    name = "regsweep",
    version,
    long_about = None,
    after_help = documentation!(),
    after_long_help = concat!(exit_status!(), "\n\n", documentation!())
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Keep the newest N tags of each repository (and what the filters protect), then collect.
    #[command(after_help = "Documentation: docs/GUIDE.md (every option, reading the plan, the JSON report, exit \
        status), docs/safety.md, docs/buckets.md, docs/operations.md (cron, containers, the blob cache, metrics).")]
    Prune(PruneArgs),
    /// Collect only: a parallel, safer `registry garbage-collect`.
    #[command(after_help = "Documentation: docs/GUIDE.md (what gc keeps, and where it differs from registry \
        garbage-collect), docs/safety.md, docs/buckets.md.")]
    Gc(GcArgs),
    /// Report what is wrong with a store and which tags would fail a pull.
    #[command(after_help = "Documentation: docs/check.md (each kind of problem, --repair).")]
    Check(CheckArgs),
    /// The retention of `prune` through the Registry HTTP API, then the registry's own
    /// collector in its container: for registries whose disk is out of reach.
    #[command(after_help = "Documentation: docs/online.md.")]
    Online(OnlineArgs),
    /// Where the space goes, per repository: referenced, unique, shared, and what a prune
    /// with the given policy would free.
    #[command(after_help = "Documentation: docs/du.md.")]
    Du(DuArgs),
    /// Receive the registry's notifications and record the last pull of each tag and manifest
    /// (for retention by last pull); runs until SIGTERM or SIGINT. SIGHUP reads the TLS
    /// certificate and key again.
    #[command(after_help = "Documentation: docs/pulls.md.")]
    Listen(ListenArgs),
    /// The pull record: fill it from the registry's access log, or show it.
    #[command(after_help = "Documentation: docs/pulls.md.")]
    Pulls {
        #[command(subcommand)]
        command: PullsCommand,
    },
    /// Write a realistic synthetic store (for benchmarks and tests), deterministic for a seed.
    #[command(after_help = "Documentation: docs/performance.md.")]
    Gen(GenArgs),
    /// Print the completion script for a shell (bash: into
    /// /usr/share/bash-completion/completions/regsweep or
    /// ~/.local/share/bash-completion/completions/regsweep).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff; `regsweep man | man -l -`), or write one per command.
    Man {
        /// Write regsweep.1 and regsweep-COMMAND.1 for each command into this folder.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PullsCommand {
    /// Read the registry's access log (its combined lines on stdout, or its "response
    /// completed" lines in the text or JSON formatter) into the record: a manifest GET answered
    /// 200 is a pull.
    Import(ImportArgs),
    /// Print the record: per repository the last pull of each tag and digest.
    Show(ShowArgs),
}

/// Which requests count as pulls (shared by `listen` and `pulls import`).
#[derive(Debug, Args)]
pub struct CountArgs {
    /// Also count HEAD requests (tools that only check that a tag exists send them, regsweep's
    /// online mode among them).
    #[arg(long)]
    pub count_head: bool,
    /// Do not count requests whose user agent matches this regular expression (unanchored;
    /// repeatable).
    #[arg(long, value_name = "REGEX")]
    pub ignore_agent: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ListenArgs {
    /// The record file (SQLite), created when absent.
    #[arg(long, value_name = "FILE")]
    pub pulls: PathBuf,
    /// Where to listen. Off loopback (`0.0.0.0:5050`, a pod's address) it refuses to start
    /// without --token or --token-file.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:5050")]
    pub addr: String,
    /// Serve HTTPS with this certificate (PEM: the server's certificate, then any intermediates);
    /// with --tls-key. SIGHUP reads both again: new connections get the new pair, and a pair that
    /// does not load leaves the old one serving (the log says why).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require `Authorization: Bearer TOKEN` (or the header's whole value equal to TOKEN), as
    /// the endpoint's `headers` in the registry's config send it; REGSWEEP_LISTEN_TOKEN too.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "REGSWEEP_LISTEN_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,
    /// The token, from the first line of this file.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    #[command(flatten)]
    pub count: CountArgs,
    /// A larger body is refused (413).
    #[arg(long, value_name = "BYTES", default_value_t = 10 << 20)]
    pub max_body: u64,
    /// When a stored batch is answered 200: `normal`, once written to the record's log (it
    /// survives a crash of the listener; the log is synced at checkpoints, so a crash of the
    /// machine may lose the last seconds); `full`, once synced to the disk (it survives a crash
    /// of the machine, at one fsync per post: the registry posts one event at a time, so that
    /// is the listener's pace).
    #[arg(long, value_enum, default_value = "normal")]
    pub sync: SyncArg,
}

/// `listen --sync`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncArg {
    Full,
    Normal,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The record file (SQLite), created when absent.
    #[arg(long, value_name = "FILE")]
    pub pulls: PathBuf,
    /// The registry's store on disk: a tag pull then also records the digest the tag pointed to,
    /// when its link is older than the pull (the log does not name it).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    #[command(flatten)]
    pub count: CountArgs,
    /// Log files.
    #[arg(required = true, value_name = "LOG")]
    pub logs: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A record file; several are read together (the latest pull of each).
    #[arg(long, value_name = "FILE", required = true)]
    pub pulls: Vec<PathBuf>,
    /// Only this repository.
    pub repo: Option<String>,
    /// One JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// What `du`'s treemap shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AreaArg {
    #[default]
    Referenced,
    Unique,
}

/// How `du` lists the repositories.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SortArg {
    #[default]
    Unique,
    Referenced,
    Reclaimable,
    Name,
}

#[derive(Debug, Args)]
pub struct DuArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Through the registry's API instead of its store (https://host[:port]): sizes from the
    /// manifests' descriptors; only what tags reach is seen (no uploads, no unreferenced blobs).
    #[arg(long, value_name = "URL", group = "StoreArgs")]
    pub url: Option<String>,
    #[command(flatten)]
    pub api: ApiArgs,
    /// The policy whose reclaimable bytes to show (prune's --keep and its filters); without it,
    /// what gc frees.
    #[arg(long, value_name = "N")]
    pub keep: Option<usize>,
    #[command(flatten)]
    pub filters: FilterArgs,
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Only the K largest repositories (by --sort).
    #[arg(long, value_name = "K")]
    pub top: Option<usize>,
    /// Largest first by unique, referenced or reclaimable bytes, or by name.
    #[arg(long, value_enum, default_value_t = SortArg::Unique)]
    pub sort: SortArg,
    /// Also write one self-contained page: the totals, a treemap of the repositories and a
    /// sortable table (it loads nothing from elsewhere: it opens on an air-gapped host); with
    /// --pulls, each repository's last pull in the table and the treemap's tooltips.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Also write the treemap alone, as SVG (with --pulls, the last pull in each tooltip).
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// What the treemap's areas show: the bytes each repository references, or its unique bytes.
    #[arg(long, value_enum, default_value_t = AreaArg::Referenced)]
    pub area: AreaArg,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub jobs: JobsArgs,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Also hash every blob and compare with its name.
    #[arg(long)]
    pub verify_digests: bool,
    /// Remove links that point to nothing (tags, revisions, history entries, layer links whose
    /// target is gone); never a blob. Takes the store's lock. What was written since the check
    /// began is left, with a warning to run again; a failed deletion exits 3.
    #[arg(long)]
    pub repair: bool,
    /// Empty folders younger than this may be a write under way: --repair leaves them.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = duration)]
    pub grace: Duration,
    /// Judge as this release line of the registry serves: with 3, a tag registry 3.x will not
    /// serve (Docker schema 1) breaks a pull (exit 4); with 2 (the default) it is only named.
    #[arg(long, value_name = "2|3", default_value_t = 2, value_parser = clap::value_parser!(u8).range(2..=3))]
    pub for_registry: u8,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub jobs: JobsArgs,
}

#[derive(Debug, Args)]
pub struct GenArgs {
    /// Where to write: the rootdirectory of the new store (docker/registry/v2 must not exist),
    /// or s3://BUCKET/ROOTDIRECTORY (written on disk, then uploaded).
    #[arg(long, value_name = "DIR|URL")]
    pub root: PathBuf,
    /// Repositories (every tenth nested inside the one before).
    #[arg(long, value_name = "R")]
    pub repos: usize,
    /// Tags per repository (plus `latest` and signature tags).
    #[arg(long, value_name = "T")]
    pub tags: usize,
    /// Layers per image.
    #[arg(long, value_name = "L", default_value_t = 3)]
    pub layers: usize,
    /// Of those, base layers shared across repositories.
    #[arg(long, value_name = "S", default_value_t = 2)]
    pub shared: usize,
    /// Every K-th tag is a two-platform index (0: none).
    #[arg(long, value_name = "K", default_value_t = 10)]
    pub multiarch_every: usize,
    /// Every K-th tag gets a signature tag and an SBOM referrer (0: none).
    #[arg(long, value_name = "K", default_value_t = 5)]
    pub signed_every: usize,
    /// Untagged manifests per repository (earlier pushes of its first tags).
    #[arg(long, value_name = "U", default_value_t = 2)]
    pub untagged: usize,
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub jobs: JobsArgs,
}

/// How a command reports.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print one JSON report on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}

/// How many threads a command on a store uses.
#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Worker threads: requests in flight to the disk (default 128).
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub jobs: Option<usize>,
}

/// Where the store is.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct StoreArgs {
    /// The registry's rootdirectory: the folder that holds docker/registry/v2, or a bucket:
    /// s3://BUCKET/ROOTDIRECTORY (with AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    /// AWS_REGION or AWS_PROFILE), azure://CONTAINER/ROOTDIRECTORY, gs://BUCKET/ROOTDIRECTORY
    /// (docs/buckets.md).
    #[arg(long, value_name = "DIR|URL")]
    pub root: Option<PathBuf>,
    /// The registry's config.yml: storage.filesystem.rootdirectory, or its storage.s3,
    /// storage.azure or storage.gcs section, read as registry 2.8 and 3.x read them (with their
    /// REGISTRY_STORAGE_* overrides). prune and gc also read its blob cache (storage.cache,
    /// redis) and evict from a redis cache what they delete.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// What the collection keeps (shared by `prune`, `gc` and `du`).
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Untagged manifests are not kept (children of kept indexes and referrers of kept
    /// manifests still are). prune and gc refuse it, before anything is done, on a store whose
    /// tags seem to live elsewhere (no repository has a tag, or untagged manifests were pushed
    /// after its newest tag, as under Harbor 2.15 and later): see --allow-tagless.
    #[arg(long)]
    pub delete_untagged: bool,
    /// Nothing younger than this is removed, so that a push racing the run is not broken.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = duration)]
    pub grace: Duration,
    /// Uploads started longer ago than this are removed (the registry's own rule: 168h).
    #[arg(long, value_name = "DURATION", default_value = "168h", value_parser = duration)]
    pub upload_age: Duration,
}

/// How the collection runs.
#[derive(Debug, Args)]
pub struct CollectArgs {
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Print exactly the plan a real run would carry out; write nothing at all.
    #[arg(long)]
    pub dry_run: bool,
    /// List every repository in the text report, also those where nothing is deleted (by
    /// default only those where something is deleted, failed or warned about; --json is the
    /// same either way).
    #[arg(long, short)]
    pub verbose: bool,
    /// Run --delete-untagged even on a store whose tags seem to live elsewhere: no repository
    /// has a tag, or at least two manifests no tag names were pushed after the store's newest
    /// tag (Harbor 2.15 and later keep tags in its database; --delete-untagged would delete
    /// every image pushed since, or every image). Say so only for a store whose tags are all in
    /// it (you deleted those tags yourself).
    #[arg(long, requires = "delete_untagged")]
    pub allow_tagless: bool,
    #[command(flatten)]
    pub container: ContainerArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    #[command(flatten)]
    pub jobs: JobsArgs,
}

/// The registry's redis blob cache, where --config does not say it.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// The registry's redis blob cache: redis://[USER][:PASSWORD@]HOST[:PORT][/DB] or rediss://
    /// (TLS). What the run deletes is evicted from it, stage by stage; it must answer before
    /// anything is deleted. Overrides what --config says.
    #[arg(long, value_name = "URL", env = "REGSWEEP_REDIS_CACHE", hide_env_values = true)]
    pub redis_cache: Option<String>,
    /// Trust the certificates in this PEM file for a rediss:// --redis-cache instead of the
    /// system's roots.
    #[arg(long, value_name = "FILE", requires = "redis_cache")]
    pub redis_ca_cert: Option<PathBuf>,
}

/// The registry's container, stopped for an offline run.
#[derive(Debug, Args)]
pub struct ContainerArgs {
    /// Stop this container (the registry serving the store) before the run and start it again
    /// after, even when the run fails or is interrupted; a dry run only checks that it runs.
    #[arg(long, value_name = "NAME")]
    pub stop_container: Option<String>,
    /// The engine of --stop-container. docker: the Docker Engine API on the unix socket of
    /// DOCKER_HOST (default /var/run/docker.sock; the docker CLI for a tcp:// or ssh:// host);
    /// podman: its CLI.
    #[arg(long = "engine", value_enum, default_value = "docker")]
    pub engine: EngineKind,
    /// Once the container is started again, wait until /v2/ at this URL answers (any HTTP
    /// status: 401 too), for at most a minute.
    #[arg(long, value_name = "URL", requires = "stop_container")]
    pub url: Option<String>,
}

/// Figures for monitoring.
#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Write the run's figures to this file in the Prometheus text format (atomically, for
    /// node_exporter's textfile collector): also when the run fails.
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
}

/// Which tags stay: shared by `prune` and `online`.
#[derive(Debug, Args)]
pub struct RetentionArgs {
    /// Tags to keep per repository, newest first by --order.
    #[arg(long, value_name = "N")]
    pub keep: usize,
    #[command(flatten)]
    pub filters: FilterArgs,
}

/// The retention options besides `--keep`.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// What "newest" means: push (last push of the tag; the default of prune), created (the
    /// image config; the default of online, which has no push times), semver, name, pull (last
    /// pull by --pulls; never pulled last, by push time among them).
    #[arg(long, value_enum)]
    pub order: Option<Order>,
    /// Also keep tags matching this regular expression (unanchored; repeatable).
    #[arg(long, value_name = "REGEX")]
    pub keep_tag: Vec<String>,
    /// Only prune repositories matching this glob (`*` stays within one path segment,
    /// `**` crosses them; repeatable).
    #[arg(long, value_name = "GLOB")]
    pub repo: Vec<String>,
    /// Never prune repositories matching this glob (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub exclude_repo: Vec<String>,
    /// Also keep tags younger than this: by push time, or by the image's created time with
    /// --order created (online: always by created).
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub older_than: Option<Duration>,
    /// Also keep tags pulled within this long, by --pulls (a pull of the tag, of its manifest by
    /// digest, or of an index's child). Tags the record cannot judge (it began later) are kept.
    #[arg(long, value_name = "DURATION", value_parser = duration, requires = "pulls")]
    pub keep_pulled_within: Option<Duration>,
    /// A pull record (`regsweep listen`, `pulls import`); several are read together (the
    /// latest pull of each).
    #[arg(long, value_name = "FILE")]
    pub pulls: Vec<PathBuf>,
    /// A pull of a referrer (a signature or SBOM: a manifest whose subject is the tag's, or an
    /// attachment tag `sha256-<hex>.sig` naming it) counts as a pull of the tag. Off by default:
    /// scanners and policy tools read every image's referrers on a schedule, which is no use of it.
    #[arg(long, requires = "pulls")]
    pub count_referrers: bool,
}

/// The images something runs, which nothing deletes (shared by `prune`, `gc` and `online`).
#[derive(Debug, Args)]
pub struct InUseArgs {
    /// Never delete what this file names (repeatable; - for stdin): the JSON or YAML of `kubectl
    /// get pods,deployments,statefulsets,daemonsets,cronjobs,jobs -A -o json`, a compose file, or
    /// one image reference a line. A tag named is kept; a digest named keeps its manifest (with
    /// an index's children and a subject's referrers), tagged or not. References to other
    /// registries are ignored; a reference without a host is Docker Hub's in Kubernetes and
    /// compose files, this registry's in a list. A reference naming nothing is a warning.
    #[arg(long, value_name = "FILE")]
    pub keep_in_use: Vec<PathBuf>,
    /// This registry's host as image references name it (host[:port]; repeatable): which
    /// --keep-in-use references are its. Also the --config's http.host, and online --url's host.
    #[arg(long, value_name = "HOST", requires = "keep_in_use")]
    pub registry_host: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub retention: RetentionArgs,
    #[command(flatten)]
    pub in_use: InUseArgs,
    /// Delete an attachment tag (sha256-<hex>.sig, .att, .sbom) whose subject is a manifest of
    /// no repository of the store, once older than --grace (cosign's COSIGN_REPOSITORY keeps
    /// signatures apart from their images; by default such tags are kept: the subject may live
    /// in another registry).
    #[arg(long)]
    pub delete_orphan_attachments: bool,
    #[command(flatten)]
    pub collect: CollectArgs,
}

#[derive(Debug, Args)]
#[command(mut_arg("redis_cache", |a| a.help(
    "The registry's redis blob cache: redis://[USER][:PASSWORD@]HOST[:PORT][/DB] or rediss:// (TLS). \
     It must answer before anything is deleted; after the deletes and the container step, every key \
     the registry's cache wrote is removed (what its collector deleted is not known one by one): no \
     restart needed",
)))]
pub struct OnlineArgs {
    /// The registry: https://host[:port]; http:// when named, or for a loopback host given
    /// without a scheme.
    #[arg(long, value_name = "URL", env = "REGSWEEP_URL")]
    pub url: String,
    #[command(flatten)]
    pub retention: RetentionArgs,
    #[command(flatten)]
    pub in_use: InUseArgs,
    /// Print exactly the plan a real run would carry out; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    /// After the deletes, run `registry garbage-collect` in this container, through --engine.
    #[arg(long, value_name = "NAME")]
    pub gc_container: Option<String>,
    /// docker: the Docker Engine API on the unix socket of DOCKER_HOST (default
    /// /var/run/docker.sock; the docker CLI for a tcp:// or ssh:// host); podman: its CLI.
    #[arg(long, value_enum, default_value = "docker")]
    pub engine: EngineKind,
    /// The registry's config inside the container; by default the one its command serves
    /// (registry:3: /etc/distribution/config.yml; registry:2: /etc/docker/registry/config.yml).
    #[arg(long, value_name = "PATH")]
    pub gc_config: Option<String>,
    /// Pass --delete-untagged to the collector (distribution 2.8's breaks multi-arch images;
    /// regsweep already deletes the children and referrers of what it deletes).
    #[arg(long)]
    pub gc_delete_untagged: bool,
    /// Pass --gc-delete-untagged even when no repository the API lists has a tag (refused
    /// otherwise, before any delete: the collector would delete every manifest, as on a Harbor
    /// 2.15+ store, whose tags are in its database). The API shows no untagged manifest, so
    /// online mode cannot see the other sign prune and gc refuse (images pushed by digest after
    /// the store's newest tag): run `regsweep gc --delete-untagged --dry-run` on the store.
    #[arg(long, requires = "gc_delete_untagged")]
    pub allow_tagless: bool,
    /// After the collector, stop and start the container (its blob cache is stale) and wait
    /// until /v2/ answers.
    #[arg(long)]
    pub restart: bool,
    /// The registry's redis blob cache (--redis-cache): after the deletes and the container
    /// step, every key the registry's cache wrote is removed (what its collector deleted is not
    /// known one by one); no restart needed. (A flattened field's comment is no help text: the
    /// struct's `mut_arg` says it.)
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// How to talk to a registry's API (shared by `online` and `du --url`).
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Requests in flight.
    #[arg(long, value_name = "K", default_value_t = 8)]
    pub concurrency: usize,
    /// Basic or token-server user; the password comes from REGSWEEP_PASSWORD or
    /// --password-stdin, never from the command line. Without it, ~/.docker/config.json.
    #[arg(long, value_name = "USER")]
    pub username: Option<String>,
    /// Read the password from the first line of stdin.
    #[arg(long)]
    pub password_stdin: bool,
    /// Trust the certificates in this PEM file instead of the system's roots.
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Do not verify the registry's certificate.
    #[arg(long)]
    pub insecure: bool,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// With --delete-untagged: manifests something runs stay (without it gc keeps every one).
    #[command(flatten)]
    pub in_use: InUseArgs,
    #[command(flatten)]
    pub collect: CollectArgs,
}

/// Parses `0s`, `90s`, `1h`, `7d`, `1h30m`.
fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 0s, 90s, 1h, 7d)"))
}
