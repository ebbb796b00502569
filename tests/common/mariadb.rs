//! A real MariaDB server for the tests, run by the harness itself: its own data directory
//! (made by `mariadb-install-db` in a temporary directory), a free loopback TCP port, its unix
//! socket in that directory. No system service, no configuration file is read
//! (`--no-defaults`). Debian package: `mariadb-server`.

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::free_port;

/// How long the server may take to start or stop (loaded CI machines are slow).
const STARTUP: Duration = Duration::from_secs(60);

fn mariadb_binary(name: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain([
        "/usr/sbin",
        "/usr/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
    ]) {
        let candidate = PathBuf::from(dir).join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "{name} is not installed; the MariaDB tests need a real server. Install it with \
         `apt-get install mariadb-server` (.ci/run does this for you); the tests run their own \
         server and need no system service."
    );
}

/// A running (or stopped, see [`MariaDb::stop`]) `mariadbd` child; killed and its data
/// directory removed when dropped.
pub struct MariaDb {
    child: Option<Child>,
    /// Its TCP port on 127.0.0.1 (kept across [`MariaDb::restart`]).
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: String,
    /// Server options after the harness's own (a later option wins).
    options: Vec<String>,
    dir: tempfile::TempDir,
}

impl MariaDb {
    /// Initialises a data directory, starts the server, waits until it answers, and creates
    /// database `decnet` with user `decnet` (all privileges on it, password required,
    /// connecting from 127.0.0.1 over TCP).
    pub fn start() -> MariaDb {
        MariaDb::start_with(&[])
    }

    /// [`MariaDb::start`] with server options of the caller's, such as a bigger buffer pool
    /// for a benchmark (kept across restarts).
    pub fn start_with(options: &[&str]) -> MariaDb {
        let dir = tempfile::Builder::new()
            .prefix("ttp-worker-mariadb-")
            .tempdir()
            .expect("cannot create a temporary directory for MariaDB");
        // One bootstrap at a time (tests of one binary run in parallel threads): concurrent
        // bootstraps on two cores were seen to fail in CI. A failure is retried twice, in a
        // fresh data directory.
        static INSTALLS: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = INSTALLS.lock().unwrap_or_else(|e| e.into_inner());
        let data = dir.path().join("data");
        let mut install = None;
        for _attempt in 0..3 {
            let _ = std::fs::remove_dir_all(&data);
            let output = Command::new(mariadb_binary("mariadb-install-db"))
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .args([
                    "--user=root",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                ])
                .stdin(Stdio::null())
                .output()
                .expect("cannot run mariadb-install-db");
            let done = output.status.success();
            install = Some(output);
            if done {
                break;
            }
        }
        let install = install.expect("at least one attempt");
        assert!(
            install.status.success(),
            "mariadb-install-db failed ({}):\n{}{}",
            install.status,
            String::from_utf8_lossy(&install.stdout),
            String::from_utf8_lossy(&install.stderr)
        );
        let mut server = MariaDb {
            child: None,
            port: free_port(),
            database: "decnet".to_owned(),
            user: "decnet".to_owned(),
            password: format!("ttp-worker-test-{}", std::process::id()),
            options: options.iter().map(|o| (*o).to_owned()).collect(),
            dir,
        };
        server.launch();
        server.sql(&format!(
            "CREATE DATABASE `{db}` CHARACTER SET utf8mb4;\
             CREATE USER '{user}'@'%' IDENTIFIED BY '{pw}';\
             GRANT ALL PRIVILEGES ON `{db}`.* TO '{user}'@'%';\
             FLUSH PRIVILEGES;",
            db = server.database,
            user = server.user,
            pw = server.password
        ));
        server
    }

    /// `mysql://decnet:PASSWORD@127.0.0.1:PORT/decnet`.
    pub fn url(&self) -> String {
        format!(
            "mysql://{}:{}@127.0.0.1:{}/{}",
            self.user, self.password, self.port, self.database
        )
    }

    /// The server's unix socket (root may connect through it without a password).
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("mariadb.sock")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn error_log(&self) -> PathBuf {
        self.dir.path().join("error.log")
    }

    fn launch(&mut self) {
        let child = Command::new(mariadb_binary("mariadbd"))
            .arg("--no-defaults") // must come first
            .arg(format!("--datadir={}", self.data_dir().display()))
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!(
                "--pid-file={}",
                self.dir.path().join("mariadbd.pid").display()
            ))
            .arg(format!("--log-error={}", self.error_log().display()))
            .arg(format!("--port={}", self.port))
            .args([
                "--bind-address=127.0.0.1",
                "--user=root", // the tests run as root; mariadbd refuses root without it
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=32M",
                "--max-connections=200",
            ])
            .args(&self.options)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start mariadbd");
        self.child = Some(child);
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!(
                    "mariadbd exited at startup ({status}):\n{}",
                    self.log_tail()
                );
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() && self.ping() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mariadbd did not come up on port {}:\n{}",
                self.port,
                self.log_tail()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn ping(&self) -> bool {
        Command::new(mariadb_binary("mariadb-admin"))
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .args(["--user=root", "--connect-timeout=2", "ping"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The end of the server's error log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.error_log()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Runs SQL as root (through the socket) and returns what the client printed
    /// (tab-separated, no column names). Fails the test on an error.
    pub fn sql(&self, sql: &str) -> String {
        let output = Command::new(mariadb_binary("mariadb"))
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .args(["--user=root", "--batch", "--skip-column-names", "-e", sql])
            .stdin(Stdio::null())
            .output()
            .expect("cannot run the mariadb client");
        assert!(
            output.status.success(),
            "SQL failed: {sql}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// [`MariaDb::sql`] against the test database.
    pub fn sql_db(&self, sql: &str) -> String {
        self.sql(&format!("USE `{}`; {sql}", self.database))
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Shuts the server down cleanly (SIGTERM, as `systemctl stop` would) and waits for it;
    /// the data directory stays, for [`MariaDb::restart`]. Escalates to SIGKILL after a
    /// minute.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + STARTUP;
        while matches!(child.try_wait(), Ok(None)) {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = child.wait();
        wait_port_free(self.port);
    }

    /// Kills the server the way a crash would (SIGKILL); InnoDB recovers on the next start.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            wait_port_free(self.port);
        }
    }

    /// Stops the server (if running) and starts it again on the same data directory and
    /// port.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Starts a stopped server again (same data directory and port).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "mariadbd is already running");
        self.launch();
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn wait_port_free(port: u16) {
    let deadline = Instant::now() + STARTUP;
    while TcpStream::connect(("127.0.0.1", port)).is_ok() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.kill();
        // `dir` (the TempDir) is removed after this, data directory included.
    }
}
