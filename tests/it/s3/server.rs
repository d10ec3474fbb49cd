//! Real S3-compatible servers for the S3 state tests, started by the
//! project's own set-up: `tests/s3/setup.sh` creates a Python virtual
//! environment under `target/` (once, under a file lock shared by parallel
//! tests) with moto and ministack from PyPI; each test starts its own server
//! on a free loopback port, creates a bucket, and stops it when dropped.
//!
//! - [`S3Server::moto`]: behaviour (moto honours `If-None-Match: *` and
//!   `If-Match`, but its check and write are not atomic under concurrency);
//! - [`S3Server::ministack`]: one asyncio loop, check and write in one step:
//!   for races;
//! - [`HeaderStripper`]: a proxy in front of a server that drops the
//!   conditional headers, as a store that ignores them would.
//!
//! Without `python3` the tests skip with a message; with `CI=true` a server
//! that cannot start fails the test (CI must run them).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The key pair every test server accepts (and oapkg must never print).
pub const ACCESS_KEY: &str = "AKIAOAPKGTESTKEY7Q2Z";
pub const SECRET_KEY: &str = "oapkgTestSecretKey9f8e7d6c5b4a3s2d1Zq";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Moto,
    Ministack,
}

/// A request a recording server answered.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub url: String,
    /// The key the request was made with (empty when anonymous).
    pub access_key: String,
}

/// A running server with one bucket.
pub struct S3Server {
    child: Child,
    /// Where moto records every request, when asked to (see
    /// [`S3Server::moto_recording`]).
    recording: Option<tempfile::TempPath>,
    pub endpoint: String,
    pub bucket: String,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3Server {
    /// moto on a free port, or `None` (with a message) where Python is
    /// missing; panics on CI.
    pub fn moto() -> Option<S3Server> {
        S3Server::start(Kind::Moto, false)
    }

    /// [`S3Server::moto`] recording every request it answers (moto's
    /// recorder): see [`S3Server::requests`].
    pub fn moto_recording() -> Option<S3Server> {
        S3Server::start(Kind::Moto, true)
    }

    /// Every request answered so far, in order, when recording: method,
    /// path and the access key its `Authorization` header names.
    pub fn requests(&self) -> Vec<Request> {
        let path = self.recording.as_ref().expect("a recording server");
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines()
            .map(|line| {
                let entry: serde_json::Value =
                    serde_json::from_str(line).expect("a recorded request");
                let authorization = entry["headers"]
                    .as_object()
                    .and_then(|h| {
                        h.iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                    })
                    .and_then(|(_, v)| v.as_str())
                    .unwrap_or("");
                Request {
                    method: entry["method"].as_str().unwrap_or("").to_owned(),
                    url: entry["url"].as_str().unwrap_or("").to_owned(),
                    access_key: authorization
                        .split("Credential=")
                        .nth(1)
                        .and_then(|c| c.split('/').next())
                        .unwrap_or("")
                        .to_owned(),
                }
            })
            .collect()
    }

    /// ministack on a free port (see [`S3Server::moto`]).
    pub fn ministack() -> Option<S3Server> {
        S3Server::start(Kind::Ministack, false)
    }

    /// A fresh `s3://BUCKET/PREFIX` on this server.
    pub fn location(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }

    /// Points `cmd` at this server: endpoint, keys, region.
    pub fn configure(&self, cmd: &mut Command) {
        configure(cmd, &self.endpoint);
    }

    /// Creates another bucket, `name` (an example's own bucket name).
    pub fn create_bucket(&self, name: &str) {
        let status = http(self.port(), "PUT", &format!("/{name}"), &[], b"");
        assert!(
            status.is_some_and(|s| (200..300).contains(&s)),
            "create bucket {name}: {status:?}"
        );
    }

    /// The body of `GET PATH` naming the test key, unsigned (the test
    /// servers check no signature, but refuse an anonymous object read): an
    /// object (`/BUCKET/KEY`) or a listing (`/BUCKET?list-type=2`, every key
    /// with its ETag: two equal listings mean nothing was written).
    ///
    /// moto's reads and writes of one object are not atomic: a read while
    /// oapkg writes that object can be answered 500. Such an answer is
    /// asked again (a few times, briefly); any other is final.
    pub fn get(&self, path: &str) -> String {
        let authorization = unsigned_authorization();
        let mut tries = 0;
        loop {
            let answer = request(
                self.port(),
                "GET",
                path,
                &[("Authorization", &authorization)],
                b"",
            )
            .unwrap_or_else(|| panic!("GET {path}: no answer from {}", self.endpoint));
            let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
            let status = head.split_whitespace().nth(1);
            tries += 1;
            if status == Some("500") && tries < 5 {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            assert!(status == Some("200"), "GET {path}: {head}");
            return body.to_owned();
        }
    }

    /// Replaces the object at `PATH` (`/BUCKET/KEY`) with `body`, unsigned
    /// like [`get`](Self::get): a damaged or rewritten object.
    pub fn put(&self, path: &str, body: &[u8]) {
        let authorization = unsigned_authorization();
        let status = http(
            self.port(),
            "PUT",
            path,
            &[("Authorization", &authorization)],
            body,
        );
        assert!(
            status.is_some_and(|s| (200..300).contains(&s)),
            "PUT {path}: {status:?}"
        );
    }

    fn port(&self) -> u16 {
        self.endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port in the endpoint")
    }

    fn start(kind: Kind, record: bool) -> Option<S3Server> {
        let venv = venv()?;
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut cmd = match kind {
                Kind::Moto => {
                    let mut cmd = Command::new(venv.join("bin/moto_server"));
                    cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
                    cmd
                }
                Kind::Ministack => {
                    let mut cmd = Command::new(venv.join("bin/ministack"));
                    cmd.env("GATEWAY_PORT", port.to_string())
                        .env("BIND_HOST", "127.0.0.1")
                        .env("SERVICES", "s3")
                        .env("IOT_MTLS_ENABLED", "0");
                    cmd
                }
            };
            let recording = record.then(|| {
                let file = tempfile::NamedTempFile::new().expect("a recording file");
                cmd.env("MOTO_ENABLE_RECORDING", "1")
                    .env("MOTO_RECORDER_FILEPATH", file.path());
                file.into_temp_path()
            });
            let log = tempfile::NamedTempFile::new().expect("server log");
            let child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log.reopen().expect("server log"))
                .spawn();
            let child = match child {
                Ok(child) => child,
                Err(e) => {
                    last_error = format!("cannot start {kind:?}: {e}");
                    continue;
                }
            };
            let mut server = S3Server {
                child,
                recording,
                endpoint: format!("http://127.0.0.1:{port}"),
                bucket: "oapkg-test".to_owned(),
            };
            if server.wait_ready(port) {
                return Some(server);
            }
            let mut text = String::new();
            let _ = log.reopen().and_then(|mut f| f.read_to_string(&mut text));
            last_error = format!("{kind:?} on port {port} did not come up: {text}");
            let _ = server.child.kill();
        }
        unavailable(&last_error)
    }

    /// Waits until the server answers, then creates the bucket.
    fn wait_ready(&mut self, port: u16) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Some(status) = http(port, "PUT", &format!("/{}", self.bucket), &[], b"")
                && (200..300).contains(&status)
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

/// Sets the S3 variables oapkg reads.
pub fn configure(cmd: &mut Command, endpoint: &str) {
    cmd.env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_ENDPOINT_URL_S3")
        .env_remove("AWS_PROFILE");
}

/// An `Authorization` header naming the test key, with no valid signature:
/// the test servers check none, but refuse an anonymous object request.
fn unsigned_authorization() -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0"
    )
}

/// One plain HTTP request; its status, or `None` when nothing answered.
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Option<u16> {
    let answer = request(port, method, path, headers, body)?;
    answer.split_whitespace().nth(1)?.parse().ok()
}

/// One plain HTTP request; the whole answer, or `None` when nothing answered.
fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    Some(String::from_utf8_lossy(&answer).into_owned()).filter(|a| !a.is_empty())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The virtual environment, created by `tests/s3/setup.sh` under a file
/// lock (tests run in parallel); `None` where Python is missing.
fn venv() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let venv = target.join("s3-venv");
    if Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        return unavailable("python3 is not installed");
    }
    std::fs::create_dir_all(&target).expect("target dir");
    let lock = std::fs::File::create(target.join("s3-venv.lock")).expect("venv lock file");
    lock.lock().expect("lock the venv");
    let output = Command::new("sh")
        .arg(root.join("tests/s3/setup.sh"))
        .arg(&venv)
        .output()
        .expect("run tests/s3/setup.sh");
    drop(lock);
    if !output.status.success() {
        return unavailable(&format!(
            "tests/s3/setup.sh failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Some(venv)
}

/// Skips (prints why), or fails on CI where the S3 tests must run.
fn unavailable<T>(why: &str) -> Option<T> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("the S3 state tests must run on CI, but: {why}");
    }
    eprintln!("SKIPPED: S3 state test: {why}");
    None
}

/// A loopback proxy in front of an S3 server that drops `If-None-Match`
/// and `If-Match` from every request: a store that ignores conditional
/// writes. One request per connection (it answers `Connection: close`).
pub struct HeaderStripper {
    pub endpoint: String,
    listener_port: u16,
}

impl HeaderStripper {
    pub fn start(upstream: &str) -> HeaderStripper {
        let upstream_port: u16 = upstream
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("an upstream port");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                std::thread::spawn(move || {
                    let _ = forward(client, upstream_port);
                });
            }
        });
        HeaderStripper {
            endpoint: format!("http://127.0.0.1:{port}"),
            listener_port: port,
        }
    }

    pub fn port(&self) -> u16 {
        self.listener_port
    }
}

fn forward(mut client: TcpStream, upstream_port: u16) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    // The request head, then as much body as it announces.
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = client.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut body = buffer[head_end + 4..].to_vec();
    let mut length = 0usize;
    let mut kept = Vec::new();
    for line in head.split("\r\n") {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("if-none-match:")
            || lower.starts_with("if-match:")
            || lower.starts_with("connection:")
        {
            continue;
        }
        if let Some(value) = lower.strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
        kept.push(line.to_owned());
    }
    while body.len() < length {
        let n = client.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    kept.push("Connection: close".to_owned());
    let mut upstream = TcpStream::connect(("127.0.0.1", upstream_port))?;
    upstream.write_all(format!("{}\r\n\r\n", kept.join("\r\n")).as_bytes())?;
    upstream.write_all(&body)?;
    let mut answer = Vec::new();
    upstream.read_to_end(&mut answer)?;
    client.write_all(&answer)?;
    client.flush()
}
