//! A local eSMS simulator: a real HTTP server on 127.0.0.1 that answers the
//! three calls oapkg makes, keeps a ledger of every charge, and misbehaves on
//! request.
//!
//! It exists because the real service cannot be reached from tests and
//! because the interesting cases (a purchase committed but never answered,
//! a duplicate, a hang) cannot be produced on demand against it. Tests start
//! it in-process ([`Simulator::start`], or [`Simulator::spawn_blocking`] from
//! a blocking test that runs the `oapkg` binary), users run it with
//! `cargo run -p esms-sim -- --port 8080`.
//!
//! It does not depend on oapkg: the paths, field names and tier numbers in
//! [`api`] are written from the eSMS API description, so a mistake in the
//! client cannot be mirrored here.
//!
//! It binds loopback only, never logs keys or bodies, and keeps the request
//! log with the key values redacted.
//!
//! Layout: `engine` holds the account and decides answers (no IO); `conn`
//! makes connections killable so a "dropped connection" is a real TCP reset,
//! and stops listening during an outage so that a connection attempt
//! is really refused;
//! `api` holds what the API looks like (paths, tier numbers, the key
//! wrapper); this file holds the configuration, the axum routes and the
//! handles.
//!
//! Admin routes (for tests that drive the simulator over HTTP):
//! `GET /__sim/ledger`, `GET /__sim/requests`, `GET /__sim/balance`,
//! `POST /__sim/faults` (a [`FaultRule`] as JSON), `DELETE /__sim/faults`
//! (which also ends an outage, see [`Fault::GoDown`]).
//!
//! It serves Zalo's OA API too ([`zalo`]): `GET /v2.0/oa/getoa` reflecting
//! the purchases it charged (after an optional lag) and
//! `POST /v4/oa/access_token` with single-use refresh tokens, on the same
//! port (give oapkg `http://127.0.0.1:PORT` as both Zalo endpoints). Admin
//! routes: `POST /__sim/zalo/authorize/{oaid}` (an OA admin authorises the
//! app: a fresh token pair as JSON), `GET /__sim/zalo/stats`.

pub mod api;
mod conn;
mod engine;
pub mod zalo;

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use self::api::Key;
pub use self::api::{BASE_PATH, Call, Package};
use self::conn::{ConnTag, Gate, SimListener};
use self::engine::{Account, Answer, Engine};
pub use self::engine::{Charge, Fault, FaultRule, FaultScope, ReceivedRequest, Stage};
use self::zalo::{Zalo, ZaloConfig};
pub use self::zalo::{ZaloStats, ZaloTokens};
/// The ApiKey the simulator accepts unless configured otherwise.
pub const DEFAULT_API_KEY: &str = "test-key";
/// The SecretKey the simulator accepts unless configured otherwise.
pub const DEFAULT_SECRET_KEY: &str = "test-secret";
/// Starting balance unless configured otherwise.
pub const DEFAULT_BALANCE: u64 = 100_000_000;
/// The OAID of the first OA [`SimConfig::generate_oas`] registers.
pub const FIRST_GENERATED_OAID: u64 = 1_000_000_000_000_000_000;
/// The first ServicePreviewId handed out (the sample's).
pub const FIRST_SERVICE_PREVIEW_ID: u64 = 52330;

/// How long a graceful shutdown may take before the server task is aborted.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The simulated account and behaviour. Start from [`SimConfig::new`] and
/// chain the setters.
#[derive(Clone, Debug)]
pub struct SimConfig {
    account: Account,
    latency: Duration,
    hang_limit: Duration,
    zalo: ZaloConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig::new()
    }
}

impl SimConfig {
    /// Keys `test-key`/`test-secret`, no OAs, a balance of 100,000,000,
    /// prices per month of 10,000 (trial), 100,000 (advanced) and 200,000
    /// (premium), deduplication on, no latency, no faults, ids as numbers.
    pub fn new() -> SimConfig {
        SimConfig {
            account: Account {
                api_key: Key::new(DEFAULT_API_KEY),
                secret_key: Key::new(DEFAULT_SECRET_KEY),
                oas: BTreeMap::new(),
                balance: DEFAULT_BALANCE,
                price_per_month: BTreeMap::from([
                    (Package::Trial, 10_000),
                    (Package::Advanced, 100_000),
                    (Package::Premium, 200_000),
                ]),
                dedupe: true,
                ids_as_strings: false,
                next_service_preview_id: FIRST_SERVICE_PREVIEW_ID,
                user_id: 9999,
                rules: Vec::new(),
                fault_rate: 0.0,
                fault_mix: Fault::default_mix(),
                seed: None,
            },
            latency: Duration::ZERO,
            hang_limit: Duration::from_secs(600),
            zalo: ZaloConfig::default(),
        }
    }

    /// The keys the account accepts; any other pair gets `101` on every call.
    pub fn keys(mut self, api_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        self.account.api_key = Key::new(api_key);
        self.account.secret_key = Key::new(secret_key);
        self
    }

    /// An OA registered to the account, with its name.
    pub fn oa(mut self, oaid: impl Into<String>, name: impl Into<String>) -> Self {
        self.account.oas.insert(oaid.into(), name.into());
        self
    }

    /// An OA registered to the account, named `OA <oaid>`. Purchases for
    /// OAIDs not registered get `799`.
    pub fn oaid(self, oaid: impl Into<String>) -> Self {
        let oaid = oaid.into();
        let name = format!("OA {oaid}");
        self.oa(oaid, name)
    }

    /// `n` more OAs registered to the account, OAIDs
    /// [`FIRST_GENERATED_OAID`], the next number, and so on, named
    /// `Generated OA <i>`: a large account, whose `GetListZOA` answer is
    /// some 70 bytes per OA.
    pub fn generate_oas(mut self, n: u64) -> Self {
        for i in 0..n {
            self.account.oas.insert(
                (FIRST_GENERATED_OAID + i).to_string(),
                format!("Generated OA {i}"),
            );
        }
        self
    }

    /// The starting balance; a purchase costing more gets `103`.
    pub fn balance(mut self, balance: u64) -> Self {
        self.account.balance = balance;
        self
    }

    /// The price of one month of `package`; a purchase costs it times
    /// `Duaration`.
    pub fn price_per_month(mut self, package: Package, price: u64) -> Self {
        self.account.price_per_month.insert(package, price);
        self
    }

    /// A fixed delay before each API request is processed. The request is
    /// processed even if the client gives up meanwhile, as a real server
    /// would: a client timeout shorter than this loses the answer, not the
    /// purchase.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// With `true` (the default), a purchase identical to an earlier charge
    /// (OAID, Package, Dateactive, Duaration) answers `199` and charges
    /// nothing. With `false`, every purchase charges.
    pub fn dedupe(mut self, dedupe: bool) -> Self {
        self.account.dedupe = dedupe;
        self
    }

    /// A fault rule; rules are tried in the order given, the first matching
    /// one applies.
    pub fn fault(mut self, rule: FaultRule) -> Self {
        self.account.rules.push(rule);
        self
    }

    /// Probability (0.0..=1.0) that a purchase request not hit by a rule
    /// gets a random fault from the mix.
    pub fn fault_rate(mut self, rate: f64) -> Self {
        self.account.fault_rate = rate.clamp(0.0, 1.0);
        self
    }

    /// Seed of the random fault picker, for reproducible runs.
    pub fn seed(mut self, seed: u64) -> Self {
        self.account.seed = Some(seed);
        self
    }

    /// The faults the random picker chooses among (default:
    /// [`Fault::default_mix`]).
    pub fn fault_mix(mut self, mix: Vec<Fault>) -> Self {
        self.account.fault_mix = mix;
        self
    }

    /// Send `ServicePreviewId` as a JSON string instead of a number (the
    /// documentation says string, the sample shows a number).
    pub fn service_preview_ids_as_strings(mut self, as_strings: bool) -> Self {
        self.account.ids_as_strings = as_strings;
        self
    }

    /// The first ServicePreviewId handed out.
    pub fn first_service_preview_id(mut self, id: u64) -> Self {
        self.account.next_service_preview_id = id;
        self
    }

    /// Longest a `Hang` fault holds a request before dropping it (default
    /// 10 minutes; shutdown ends it sooner).
    pub fn hang_limit(mut self, limit: Duration) -> Self {
        self.hang_limit = limit;
        self
    }

    /// The Zalo app's id and secret (default [`zalo::DEFAULT_APP_ID`],
    /// [`zalo::DEFAULT_APP_SECRET`]); an exchange with others is refused.
    pub fn zalo_app(mut self, app_id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.zalo.app_id = app_id.into();
        self.zalo.app_secret = self::api::Key::new(secret);
        self
    }

    /// How long after a charge Zalo's `getoa` shows it (default: at once).
    pub fn zalo_lag(mut self, lag: Duration) -> Self {
        self.zalo.lag = lag;
        self
    }

    /// How long an access token lives (default 90,000 s).
    pub fn zalo_access_ttl(mut self, ttl: Duration) -> Self {
        self.zalo.access_ttl = ttl;
        self
    }

    /// A package Zalo knows of for `oaid` that eSMS never charged here
    /// (bought elsewhere), valid through `valid_through`.
    pub fn zalo_package(
        mut self,
        oaid: impl Into<String>,
        valid_through: jiff::civil::Date,
        name: impl Into<String>,
    ) -> Self {
        self.zalo
            .packages
            .insert(oaid.into(), (valid_through, name.into()));
        self
    }
}

/// State shared by the routes and the handles.
struct Shared {
    engine: Mutex<Engine>,
    /// Taken alone or before `engine`, never while holding it.
    zalo: Mutex<Zalo>,
    /// Whether it listens ([`Fault::GoDown`]).
    gate: Arc<Gate>,
    latency: Duration,
    hang_limit: Duration,
    shutdown: watch::Receiver<bool>,
}

impl Shared {
    fn engine(&self) -> MutexGuard<'_, Engine> {
        // A panic while holding the lock is a simulator bug; the data is
        // still the best record of what happened, so keep serving it.
        self.engine.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn zalo(&self) -> MutexGuard<'_, Zalo> {
        self.zalo.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes every fault rule and ends an outage.
    fn clear_faults(&self) {
        self.engine().clear_faults();
        self.gate.come_up();
    }

    /// Resolves when shutdown starts (or the handle is gone).
    async fn shutting_down(&self) {
        let mut rx = self.shutdown.clone();
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

/// Starts simulators.
pub struct Simulator;

impl Simulator {
    /// Starts a simulator on `127.0.0.1` at a free port, on the current
    /// tokio runtime.
    pub async fn start(config: SimConfig) -> io::Result<SimHandle> {
        Simulator::start_on_port(config, 0).await
    }

    /// Starts a simulator on `127.0.0.1:port` (`0`: any free port).
    pub async fn start_on_port(config: SimConfig, port: u16) -> io::Result<SimHandle> {
        let listener = conn::listen(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let gate = Arc::new(Gate::new(addr));
        let shared = Arc::new(Shared {
            engine: Mutex::new(Engine::new(config.account)),
            zalo: Mutex::new(Zalo::new(config.zalo)),
            gate: gate.clone(),
            latency: config.latency,
            hang_limit: config.hang_limit,
            shutdown: stop_rx,
        });
        let app = router(shared.clone()).into_make_service_with_connect_info::<ConnTag>();
        let signal = shared.clone();
        let server = tokio::spawn(async move {
            let served = axum::serve(SimListener::new(listener, gate), app)
                .with_graceful_shutdown(async move { signal.shutting_down().await })
                .await;
            if let Err(err) = served {
                tracing::error!(%err, "simulator stopped with an error");
            }
        });
        tracing::info!(%addr, "eSMS simulator listening");
        Ok(SimHandle {
            control: SimControl { shared, addr },
            stop: stop_tx,
            server: Some(server),
        })
    }

    /// Starts a simulator on its own thread and runtime, for tests that are
    /// not async (e.g. ones that run the `oapkg` binary against it). It
    /// stops when the handle is shut down or dropped.
    pub fn spawn_blocking(config: SimConfig) -> io::Result<BlockingSimHandle> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("esms-sim".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match Simulator::start(config).await {
                        Ok(handle) => {
                            let _ = ready_tx.send(Ok(handle.control.clone()));
                            // A dropped sender also means "stop".
                            let _ = stop_rx.await;
                            handle.shutdown().await;
                        }
                        Err(err) => {
                            let _ = ready_tx.send(Err(err));
                        }
                    }
                });
            })?;
        let control = ready_rx
            .recv()
            .map_err(|_| io::Error::other("the simulator thread died while starting"))??;
        Ok(BlockingSimHandle {
            control,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

/// Reads and steers a running simulator; shared by both handle kinds.
#[derive(Clone)]
pub struct SimControl {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl SimControl {
    /// The socket address it listens on (always 127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL for the client: `http://127.0.0.1:PORT/MainService.svc/json/`.
    pub fn endpoint(&self) -> String {
        format!("http://{}{BASE_PATH}", self.addr)
    }

    /// Every charge so far, in order.
    pub fn ledger(&self) -> Vec<Charge> {
        self.shared.engine().ledger().to_vec()
    }

    /// Every API request received so far, keys redacted, in arrival order.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.shared.engine().requests().to_vec()
    }

    /// The current balance.
    pub fn balance(&self) -> u64 {
        self.shared.engine().balance()
    }

    /// Adds a fault rule at run time, tried before the configured ones.
    pub fn inject(&self, rule: FaultRule) {
        self.shared.engine().inject(rule);
    }

    /// Removes every fault rule, sets the random fault rate to zero, and
    /// ends an outage ([`Fault::GoDown`]): connection attempts made after
    /// this returns are accepted.
    pub fn clear_faults(&self) {
        self.shared.clear_faults();
    }

    /// Turns deduplication on or off from now on (see
    /// [`SimConfig::dedupe`]); earlier charges stay in the ledger and count
    /// as "earlier" for a later identical request.
    pub fn set_dedupe(&self, dedupe: bool) {
        self.shared.engine().set_dedupe(dedupe);
    }

    /// The base URL of both Zalo hosts: `http://127.0.0.1:PORT`.
    pub fn zalo_endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// An OA admin authorises the app for `oaid`: a fresh token pair.
    pub fn zalo_authorize(&self, oaid: &str) -> ZaloTokens {
        self.shared.zalo().authorize(oaid)
    }

    /// How many Zalo requests of each kind were answered.
    pub fn zalo_stats(&self) -> ZaloStats {
        self.shared.zalo().stats()
    }

    /// How often each refresh token issued so far was used (an exchange
    /// with it, accepted or not), in the order they were issued.
    pub fn zalo_refresh_token_uses(&self) -> Vec<u32> {
        self.shared.zalo().refresh_token_uses()
    }

    /// Changes how long after a charge `getoa` shows it.
    pub fn set_zalo_lag(&self, lag: Duration) {
        self.shared.zalo().set_lag(lag);
    }

    /// A package bought elsewhere for `oaid` (see [`SimConfig::zalo_package`]).
    pub fn set_zalo_package(&self, oaid: &str, valid_through: jiff::civil::Date, name: &str) {
        self.shared.zalo().set_package(oaid, valid_through, name);
    }

    /// Every access token issued so far expires now.
    pub fn expire_zalo_access_tokens(&self) {
        self.shared.zalo().expire_access_tokens();
    }

    /// Every `getoa` from now on answers HTTP 200 with `body` (`None`:
    /// profiles again), for tests of answers the client must not guess at.
    pub fn set_zalo_odd_answer(&self, body: Option<String>) {
        self.shared.zalo().set_odd_answer(body);
    }

    /// Whether every request received so far has been answered (or
    /// dropped): nothing is still being processed that could charge.
    pub fn idle(&self) -> bool {
        self.shared
            .engine()
            .requests()
            .iter()
            .all(|r| r.answer.is_some())
    }
}

/// A simulator running on the caller's tokio runtime. Dropping it starts a
/// shutdown; [`SimHandle::shutdown`] also waits for it.
pub struct SimHandle {
    control: SimControl,
    stop: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
}

impl SimHandle {
    pub fn control(&self) -> SimControl {
        self.control.clone()
    }

    /// Stops accepting, ends hanging and delayed requests (their clients
    /// see a dropped connection), waits for connections to close.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(mut server) = self.server.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut server)
                .await
                .is_err()
        {
            server.abort();
        }
    }
}

impl Deref for SimHandle {
    type Target = SimControl;
    fn deref(&self) -> &SimControl {
        &self.control
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// A simulator on its own thread. Dropping it stops it and joins the thread.
pub struct BlockingSimHandle {
    control: SimControl,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BlockingSimHandle {
    pub fn control(&self) -> SimControl {
        self.control.clone()
    }

    /// Stops the simulator and waits for its thread.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Deref for BlockingSimHandle {
    type Target = SimControl;
    fn deref(&self) -> &SimControl {
        &self.control
    }
}

impl Drop for BlockingSimHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn router(shared: Arc<Shared>) -> Router {
    let mut router = Router::new();
    for call in Call::ALL {
        let path = format!("{BASE_PATH}{}", call.path());
        // Accept the path with and without its trailing slash.
        let other = match path.strip_suffix('/') {
            Some(bare) => bare.to_owned(),
            None => format!("{path}/"),
        };
        let handler = move |State(shared): State<Arc<Shared>>,
                            ConnectInfo(conn): ConnectInfo<ConnTag>,
                            uri: Uri,
                            headers: HeaderMap,
                            body: Bytes| async move {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            let (seq, fault) = shared.engine().admit(call, uri.path(), content_type, &body);
            api(call, seq, fault, shared, conn, body).await
        };
        router = router
            .route(&path, post(handler))
            .route(&other, post(handler));
    }
    router
        .route(zalo::GETOA_PATH, get(zalo_getoa))
        .route(zalo::ACCESS_TOKEN_PATH, post(zalo_access_token))
        .route("/__sim/zalo/authorize/{oaid}", post(admin_zalo_authorize))
        .route("/__sim/zalo/stats", get(admin_zalo_stats))
        .route("/__sim/ledger", get(admin_ledger))
        .route("/__sim/requests", get(admin_requests))
        .route("/__sim/balance", get(admin_balance))
        .route("/__sim/faults", post(admin_inject).delete(admin_clear))
        .fallback(not_found)
        .with_state(shared)
}

async fn api(
    call: Call,
    seq: u64,
    fault: Option<Fault>,
    shared: Arc<Shared>,
    conn: ConnTag,
    body: Bytes,
) -> Response {
    tracing::info!(seq, %call, peer = %conn.peer, ?fault, "request received");
    let goes_down = matches!(fault, Some(Fault::GoDown { .. }));

    // The work runs in a task of its own so that a request, once received,
    // is processed even if the client hangs up during the latency: hyper
    // drops a handler whose client is gone, a real server does not undo a
    // purchase for that.
    let work = tokio::spawn({
        let shared = shared.clone();
        async move {
            if !shared.latency.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(shared.latency) => {}
                    () = shared.shutting_down() => {
                        shared.engine().set_answer(seq, "dropped (shutdown)".to_owned());
                        return Answer::Drop;
                    }
                }
            }
            shared.engine().process(seq, call, &body, fault.as_ref())
        }
    });
    let answer = work.await.unwrap_or(Answer::Drop);
    tracing::info!(seq, %call, answer = %answer.summary(), "request answered");
    if goes_down {
        // Down before the answer leaves: the client connects again only
        // after reading it, and is refused.
        tokio::select! {
            () = shared.gate.go_down() => {}
            () = shared.shutting_down() => {}
        }
        shared.engine().outage_started();
    }
    // No kept-alive connection may carry a request past an outage.
    let close = shared.gate.is_down() || shared.engine().outage_pending();
    let mut response = match answer {
        Answer::Json(value) => (StatusCode::OK, Json(value)).into_response(),
        Answer::Status { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let content_type = if body.starts_with("<html>") {
                "text/html; charset=utf-8"
            } else {
                "text/plain; charset=utf-8"
            };
            (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        Answer::Drop => {
            conn.kill();
            // Never written: the killed stream fails the write.
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Answer::Hang => {
            tokio::select! {
                () = tokio::time::sleep(shared.hang_limit) => {}
                () = shared.shutting_down() => {}
            }
            conn.kill();
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    };
    if close {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

async fn zalo_getoa(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let token = headers.get("access_token").and_then(|v| v.to_str().ok());
    let admitted = shared.zalo().admit_getoa(token);
    let oaid = match admitted {
        Ok(oaid) => oaid,
        Err(answer) => return Json(answer).into_response(),
    };
    let charges: Vec<Charge> = shared
        .engine()
        .ledger()
        .iter()
        .filter(|c| c.oaid == oaid)
        .cloned()
        .collect();
    let profile = shared.zalo().profile(&oaid, &charges);
    match profile {
        Ok(answer) => Json(answer).into_response(),
        Err(odd) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            odd,
        )
            .into_response(),
    }
}

async fn zalo_access_token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Json<serde_json::Value> {
    let secret = headers.get("secret_key").and_then(|v| v.to_str().ok());
    let form = parse_form(&body);
    Json(shared.zalo().exchange(secret, &form))
}

async fn admin_zalo_authorize(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(oaid): axum::extract::Path<String>,
) -> Json<ZaloTokens> {
    Json(shared.zalo().authorize(&oaid))
}

async fn admin_zalo_stats(State(shared): State<Arc<Shared>>) -> Json<ZaloStats> {
    Json(shared.zalo().stats())
}

/// An `application/x-www-form-urlencoded` body's pairs.
fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    fn decode(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = |b: u8| (b as char).to_digit(16);
                    match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                        (Some(high), Some(low)) => {
                            out.push((high * 16 + low) as u8);
                            i += 2;
                        }
                        _ => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

async fn admin_ledger(State(shared): State<Arc<Shared>>) -> Json<Vec<Charge>> {
    Json(shared.engine().ledger().to_vec())
}

async fn admin_requests(State(shared): State<Arc<Shared>>) -> Json<Vec<ReceivedRequest>> {
    Json(shared.engine().requests().to_vec())
}

async fn admin_balance(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "balance": shared.engine().balance() }))
}

async fn admin_inject(
    State(shared): State<Arc<Shared>>,
    Json(rule): Json<FaultRule>,
) -> StatusCode {
    tracing::info!(?rule, "fault injected");
    shared.engine().inject(rule);
    StatusCode::NO_CONTENT
}

async fn admin_clear(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.clear_faults();
    StatusCode::NO_CONTENT
}

async fn not_found(uri: Uri) -> (StatusCode, String) {
    tracing::warn!(path = uri.path(), "request for an unknown path");
    (
        StatusCode::NOT_FOUND,
        format!("not an eSMS path: {}", uri.path()),
    )
}

#[cfg(test)]
mod tests;
