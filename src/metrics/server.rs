//! The `--listen` HTTP server: `GET /metrics` and `GET /healthz`, nothing
//! else. A minimal HTTP/1.1 server on tokio (one request per connection,
//! then closed): a scraper and a health probe need no more, and it keeps
//! a web framework out of the binary. A request that is not read within
//! a few seconds, or whose head is over 8 KiB, is dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use super::Metrics;

const HEAD_LIMIT: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The `--listen` address, checked before anything else starts.
pub fn parse(addr: &str) -> anyhow::Result<SocketAddr> {
    addr.parse().map_err(|_| {
        anyhow::anyhow!("--listen {addr:?}: expected an IP address and a port, e.g. 127.0.0.1:9184")
    })
}

/// Binds `parsed`; the error names the address and what to do.
pub async fn bind(parsed: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(parsed).await.map_err(|error| {
        let why = match error.kind() {
            std::io::ErrorKind::AddrInUse => "the address is already in use (another oapkg watch, or another service?); choose another port".to_owned(),
            std::io::ErrorKind::AddrNotAvailable => format!("{error}: it is not an address of this machine; use 127.0.0.1 or one of this host's addresses"),
            _ => error.to_string(),
        };
        anyhow::anyhow!("cannot listen on {parsed} (--listen): {why}")
    })
}

/// Answers requests on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors and the like: try again shortly.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(READ_TIMEOUT, answer(stream, &metrics)).await;
        });
    }
}

async fn answer(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > HEAD_LIMIT {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "request head too large\n",
            )
            .await;
        }
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => {
            respond(
                &mut stream,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                &metrics.render(),
            )
            .await
        }
        ("GET", "/healthz") => {
            let (healthy, why) = metrics.health();
            let status = if healthy {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            respond(
                &mut stream,
                status,
                "text/plain; charset=utf-8",
                &format!("{why}\n"),
            )
            .await
        }
        ("GET", _) => {
            respond(
                &mut stream,
                "404 Not Found",
                "text/plain",
                "GET /metrics or /healthz\n",
            )
            .await
        }
        _ => {
            respond(
                &mut stream,
                "405 Method Not Allowed",
                "text/plain",
                "GET only\n",
            )
            .await
        }
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    kind: &str,
    body: &str,
) -> std::io::Result<()> {
    let message = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(message.as_bytes()).await?;
    stream.shutdown().await
}
