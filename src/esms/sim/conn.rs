//! Connections the simulator can cut without answering.
//!
//! axum hands a handler the request, never the socket, and a handler that
//! returns always produces a response. To model a server that dies after
//! reading a request, every accepted TCP stream is wrapped in a
//! [`SimStream`] sharing a [`KillSwitch`] with the request handlers (through
//! axum's connect-info, [`ConnTag`]). A handler that wants the connection
//! dropped flips the switch and returns; when hyper then tries to write the
//! response, the stream sets `SO_LINGER` to zero and fails the write, hyper
//! abandons the connection, and closing the socket sends a TCP RST. The
//! client has sent its whole request and receives no byte of an answer:
//! exactly "connection reset while waiting".

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Set once a handler decides its connection must die without an answer.
#[derive(Debug, Default)]
pub(super) struct KillSwitch(AtomicBool);

impl KillSwitch {
    fn is_killed(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// What a handler learns about its connection: the peer, and the switch.
#[derive(Clone, Debug)]
pub(super) struct ConnTag {
    pub(super) peer: SocketAddr,
    kill: Arc<KillSwitch>,
}

impl ConnTag {
    /// Make the connection fail at the next write instead of answering.
    pub(super) fn kill(&self) {
        self.kill.0.store(true, Ordering::Release);
    }
}

impl Connected<IncomingStream<'_, SimListener>> for ConnTag {
    fn connect_info(stream: IncomingStream<'_, SimListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// A TCP listener whose streams can be killed by handlers.
pub(super) struct SimListener(pub(super) TcpListener);

impl Listener for SimListener {
    type Io = SimStream;
    type Addr = ConnTag;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let kill = Arc::new(KillSwitch::default());
                    let tag = ConnTag {
                        peer,
                        kill: kill.clone(),
                    };
                    return (
                        SimStream {
                            inner: stream,
                            kill,
                        },
                        tag,
                    );
                }
                // A client that gave up before accept (reset, aborted)
                // costs nothing; anything else (e.g. out of file
                // descriptors) gets a pause so the loop does not spin.
                Err(err) => {
                    tracing::debug!(%err, "simulator accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(ConnTag {
            peer: self.0.local_addr()?,
            kill: Arc::default(),
        })
    }
}

/// A TCP stream that refuses to carry an answer once killed.
pub(super) struct SimStream {
    inner: TcpStream,
    kill: Arc<KillSwitch>,
}

impl SimStream {
    fn killed_error(&self) -> io::Error {
        // Zero linger makes the close that follows a RST rather than a FIN,
        // the harshest (and most realistic) form of a crashed server.
        let _ = self.inner.set_zero_linger();
        io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "connection dropped by the simulator",
        )
    }
}

impl AsyncRead for SimStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.kill.is_killed() {
            return Poll::Ready(Err(self.killed_error()));
        }
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.kill.is_killed() {
            return Poll::Ready(Err(self.killed_error()));
        }
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.kill.is_killed() {
            return Poll::Ready(Err(self.killed_error()));
        }
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.kill.is_killed() {
            return Poll::Ready(Err(self.killed_error()));
        }
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.kill.is_killed() {
            return Poll::Ready(Err(self.killed_error()));
        }
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
