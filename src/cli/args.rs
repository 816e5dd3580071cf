//! The client subcommands as clap sees them.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// Options every client command takes: where the daemon is, its key, and the output form.
#[derive(Debug, Clone, Default, Args)]
pub struct Common {
    /// Daemon URL, e.g. http://127.0.0.1:5000 [default: from PEON_LISTEN or the daemon's
    /// config, else http://127.0.0.1:5000].
    #[arg(long, env = "PEON_URL", global = true)]
    pub url: Option<String>,
    /// API key [default: API_KEY, the daemon's config file, or <data dir>/api.key].
    #[arg(long, env = "PEON_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
    /// Print the API's JSON instead of a table; no progress display.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Client commands, each run against a daemon.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// List the servers (a table; --json for the API's objects).
    Servers {
        #[command(flatten)]
        common: Common,
    },
    /// One server: get, stats, logs, console, command, start, stop, restart, kill, options,
    /// create, update, describe, destroy, eradicate, save.
    Server {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        cmd: ServerCmd,
    },
    /// The plans the daemon knows; `peon plans update` fetches them from the plan source.
    Plans {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        cmd: Option<PlansCmd>,
    },
    /// One plan: `peon plan show <game>` (or just `peon plan <game>`).
    #[command(args_conflicts_with_subcommands = true)]
    Plan {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        cmd: Option<PlanCmd>,
        /// Shorthand for `peon plan show <game>`.
        game: Option<String>,
    },
    /// Schedules: all of them, or `list|add|remove` for one server.
    Schedules {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        cmd: Option<ScheduleCmd>,
    },
    /// The daemon's version, its engine, and the state of every server's container.
    Status {
        #[command(flatten)]
        common: Common,
        /// Print nothing; the exit code says whether the daemon answers.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Check the daemon's /health (no key needed); exit 0 when it and its engine are up.
    Health {
        #[command(flatten)]
        common: Common,
    },
    /// Resource use (CPU, memory, uptime) of every running game server; with --prometheus,
    /// the daemon's Prometheus metrics (`GET /metrics`; --json: one object per sample).
    Metrics {
        #[command(flatten)]
        common: Common,
        /// Print the text of `GET /metrics` instead.
        #[arg(long)]
        prometheus: bool,
    },
    /// Disk used by each server's folder, backups, plans and the images in use.
    Capacity {
        #[command(flatten)]
        common: Common,
    },
    /// The job history, newest first: every create, start, stop, restart, kill, update,
    /// destroy, eradicate and backup, with who asked and how it ended.
    Jobs {
        #[command(flatten)]
        common: Common,
        /// Only this server's jobs.
        #[arg(long)]
        uid: Option<String>,
        /// queued, running, succeeded or failed.
        #[arg(long, value_parser = ["queued", "running", "succeeded", "failed"])]
        state: Option<String>,
        /// create, start, stop, restart, kill, update, destroy, eradicate or backup.
        #[arg(long)]
        kind: Option<String>,
        /// At most this many (the newest).
        #[arg(long, short = 'n')]
        limit: Option<usize>,
    },
    /// One job with its steps; --follow polls it until it ends (exit 1 when it failed).
    Job {
        #[command(flatten)]
        common: Common,
        id: String,
        /// Print each step as it starts and ends, until the job ends.
        #[arg(long, short)]
        follow: bool,
    },
    /// Stream the daemon's events (state changes, exits, restarts, actions) until interrupted.
    ///
    /// One line per event, `TIME  UID  TYPE  summary`, or one JSON object per line with --json.
    Events {
        #[command(flatten)]
        common: Common,
        /// Only the events of this server.
        #[arg(long)]
        uid: Option<String>,
    },
    /// Rollouts: update many servers to a target image in batches (admin to start or abort).
    Rollouts {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        cmd: Option<RolloutsCmd>,
    },
    /// Cluster mode: the swarm's nodes (state, availability, game slots, servers); `nodes set`
    /// drains, pauses or labels one.
    Nodes {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        cmd: Option<super::nodes::NodesCmd>,
    },
    /// API keys (admin): list them, create one (its secret is printed once), revoke one.
    Keys {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        cmd: Option<KeysCmd>,
    },
    /// The audit log of mutating requests, newest first (admin).
    Audit {
        #[command(flatten)]
        common: Common,
        /// Only entries at or after this time (RFC 3339 or Unix seconds).
        #[arg(long)]
        since: Option<String>,
        /// Only entries of this server.
        #[arg(long)]
        uid: Option<String>,
        /// Only entries of this key name.
        #[arg(long)]
        key: Option<String>,
        /// At most this many entries.
        #[arg(long, short = 'n', default_value_t = 50)]
        limit: usize,
    },
    /// Webhooks (admin): list, show one with its dead letters, add, remove, send a test.
    Hooks {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        cmd: Option<HooksCmd>,
    },
}

/// `peon hooks <cmd>`.
#[derive(Debug, Subcommand)]
pub enum HooksCmd {
    /// Every hook with its delivery counts (never a secret).
    List,
    /// One hook, its last error and its latest dead letters.
    Show { id: String },
    /// Add a hook.
    Add {
        /// 1-64 letters, digits, '-' or '_'.
        id: String,
        /// The receiver's http:// or https:// URL.
        #[arg(value_name = "URL")]
        receiver: String,
        /// An event to send (repeatable): started, stopped, crashed, restarted, gave_up,
        /// backup_done, backup_failed, ... or '*' for all.
        #[arg(long = "event", short = 'e', required = true)]
        events: Vec<String>,
        /// Signs each body: X-Peon-Signature: sha256=HMAC-SHA256(secret, body).
        #[arg(long)]
        secret: Option<String>,
        /// generic or discord [default: discord for Discord webhook URLs].
        #[arg(long, value_parser = ["generic", "discord"])]
        format: Option<String>,
    },
    /// Remove a hook made through the API, with its pending deliveries.
    Remove { id: String },
    /// Queue a test message to a hook (see `peon hooks show` for the outcome).
    Test { id: String },
}

/// `peon keys <cmd>`.
#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Every key with its role and scope (never a secret).
    List,
    /// Create a key; its secret is printed once and cannot be shown again.
    Create {
        /// 1-64 lowercase letters, digits, '_' or '-'.
        name: String,
        /// admin, operator or viewer.
        #[arg(long, short, value_parser = ["admin", "operator", "viewer"])]
        role: String,
        /// Limit the key to the servers of this game (repeatable).
        #[arg(long = "game", short = 'g')]
        games: Vec<String>,
        /// Limit the key to this server uid (repeatable).
        #[arg(long = "uid", short = 'u')]
        uids: Vec<String>,
    },
    /// Revoke a key; requests with it are refused from now on.
    Revoke { name: String },
}

/// `peon rollouts <action>`.
#[derive(Debug, Subcommand)]
pub enum RolloutsCmd {
    /// Every rollout, newest first.
    List,
    /// One rollout with its servers.
    Get { id: String },
    /// Start a rollout of a game's servers (or of --uid servers) to an image or a plan version.
    Start {
        /// The image the servers go to.
        #[arg(
            long,
            required_unless_present = "plan_version",
            conflicts_with = "plan_version"
        )]
        image: Option<String>,
        /// The version of their game's plan the servers go to (its files, settings and image).
        #[arg(long)]
        plan_version: Option<String>,
        /// Every server of this game.
        #[arg(long, short)]
        game: Option<String>,
        /// These servers (repeatable).
        #[arg(long = "uid", short = 'u')]
        uids: Vec<String>,
        /// Servers per batch, in percent [default: 25].
        #[arg(long)]
        batch_percent: Option<u32>,
        /// Servers of a batch that must get ready for the next to go, in percent [default: 100].
        #[arg(long)]
        success_percent: Option<u32>,
        /// How long a server has to get ready, e.g. 5m [default: 300 s].
        #[arg(long)]
        success_timeout: Option<String>,
        /// How long the whole rollout may take, e.g. 1h [default: 3600 s].
        #[arg(long)]
        duration_timeout: Option<String>,
        /// How long each updated server must stay up after getting ready.
        #[arg(long)]
        watch: Option<String>,
    },
    /// Abort a rollout: no new update begins; the servers it updated go back.
    Abort { id: String },
}

/// `peon server <action> <uid>`.
#[derive(Debug, Subcommand)]
pub enum ServerCmd {
    /// Show a server.
    Get { uid: String },
    /// Show a server's resource use.
    Stats { uid: String },
    /// Print the last lines of a server's console output.
    Logs {
        uid: String,
        /// How many lines.
        #[arg(long, short = 'n', default_value_t = 100)]
        lines: usize,
        /// Keep printing new output as it comes (the live console stream) until interrupted.
        #[arg(long, short)]
        follow: bool,
    },
    /// A live console: the game's output as it comes; each input line is sent as a command.
    ///
    /// Connects to the daemon's WebSocket console. Ctrl-D (end of input) or Ctrl-C leaves; so
    /// does the daemon closing the connection. With --json each frame is printed as its JSON.
    Console { uid: String },
    /// Send one command to the game's console (its standard input).
    Command {
        uid: String,
        /// The command (all remaining words, joined with spaces; put `--` before words that
        /// start with `-`).
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
    },
    /// Kill a server's game at once, without the stop grace period.
    Kill { uid: String },
    /// Show a server's restart policy and stop grace, or set them.
    Options {
        uid: String,
        /// Restart the game when it exits: never, on-crash or always.
        #[arg(long, value_parser = ["never", "on-crash", "always"])]
        restart_policy: Option<String>,
        /// How long a stop waits for the game to exit before killing it: 30s, 2m, ...
        #[arg(long, value_name = "DURATION")]
        stop_grace: Option<String>,
        /// Stop the game after this long with nobody playing (30m); `off` turns it off.
        #[arg(long, value_name = "DURATION")]
        idle_stop: Option<String>,
        /// No idle stop within this long of a start (default 10m).
        #[arg(long, value_name = "DURATION")]
        idle_grace: Option<String>,
        /// After an idle stop, hold the game's ports and start it on the first connection.
        #[arg(long, value_name = "BOOL")]
        wake_on_connect: Option<bool>,
        /// Take a backup before an idle stop.
        #[arg(long, value_name = "BOOL")]
        backup_before_idle_stop: Option<bool>,
        /// Cluster mode: rebuild the server on another node from its latest backup after its
        /// node was down this long (60s); `off` turns it off.
        #[arg(long, value_name = "DURATION")]
        failover_after: Option<String>,
    },
    /// Show a server's resource limits and disk quota, or change them (in place, no restart).
    /// `none` puts a limit back to the plan's.
    Limits {
        uid: String,
        /// Memory: a size like 512m or 2g.
        #[arg(long, value_name = "SIZE")]
        memory: Option<String>,
        /// CPU cores as a decimal, like 0.5 or 2.
        #[arg(long, value_name = "CORES")]
        cpus: Option<String>,
        /// How many processes and threads the game may have.
        #[arg(long, value_name = "N")]
        pids: Option<String>,
        /// Disk quota of the server directory: a size like 20g.
        #[arg(long, value_name = "SIZE")]
        disk: Option<String>,
    },
    /// Start a server, optionally with a stop timer.
    Start {
        uid: String,
        #[command(flatten)]
        timer: Timer,
        /// Do not wait: the daemon runs it as a background job; print the job's id.
        #[arg(long)]
        no_wait: bool,
    },
    /// Stop a server now, or at the time given by --interval/--epoch.
    Stop {
        uid: String,
        #[command(flatten)]
        timer: Timer,
        /// Do not wait: the daemon runs it as a background job; print the job's id.
        #[arg(long)]
        no_wait: bool,
    },
    /// Restart a server.
    Restart {
        uid: String,
        /// Do not wait: the daemon runs it as a background job; print the job's id.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        when_empty: WhenEmptyArgs,
    },
    /// Create a server from a plan: `<game>.<name>` (or `<game>` for a random name).
    Create {
        uid: String,
        /// A plan setting, KEY=VALUE (repeatable). `peon plan <game>` lists them.
        #[arg(long = "set", short = 's', value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// A description of the server.
        #[arg(long, short)]
        description: Option<String>,
        /// Create it stopped.
        #[arg(long)]
        start_later: bool,
        #[command(flatten)]
        timer: Timer,
    },
    /// Update a server's game or image; a new version that crashes or does not get ready is
    /// rolled back by itself.
    Update {
        uid: String,
        /// server, image, full, reinit, quick or validate.
        #[arg(long, short, default_value = "full")]
        mode: String,
        /// How long the new version must stay up after getting ready (e.g. 30s, 2m; 0 for no
        /// watch) [default: the daemon's update_watch].
        #[arg(long)]
        watch: Option<String>,
        /// Move the server to this version of its game's plan (its files, settings and image).
        #[arg(long)]
        plan_version: Option<String>,
        /// Do not wait: the daemon runs it as a background job; print the job's id.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        when_empty: WhenEmptyArgs,
    },
    /// Set a server's description.
    Describe {
        uid: String,
        /// The new description (all remaining words).
        #[arg(required = true, num_args = 1..)]
        description: Vec<String>,
    },
    /// Remove a server's container and network; its files stay (--eradicate removes them too).
    Destroy {
        uid: String,
        /// Also delete the server's files.
        #[arg(long)]
        eradicate: bool,
    },
    /// Remove a server with all its files (needs --yes).
    Eradicate {
        uid: String,
        /// Confirm that the server's files are to be deleted.
        #[arg(long, short)]
        yes: bool,
    },
    /// Back up the whole server folder (world data included) as a tar.zst; on a terminal the
    /// job's steps are shown as they go.
    Backup {
        uid: String,
        /// Do not wait: the daemon runs it as a background job; print the job's id.
        #[arg(long)]
        no_wait: bool,
    },
    /// List a server's backups.
    Backups { uid: String },
    /// Restore a backup: unpack, verify and sync, stop, safety backup, swap, start again.
    Restore {
        uid: String,
        /// The backup's id (`peon server backups <uid>` lists them).
        id: String,
        /// Do not wait: the daemon runs it as a background job; print the job's id.
        #[arg(long)]
        no_wait: bool,
    },
    /// Cluster mode: move a server to another node (stop, copy its folder between the
    /// nodes' agents with a checksum, re-pin, start again); on a terminal the job's steps are
    /// shown as they go.
    Move {
        uid: String,
        /// The target node's id or hostname (`peon nodes` lists them).
        node: String,
        /// Do not wait: the daemon runs it as a background job; print the job's id.
        #[arg(long)]
        no_wait: bool,
    },
    /// Delete one backup.
    BackupDelete { uid: String, id: String },
    /// Download one backup's tar.zst (its sha256 is checked).
    BackupDownload {
        uid: String,
        id: String,
        /// Where to write it [default: <uid>-<id>.tar.zst in the current directory].
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Set a server's backup retention and target (no flags: back to the defaults).
    BackupPolicy {
        uid: String,
        /// Keep the newest N backups.
        #[arg(long)]
        keep_last: Option<u32>,
        /// Keep the newest backup of each of the last N days.
        #[arg(long)]
        keep_daily: Option<u32>,
        /// Keep the newest backup of each of the last N weeks.
        #[arg(long)]
        keep_weekly: Option<u32>,
        /// Where new backups go: local, s3, or default (the daemon's).
        #[arg(long, value_parser = ["local", "s3", "default"])]
        target: Option<String>,
    },
    /// Back up a server (without data/) and download the zip.
    Save {
        uid: String,
        /// Where to write the zip (`-` for standard output) [default: the daemon's file name
        /// in the current directory].
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

/// PEON's timer options.
#[derive(Debug, Clone, Default, Args)]
pub struct Timer {
    /// Stop after this long: 30s, 10m, 2h, 1d, 1h30m.
    #[arg(long, short, conflicts_with = "epoch")]
    pub interval: Option<String>,
    /// Stop at this Unix time (10 digits).
    #[arg(long, short)]
    pub epoch: Option<String>,
}

/// `peon plans <cmd>`.
#[derive(Debug, Subcommand)]
pub enum PlansCmd {
    /// Fetch the plans from the daemon's plan source (`PUT /plans`).
    Update,
}

/// `peon plan <cmd>`.
#[derive(Debug, Subcommand)]
pub enum PlanCmd {
    /// Lint a plans repository (plans.json and <game>/plan.json folders) without a daemon: one
    /// line per problem with the plan and the field, then a summary. Exits 1 on errors.
    Check {
        /// The plans repository.
        dir: PathBuf,
    },
    /// The settings a server of this game takes (`GET /plan/<game>`).
    Show {
        game: String,
        /// The whole plan: ports, volumes, files and image.
        #[arg(long)]
        full: bool,
    },
}

/// `peon schedules <cmd>`.
#[derive(Debug, Subcommand)]
pub enum ScheduleCmd {
    /// The schedules of one server and their last results.
    List { uid: String },
    /// Add a schedule: --cron "0 0 18 * * Fri" or --at <Unix time | RFC 3339>.
    Add {
        uid: String,
        /// start, stop, restart or backup.
        #[arg(long, short)]
        action: String,
        /// A cron expression (seconds optional) in the daemon's time zone.
        #[arg(long, conflicts_with = "at", required_unless_present = "at")]
        cron: Option<String>,
        /// A one-off time.
        #[arg(long)]
        at: Option<String>,
    },
    /// Remove one schedule of a server.
    Remove { uid: String, id: String },
}

/// Maintenance that waits for an empty server.
#[derive(Debug, Clone, clap::Args)]
pub struct WhenEmptyArgs {
    /// Wait until nobody plays first, at most this long (then go anyway): 10m, 1h, ...
    #[arg(long, value_name = "DEADLINE")]
    pub when_empty: Option<String>,
    /// With --when-empty: first tell the players this (through the plan's say command).
    #[arg(long, value_name = "TEXT", requires = "when_empty")]
    pub announce: Option<String>,
}

impl WhenEmptyArgs {
    /// The body's `when_empty`, when asked for.
    pub fn body(&self) -> Option<serde_json::Value> {
        let deadline = self.when_empty.as_ref()?;
        let mut w = serde_json::json!({ "deadline": deadline });
        if let Some(a) = &self.announce {
            w["announce"] = serde_json::Value::String(a.clone());
        }
        Some(w)
    }
}
