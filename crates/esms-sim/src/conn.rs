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
//!
//! The listener can also be taken down and brought back up ([`Gate`]): while
//! it is down no socket listens on the port (one holds it, so that nothing
//! else takes it), so the kernel refuses every connection attempt and the
//! client knows its request was never sent.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

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

/// Opens the simulator's listening socket on `addr`. `SO_REUSEPORT` lets
/// a second, non-listening socket hold the port while the simulator is down
/// ([`Gate`]), so that no other socket (another simulator started on port 0
/// meanwhile) can take it. It would also let another process of the same
/// user listen on the port: acceptable for a test server on loopback.
pub(super) fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    reserve(addr)?.listen(BACKLOG)
}

/// Connections waiting to be accepted (tokio's default).
const BACKLOG: u32 = 1024;

/// Stops `listener` listening at once: connection attempts from now on are
/// refused. Closing it is not enough: a child process forked meanwhile (a
/// test starting `oapkg`) holds a copy of the descriptor until it execs,
/// and the socket listens until the last copy is closed.
fn stop_listening(listener: TcpListener) {
    if let Err(err) = socket2::SockRef::from(&listener).shutdown(std::net::Shutdown::Read) {
        tracing::warn!(%err, "simulator cannot stop listening; closing the socket instead");
    }
}

/// A socket bound to `addr`, not listening: it holds the port, and a
/// connection attempt to it is refused.
fn reserve(addr: SocketAddr) -> io::Result<TcpSocket> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    // Elsewhere the port is bound again when the simulator comes up.
    #[cfg(unix)]
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

/// The port while the accept loop does not listen on it.
#[derive(Debug)]
enum Held {
    /// Bound, not listening: connection attempts are refused.
    Reserved(TcpSocket),
    /// Listening again ([`Gate::come_up`]), not yet adopted by the accept
    /// loop; the kernel queues connections meanwhile.
    Listening(TcpListener),
}

/// Whether the simulator listens. Handlers take it down
/// ([`Gate::go_down`]); clearing the faults brings it up ([`Gate::come_up`]);
/// the accept loop ([`SimListener`]) stops and adopts listening sockets.
///
/// Every change of state happens under the lock of `held`, so that
/// `go_down` cannot return while a socket still listens, however the
/// accept loop's steps and its own interleave.
#[derive(Debug)]
pub(super) struct Gate {
    addr: SocketAddr,
    /// The simulator's runtime, to register a socket that listens again
    /// from outside it.
    runtime: tokio::runtime::Handle,
    /// `true` from the moment the simulator is to be down.
    down: watch::Sender<bool>,
    /// `true` while the accept loop holds no listening socket.
    closed: watch::Sender<bool>,
    held: Mutex<Option<Held>>,
}

impl Gate {
    /// For a simulator listening on `addr`, on the current runtime.
    pub(super) fn new(addr: SocketAddr) -> Gate {
        Gate {
            addr,
            runtime: tokio::runtime::Handle::current(),
            down: watch::Sender::new(false),
            closed: watch::Sender::new(false),
            held: Mutex::new(None),
        }
    }

    pub(super) fn is_down(&self) -> bool {
        *self.down.borrow()
    }

    /// Stops listening; returns once no socket listens, so that a client
    /// that connects after this is refused.
    pub(super) async fn go_down(&self) {
        let mut closed = self.closed.subscribe();
        {
            let mut held = self.lock();
            // A socket listening again but not yet adopted listens too.
            if let Some(Held::Listening(listener)) = held.take() {
                *held = self.reserve();
                stop_listening(listener);
            }
            self.down.send_replace(true);
        }
        // Only fails if the gate is gone, and with it the server.
        let _ = closed.wait_for(|closed| *closed).await;
    }

    /// Listens again, if down. The socket listens when this returns (the
    /// kernel queues connections until the accept loop adopts it), so a
    /// connection attempt made after it is accepted.
    pub(super) fn come_up(&self) {
        let mut held = self.lock();
        if !self.is_down() {
            return;
        }
        if let Some(Held::Reserved(socket)) = held.take() {
            let _runtime = self.runtime.enter();
            match socket.listen(BACKLOG) {
                Ok(listener) => *held = Some(Held::Listening(listener)),
                // The accept loop tries again on its own.
                Err(err) => {
                    tracing::warn!(%err, addr = %self.addr, "simulator cannot listen again yet");
                }
            }
        }
        self.down.send_replace(false);
        tracing::info!(addr = %self.addr, "simulator up again: accepting connections");
    }

    /// A socket holding the port, if it can be bound.
    fn reserve(&self) -> Option<Held> {
        match reserve(self.addr) {
            Ok(socket) => Some(Held::Reserved(socket)),
            Err(err) => {
                tracing::warn!(%err, addr = %self.addr, "simulator cannot hold its port while down");
                None
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Held>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A TCP listener whose streams can be killed by handlers, and which does
/// not listen while its [`Gate`] is down.
pub(super) struct SimListener {
    listener: Option<TcpListener>,
    gate: Arc<Gate>,
}

impl SimListener {
    pub(super) fn new(listener: TcpListener, gate: Arc<Gate>) -> SimListener {
        SimListener {
            listener: Some(listener),
            gate,
        }
    }

    /// Stops or adopts the listening socket as the gate says.
    fn follow_gate(&mut self, down: &mut watch::Receiver<bool>) -> Socket {
        let mut held = self.gate.lock();
        if *down.borrow_and_update() {
            if let Some(listener) = self.listener.take() {
                // The port is held before the listening socket stops.
                *held = self.gate.reserve();
                stop_listening(listener);
                tracing::info!(addr = %self.gate.addr, "simulator down: refusing connections");
            }
            self.gate.closed.send_replace(true);
            return Socket::Down;
        }
        if self.listener.is_none() {
            let listener = match held.take() {
                Some(Held::Listening(listener)) => Ok(listener),
                Some(Held::Reserved(socket)) => socket.listen(BACKLOG),
                None => listen(self.gate.addr),
            };
            match listener {
                Ok(listener) => {
                    self.listener = Some(listener);
                    self.gate.closed.send_replace(false);
                }
                Err(err) => {
                    tracing::warn!(%err, addr = %self.gate.addr, "simulator cannot listen again yet");
                    return Socket::Unavailable;
                }
            }
        }
        Socket::Listening
    }
}

/// What [`SimListener::follow_gate`] left.
enum Socket {
    Listening,
    Down,
    /// Up, but the port could not be listened on again (yet).
    Unavailable,
}

impl Listener for SimListener {
    type Io = SimStream;
    type Addr = ConnTag;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let mut down = self.gate.down.subscribe();
        loop {
            match self.follow_gate(&mut down) {
                Socket::Listening => {}
                Socket::Down => {
                    if down.wait_for(|down| !*down).await.is_err() {
                        // The gate is gone, and with it the server.
                        std::future::pending::<()>().await;
                    }
                    continue;
                }
                Socket::Unavailable => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
            let Some(listener) = &self.listener else {
                continue;
            };
            tokio::select! {
                accepted = listener.accept() => match accepted {
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
                },
                // Down (or up again): follow the gate.
                _ = down.changed() => {}
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(ConnTag {
            peer: self.gate.addr,
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
