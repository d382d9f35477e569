//! Real `trellis` processes on real ports, and a minimal HTTP client for them.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The `trellis` binary, without the caller's database or port settings.
pub fn trellis() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trellis"));
    cmd.env_remove("DATABASE_URL").env_remove("TRELLIS_PORT");
    cmd
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("its address")
        .port()
}

/// A minimal HTTP/1.1 client: enough for tests, no extra dependency.
pub fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> Option<(u16, Value)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
        payload.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status: u16 = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or("");
    Some((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

/// A running `trellis serve`; dropping it kills the process (SIGKILL, no clean-up).
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `trellis serve DIR --port PORT [--database-url URL]` with extra environment.
pub fn serve_with(dir: &str, port: u16, db_url: Option<&str>, env: &[(&str, &str)]) -> Server {
    let mut cmd = trellis();
    cmd.args(["serve", dir, "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(url) = db_url {
        cmd.args(["--database-url", url]);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    Server(cmd.spawn().expect("spawn serve"))
}

pub fn serve(dir: &str, port: u16, db_url: Option<&str>) -> Server {
    serve_with(dir, port, db_url, &[])
}

/// Waits until `/_/health` answers, failing with the server's stderr if it exits.
pub fn wait_healthy(server: &mut Server, port: u16) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if let Some((200, body)) = http(port, "GET", "/_/health", None) {
            assert_eq!(body, json!({ "status": "ok" }));
            return;
        }
        if let Ok(Some(status)) = server.0.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = server.0.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("serve exited with {status}: {err}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("serve did not become healthy within 60 s");
}

/// A PostgreSQL cluster of a test's own, which the test may stop and start (the
/// database outage test). Built with the binaries `.ci/postgres.sh` found
/// (`TRELLIS_TEST_PG_BIN`), run as `TRELLIS_TEST_PG_USER` (initdb refuses root).
pub struct OwnPostgres {
    pub dir: tempfile::TempDir,
    pub port: u16,
    bin: std::path::PathBuf,
    user: String,
}

impl OwnPostgres {
    fn as_pg(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let me = std::process::Command::new("id")
            .arg("-un")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        if me == self.user {
            Command::new(path)
        } else {
            let mut c = Command::new("runuser");
            c.args(["-u", &self.user, "--"]).arg(path);
            c
        }
    }

    pub fn start_new() -> OwnPostgres {
        let bin = std::env::var("TRELLIS_TEST_PG_BIN").unwrap_or_else(|_| {
            panic!(
                "TRELLIS_TEST_PG_BIN is not set: the outage test needs PostgreSQL's binaries. \
                 Run the suite with `bash .ci/run`, or set it (e.g. /usr/lib/postgresql/15/bin) \
                 and TRELLIS_TEST_PG_USER (the user that runs them)."
            )
        });
        let user = std::env::var("TRELLIS_TEST_PG_USER").unwrap_or_else(|_| "postgres".into());
        let dir = tempfile::tempdir().expect("temp dir");
        let pg = OwnPostgres {
            port: free_port(),
            bin: bin.into(),
            user,
            dir,
        };
        let status = Command::new("chown")
            .args([&pg.user, pg.dir.path().to_str().unwrap()])
            .status()
            .expect("chown");
        assert!(
            status.success(),
            "chown the cluster's folder to {}",
            pg.user
        );
        let out = pg
            .as_pg("initdb")
            .args([
                "-D",
                pg.data().as_str(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
            ])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.start();
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        let out = self
            .as_pg("pg_ctl")
            .args([
                "-D",
                self.data().as_str(),
                "-l",
                log.as_str(),
                "-w",
                "-t",
                "60",
                "-o",
                opts.as_str(),
                "start",
            ])
            .output()
            .expect("run pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops at once, as a crash or a network cut would look to clients.
    pub fn stop(&self) {
        let out = self
            .as_pg("pg_ctl")
            .args(["-D", self.data().as_str(), "-m", "immediate", "-w", "stop"])
            .output()
            .expect("run pg_ctl stop");
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = self
            .as_pg("pg_ctl")
            .args(["-D", self.data().as_str(), "-m", "immediate", "stop"])
            .output();
    }
}
