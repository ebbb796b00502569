//! NATS authentication and TLS against a real `nats-server`: user/password, token, nkey, TLS
//! with a throw-away CA (made with `openssl`), and client certificates. The worker binary is
//! run as the packaged service would run it, with every secret in a file; no secret may reach
//! its log (at debug level), its `--help` or its error messages.
//!
//! Not tested against a server: `.creds` files, which need an operator-mode server set up with
//! `nsc`; the file is parsed and its JWT sent (checked against a server without auth).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{NatsServer, Worker};

const PASSWORD: &str = "pw-s3cr3t-4f1c";
const TOKEN: &str = "tok-s3cr3t-9b2e";

fn write(dir: &Path, name: &str, content: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Starts the worker against `server_url` with `env`, waits until it is connected and the
/// server lists a client named `ttp`, then checks that its log holds none of `secrets`.
fn connects(server: &NatsServer, server_url: &str, env: &[(&str, &str)], secrets: &[&str]) {
    let mut full = vec![("DECNET_BUS_URL", server_url)];
    full.extend_from_slice(env);
    let mut worker = Worker::start(&[], &full);
    worker.wait_for_log("connected to NATS");
    assert_eq!(server.connections_named("ttp").len(), 1);
    worker.signal("TERM");
    assert!(worker.wait_exit(Duration::from_secs(5)).is_some());
    let log = worker.log_text();
    for secret in secrets {
        assert!(!log.contains(secret), "the log shows a secret:\n{log}");
    }
}

/// Starts the worker with settings the server refuses: it must stay up, poll-only, and log
/// why without the secret.
fn is_refused(url: &str, env: &[(&str, &str)], secrets: &[&str]) {
    let mut full = vec![("DECNET_BUS_URL", url), ("DECNET_TTP_POLL_INTERVAL", "0.2")];
    full.extend_from_slice(env);
    let mut worker = Worker::start(&[], &full);
    worker.wait_for_log("running poll-only");
    assert!(worker.is_running());
    worker.signal("TERM");
    assert!(worker.wait_exit(Duration::from_secs(5)).is_some());
    let log = worker.log_text();
    for secret in secrets {
        assert!(!log.contains(secret), "the log shows a secret:\n{log}");
    }
}

#[test]
fn user_and_password_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write(
        dir.path(),
        "auth.conf",
        &format!("authorization {{ user: ttp, password: \"{PASSWORD}\" }}\n"),
    );
    let server = NatsServer::start_with(&["-c", &conf]);
    let password = write(dir.path(), "password", &format!("{PASSWORD}\n"));
    connects(
        &server,
        &server.url(),
        &[
            ("DECNET_BUS_USER", "ttp"),
            ("DECNET_BUS_PASSWORD_FILE", &password),
        ],
        &[PASSWORD],
    );
    let wrong = write(dir.path(), "wrong", "wrong-s3cr3t\n");
    is_refused(
        &server.url(),
        &[
            ("DECNET_BUS_USER", "ttp"),
            ("DECNET_BUS_PASSWORD_FILE", &wrong),
        ],
        &["wrong-s3cr3t"],
    );
    // Without credentials the server refuses too: the test above is not vacuous.
    is_refused(&server.url(), &[], &[]);
}

#[test]
fn token_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write(
        dir.path(),
        "auth.conf",
        &format!("authorization {{ token: \"{TOKEN}\" }}\n"),
    );
    let server = NatsServer::start_with(&["-c", &conf]);
    let token = write(dir.path(), "token", &format!("{TOKEN}\n"));
    connects(
        &server,
        &server.url(),
        &[("DECNET_BUS_TOKEN_FILE", &token)],
        &[TOKEN],
    );
    is_refused(&server.url(), &[], &[]);
}

#[test]
fn nkey_seed_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let pair = nkeys::KeyPair::new_user();
    let seed = pair.seed().unwrap();
    let conf = write(
        dir.path(),
        "auth.conf",
        &format!(
            "authorization {{ users = [ {{ nkey: \"{}\" }} ] }}\n",
            pair.public_key()
        ),
    );
    let server = NatsServer::start_with(&["-c", &conf]);
    let seed_file = write(dir.path(), "seed", &format!("{seed}\n"));
    connects(
        &server,
        &server.url(),
        &[("DECNET_BUS_NKEY_SEED_FILE", &seed_file)],
        &[&seed],
    );
    let other = nkeys::KeyPair::new_user().seed().unwrap();
    let other_file = write(dir.path(), "other", &other);
    is_refused(
        &server.url(),
        &[("DECNET_BUS_NKEY_SEED_FILE", &other_file)],
        &[&other],
    );
}

#[test]
fn a_creds_file_is_parsed_and_sent() {
    let dir = tempfile::tempdir().unwrap();
    let seed = nkeys::KeyPair::new_user().seed().unwrap();
    let creds = write(
        dir.path(),
        "ttp.creds",
        &format!(
            "-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.c2ln\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
        ),
    );
    // A server without authentication ignores the JWT; the point is that the worker reads the
    // file, connects with it and never shows the seed.
    let server = NatsServer::start();
    connects(
        &server,
        &server.url(),
        &[("DECNET_BUS_CREDS", &creds)],
        &[&seed],
    );
}

/// A throw-away CA, a server certificate for 127.0.0.1 and a client certificate, by openssl.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Option<Pki> {
        if Command::new("openssl").arg("version").output().is_err() {
            eprintln!("openssl is not installed: TLS tests skipped");
            return None;
        }
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
        };
        let ext = write(
            pki.dir.path(),
            "ext.cnf",
            "[server]\nbasicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n\
             [client]\nbasicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        );
        pki.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=ttp-worker test CA",
        ]);
        for (name, section) in [("server", "server"), ("client", "client")] {
            pki.openssl(&[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ]);
            pki.openssl(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &format!("{name}.pem"),
                "-extfile",
                &ext,
                "-extensions",
                section,
            ]);
        }
        Some(pki)
    }

    fn openssl(&self, args: &[&str]) {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }
}

#[test]
fn tls_with_a_private_ca() {
    let Some(pki) = Pki::new() else { return };
    let server = NatsServer::start_with(&[
        "--tls",
        "--tlscert",
        &pki.path("server.pem"),
        "--tlskey",
        &pki.path("server.key"),
    ]);
    let url = format!("tls://127.0.0.1:{}", server.port);
    connects(
        &server,
        &url,
        &[("DECNET_BUS_TLS_CA", &pki.path("ca.pem"))],
        &[],
    );
    // Without the CA the system roots do not trust the server.
    is_refused(&url, &[], &[]);
}

#[test]
fn tls_with_a_client_certificate() {
    let Some(pki) = Pki::new() else { return };
    let server = NatsServer::start_with(&[
        "--tlsverify",
        "--tlscert",
        &pki.path("server.pem"),
        "--tlskey",
        &pki.path("server.key"),
        "--tlscacert",
        &pki.path("ca.pem"),
    ]);
    // A nats:// URL: the TLS settings alone make TLS required.
    let key = std::fs::read_to_string(pki.path("client.key")).unwrap();
    let key_body = key.lines().nth(1).unwrap().to_owned();
    connects(
        &server,
        &server.url(),
        &[
            ("DECNET_BUS_TLS_CA", &pki.path("ca.pem")),
            ("DECNET_BUS_TLS_CERT", &pki.path("client.pem")),
            ("DECNET_BUS_TLS_KEY", &pki.path("client.key")),
        ],
        &[&key_body],
    );
    is_refused(
        &server.url(),
        &[("DECNET_BUS_TLS_CA", &pki.path("ca.pem"))],
        &[],
    );
}

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ttp-worker"))
        .args(args)
        .env_clear()
        .env("HOME", "/nonexistent")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bad_secret_files_exit_2_with_one_line_naming_setting_and_path_only() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing").to_str().unwrap().to_owned();
    let not_creds = write(dir.path(), "x.creds", &format!("{TOKEN}\n"));
    let not_seed = write(dir.path(), "seed", &format!("{TOKEN}\n"));
    let token = write(dir.path(), "token", TOKEN);
    let unreadable = write(dir.path(), "unreadable", TOKEN);
    std::fs::set_permissions(
        &unreadable,
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: [Case; 6] = [
        (
            &["--bus-token-file", &missing],
            &[],
            "--bus-token-file",
            &missing,
        ),
        (
            &[],
            &[("DECNET_BUS_CREDS", &not_creds)],
            "DECNET_BUS_CREDS",
            &not_creds,
        ),
        (
            &["--bus-nkey-seed-file", &not_seed],
            &[],
            "--bus-nkey-seed-file",
            &not_seed,
        ),
        (
            &["--bus-password-file", &token],
            &[],
            "--bus-password-file",
            &token,
        ),
        (&["--tls-ca", &token], &[], "--tls-ca", &token),
        (
            &[
                "--bus-url",
                &format!("nats://u:{TOKEN}@127.0.0.1:1"),
                "--bus-token-file",
                &token,
            ],
            &[],
            "--bus-token-file",
            "one way",
        ),
    ];
    for (args, env, setting, path) in cases {
        let (status, _, stderr) = run(args, env);
        assert_eq!(status, 2, "{args:?} {env:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(setting) && stderr.contains(path),
            "{stderr}"
        );
        assert!(!stderr.contains(TOKEN), "{stderr}");
    }
    // Root reads anything; the permission case only means something for other users.
    if std::fs::read(&unreadable).is_err() {
        let (status, _, stderr) = run(&["--bus-token-file", &unreadable], &[]);
        assert_eq!(status, 2);
        assert!(stderr.contains("permission denied"), "{stderr}");
    }
}

#[test]
fn help_lists_the_settings_and_shows_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let token = write(dir.path(), "token", TOKEN);
    let (status, help, _) = run(&["--help"], &[("DECNET_BUS_TOKEN_FILE", &token)]);
    assert_eq!(status, 0);
    for flag in [
        "--bus-user",
        "--bus-password-file",
        "--bus-token-file",
        "--bus-creds",
        "--bus-nkey-seed-file",
        "--tls-ca",
        "--tls-cert",
        "--tls-key",
        "--local-rules",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    assert!(!help.contains(TOKEN));
    assert!(
        !PathBuf::from(&token)
            .to_str()
            .is_some_and(|t| help.contains(t))
    );
}
