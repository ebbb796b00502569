//! `packaging/ttp-worker.1`, the man page the Debian package ships, is generated from the
//! command-line definition (`Cli::command()`) plus the hand-written sections below, and must
//! stay in sync with it. After changing a flag, its help or the version, regenerate it with
//! `make man` (which runs this test with `TTP_WORKER_WRITE_MANPAGE=1`) and commit the result.

use std::path::Path;

use clap_mangen::Man;

const MAN_PAGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/ttp-worker.1");

/// Sections clap knows nothing about, in roff.
const EXTRA: &str = r#".SH COMMANDS
Each command takes
.B \-\-help
for its own options.
.TP
\fBttp\-worker tag\fR [\fIengine options\fR] [\fB\-\-all\fR] [\fIINPUT\fR]
Tags envelopes read as JSON lines and prints one JSON tag per line: each tag UUID once, at its
first occurrence, as a store keeps it; with \fB\-\-all\fR, every tag the rules produce.
.TP
\fBttp\-worker check\-rules\fR [\fIengine options\fR]
Loads and compiles the rules and intel tables and lists every problem; exit status 1 if any.
.TP
\fBttp\-worker tags\fR [\fB\-\-db\fR \fIPATH\fR] [\fIfilters\fR]
Lists stored tags, newest first; read\-only, works while the daemon runs.
.TP
\fBttp\-worker stats\fR [\fB\-\-db\fR \fIPATH\fR]
Summarises the tag store.
.TP
\fBttp\-worker bridge\fR [\fB\-\-socket\fR \fIPATH\fR] [\fB\-\-queue\fR \fIN\fR] [\fB\-\-durable\fR] [\fINATS options\fR]
Relays DECNET\*(Aqs UNIX\-socket bus to NATS and back: DECNET\*(Aqs events to NATS for the
worker (into its JetStream stream with \fB\-\-durable\fR), the worker\*(Aqs ttp.tagged,
ttp.rule.fired.* and heartbeat to DECNET\*(Aqs bus. Waits for DECNET\*(Aqs socket and reconnects
on both sides; each direction\*(Aqs queue drops its oldest message when full, and counts it.
Beats on system.ttp\-bridge.health; stops on SIGINT or SIGTERM. The packaged unit is
\fBttp\-worker\-bridge.service\fR, skipped on a host without \fI/run/decnet\fR.
.PP
The engine options of \fBtag\fR and \fBcheck\-rules\fR are those of the daemon:
\fB\-\-rules\fR, \fB\-\-local\-rules\fR, \fB\-\-no\-builtin\-rules\fR,
\fB\-\-intel\-maps\fR and \fB\-\-anchors\fR.
.SH SECRETS
Passwords, tokens, credentials, nkey seeds and TLS keys are only ever given as paths of files,
read once at start, so they appear neither in the process environment nor on its command line.
A missing or unreadable file stops the worker with exit status 2 and one line naming the
setting and the path, never the content. Credentials in a \fB\-\-bus\-url\fR are accepted too,
but are never logged. At most one way of authenticating may be configured.
.SH SIGNALS
.TP
.B SIGHUP
Reloads the rules (\fBsystemctl reload ttp\-worker\fR); if the new rules cannot be loaded the
old ones stay.
.TP
.BR SIGTERM ", " SIGINT
Finishes the batch in hand and stops, exit status 0; a second one exits at once with status 1.
.SH EXIT STATUS
The same for every command.
.TP
.B 0
Done; the worker: stopped (a signal or a stop request on system.ttp.control).
.TP
.B 1
It ran and found problems or failed: \fBcheck\-rules\fR with a rule that did not load (or
none at all), \fBtag\fR or \fBpublish\fR with an input line that is not an envelope (the
others are done), the worker on a store or database that failed under it.
.TP
.B 2
Bad usage, in one line that names it: a bad flag, value or setting, a missing or unreadable
input or directory, a worker without any rule.
.SH FILES
.TP
.I /etc/default/ttp\-worker
Settings of the packaged service, as environment variables, every one documented.
.TP
.I /etc/ttp\-worker/rules.d/
Local rule files (*.yaml, *.yml), added to the built\-in rule pack by the packaged service
(\fBDECNET_TTP_LOCAL_RULES_DIR\fR).
.TP
.I /var/lib/ttp\-worker/ttp.db
The tag store of the packaged service (\fB$STATE_DIRECTORY/ttp.db\fR).
.TP
.I /usr/lib/systemd/system/ttp\-worker.service
The unit, also known as \fBdecnet\-ttp.service\fR to DECNET's dashboard.
.TP
.I /usr/lib/systemd/system/ttp\-worker\-bridge.service
The bridge\*(Aqs unit, reading the same \fI/etc/default/ttp\-worker\fR.
.SH ENVIRONMENT
Every setting can be given as an environment variable; its name is shown as [env: ...] with
each option above. A flag wins over its variable. Also read:
.TP
.B RUST_LOG
Log level, in env_logger syntax (default \fBinfo\fR for the worker and the bridge,
\fBwarn\fR for the other commands).
.TP
.B STATE_DIRECTORY
Set by systemd; the default tag store is \fI$STATE_DIRECTORY/ttp.db\fR.
.TP
.B JOURNAL_STREAM
Set by systemd; log lines then carry syslog priority prefixes for journald.
.SH SEE ALSO
.BR systemctl (1),
.BR journalctl (1),
.BR nats\-server (8)
"#;

fn render() -> String {
    let man = Man::new(ttp_worker::cli::command())
        .section("1")
        .manual("ttp-worker manual")
        .source(format!("ttp-worker {}", env!("CARGO_PKG_VERSION")));
    let mut out = Vec::new();
    man.render_title(&mut out).unwrap();
    man.render_name_section(&mut out).unwrap();
    man.render_synopsis_section(&mut out).unwrap();
    man.render_description_section(&mut out).unwrap();
    man.render_options_section(&mut out).unwrap();
    out.extend_from_slice(EXTRA.as_bytes());
    man.render_version_section(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn the_packaged_man_page_matches_the_command_line() {
    let fresh = render();
    if std::env::var_os("TTP_WORKER_WRITE_MANPAGE").is_some() {
        std::fs::write(MAN_PAGE, &fresh).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(Path::new(MAN_PAGE)).unwrap_or_default();
    assert!(
        committed == fresh,
        "packaging/ttp-worker.1 is out of date with the command line: run `make man` and commit it"
    );
}

#[test]
fn the_man_page_documents_every_setting_and_no_secret() {
    let page = render();
    for needle in [
        "bus\\-password\\-file",
        "DECNET_BUS_TOKEN_FILE",
        "DECNET_TTP_LOCAL_RULES_DIR",
        "decnet\\-ttp.service",
        "/etc/default/ttp\\-worker",
    ] {
        assert!(page.contains(needle), "man page lacks {needle}");
    }
}
