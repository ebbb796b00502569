//! NATS authentication and TLS against a real `nats-server`: user/password, token, nkey, a
//! `.creds` file against a server in operator mode (operator, account and user JWTs made here
//! with `nkeys`, as `nsc` would), TLS with a throw-away CA (made with `openssl`), and client
//! certificates. The worker binary is run as the packaged service would run it, with every
//! secret in a file; no secret may reach its log (at debug level), its `--help` or its error
//! messages.

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

/// A core server configured by `config` (written to a file in `dir`).
fn server_with_config(dir: &Path, config: &str) -> NatsServer {
    let path = write(dir, "nats.conf", config);
    NatsServer::start_with(&["-c", &path])
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
    let server = server_with_config(
        dir.path(),
        &format!("authorization {{ user: ttp, password: \"{PASSWORD}\" }}\n"),
    );
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
    let server = server_with_config(
        dir.path(),
        &format!("authorization {{ token: \"{TOKEN}\" }}\n"),
    );
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
    let server = server_with_config(
        dir.path(),
        &format!(
            "authorization {{ users = [ {{ nkey: \"{}\" }} ] }}\n",
            pair.public_key()
        ),
    );
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

/// A signed NATS JWT (what `nsc` writes): `claims` with the standard members added, issued by
/// `issuer` about `subject`.
fn nats_jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    use base64::{URL_SAFE_NO_PAD, encode_config};
    let header = encode_config(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#, URL_SAFE_NO_PAD);
    let claims = serde_json::json!({
        "jti": format!("ttp-test-{subject}"),
        "iat": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let payload = encode_config(claims.to_string(), URL_SAFE_NO_PAD);
    let signing_input = format!("{header}.{payload}");
    let signature = issuer.sign(signing_input.as_bytes()).unwrap();
    format!(
        "{signing_input}.{}",
        encode_config(signature, URL_SAFE_NO_PAD)
    )
}

/// An account's JWT, without limits.
fn account_jwt(operator: &nkeys::KeyPair, account: &nkeys::KeyPair) -> String {
    let unlimited = serde_json::json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
        "wildcards": true, "conn": -1, "leaf": -1
    });
    nats_jwt(
        operator,
        &account.public_key(),
        "ttp-account",
        serde_json::json!({
            "limits": unlimited,
            "default_permissions": {"pub": {}, "sub": {}},
            "type": "account",
            "version": 2
        }),
    )
}

/// A `.creds` file for a new user of `account`: the user's JWT and nkey seed, in the layout
/// `nsc generate creds` writes.
fn creds_for(account: &nkeys::KeyPair) -> (String, String) {
    let user = nkeys::KeyPair::new_user();
    let jwt = nats_jwt(
        account,
        &user.public_key(),
        "ttp",
        serde_json::json!({
            "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
            "type": "user", "version": 2
        }),
    );
    let seed = user.seed().unwrap();
    let text = format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n"
    );
    (text, seed)
}

#[test]
fn a_creds_file_against_an_operator_mode_server() {
    let dir = tempfile::tempdir().unwrap();
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let operator_jwt = nats_jwt(
        &operator,
        &operator.public_key(),
        "ttp-test-operator",
        serde_json::json!({"type": "operator", "version": 2}),
    );
    let server = server_with_config(
        dir.path(),
        &format!(
            "operator: \"{operator_jwt}\"\nresolver: MEMORY\n\
             resolver_preload: {{\n  {}: \"{}\"\n}}\n",
            account.public_key(),
            account_jwt(&operator, &account)
        ),
    );

    let (creds, seed) = creds_for(&account);
    let creds_file = write(dir.path(), "ttp.creds", &creds);
    connects(
        &server,
        &server.url(),
        &[("DECNET_BUS_CREDS", &creds_file)],
        &[&seed],
    );

    // A user of an account the operator never signed is refused, and says so without its seed.
    let (stranger, stranger_seed) = creds_for(&nkeys::KeyPair::new_account());
    let stranger_file = write(dir.path(), "stranger.creds", &stranger);
    is_refused(
        &server.url(),
        &[("DECNET_BUS_CREDS", &stranger_file)],
        &[&stranger_seed],
    );
    // Without credentials an operator-mode server lets nobody in.
    is_refused(&server.url(), &[], &[]);
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
