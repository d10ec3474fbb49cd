//! A local eSMS API simulator on 127.0.0.1, for trying oapkg without
//! spending money and for tests that run the real binary.
//!
//! ```text
//! cargo run -p esms-sim -- --port 8080 --oaid 4097311281936189049
//! ESMS_ENDPOINT=http://127.0.0.1:8080/MainService.svc/json/ \
//! ESMS_API_KEY=test-key ESMS_SECRET_KEY=test-secret oapkg apply
//! curl -s http://127.0.0.1:8080/__sim/ledger
//! ```
//!
//! The first line on stdout is the endpoint URL to give oapkg; logs go to
//! stderr (`RUST_LOG` to change the level). It listens on loopback only.
//! Admin routes: `GET /__sim/ledger`, `GET /__sim/requests`,
//! `GET /__sim/balance`, `POST /__sim/faults` with a JSON fault rule such as
//! `{"fault": {"kind": "drop_connection", "stage": "after_commit"}, "times": 1}`,
//! `DELETE /__sim/faults` (which also ends a `{"kind": "go_down"}` outage).
//!
//! Zalo's OA API is served on the same port (`ZALO_OPENAPI_ENDPOINT` and
//! `ZALO_OAUTH_ENDPOINT` = `http://127.0.0.1:PORT`); an OA admin's
//! authorisation is `curl -s -X POST http://127.0.0.1:PORT/__sim/zalo/authorize/OAID`.

use std::io::Write;
use std::time::Duration;

use clap::Parser;
use esms_sim::{self as sim, Fault, FaultRule, Package, SimConfig, Simulator};

/// OAIDs registered when no --oaid is given: the two from the eSMS documentation and
/// the other OAs of `examples/oapkg.yaml`, so the bundled example applies
/// as it is.
const SAMPLE_OAS: [(&str, &str); 5] = [
    ("4097311281936189049", "SVoucher"),
    ("745830328927467685", "Sample OA"),
    ("1862271839408756113", "SVoucher Hanoi"),
    ("3310089422715563390", "SVoucher Da Nang"),
    ("5520017735810466321", "SMember pilot"),
];

#[derive(Debug, Parser)]
#[command(about = "Simulate the eSMS API on 127.0.0.1 for oapkg")]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free one; the URL is printed either way).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The ApiKey the account accepts; others get code 101.
    #[arg(long, default_value = sim::DEFAULT_API_KEY)]
    api_key: String,
    /// The SecretKey the account accepts.
    #[arg(long, default_value = sim::DEFAULT_SECRET_KEY)]
    secret_key: String,
    /// An OA registered to the account, `OAID` or `OAID=NAME`; repeatable.
    /// Without any, the OAIDs of the eSMS documentation and examples/oapkg.yaml are
    /// registered.
    /// Purchases for other OAIDs get code 799.
    #[arg(long = "oaid", value_name = "OAID[=NAME]")]
    oaids: Vec<String>,
    /// Also register N generated OAs (OAIDs 1000000000000000000, the next
    /// number, ...), for trying a large account.
    #[arg(long, value_name = "N", default_value_t = 0)]
    generate_oas: u64,
    /// Starting balance; a purchase costing more gets code 103.
    #[arg(long, default_value_t = sim::DEFAULT_BALANCE)]
    balance: u64,
    /// The price of one month of a package, `trial=10000` (repeatable; the
    /// name or the number 1, 2, 3). Defaults: trial 10000, advanced 100000,
    /// premium 200000. A purchase costs it times the months.
    #[arg(long = "price", value_name = "PACKAGE=AMOUNT", value_parser = parse_price)]
    prices: Vec<(Package, u64)>,
    /// Delay before each API request is processed, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Probability (0 to 1) of a random fault on each purchase: HTTP 500,
    /// dropped connection or hang, each before or after the charge, code
    /// 160 or HTTP 429.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    fault_rate: f64,
    /// Seed for --fault-rate, for reproducible runs.
    #[arg(long)]
    seed: Option<u64>,
    /// Answer every purchase with this result code (nothing is charged).
    #[arg(long, value_name = "CODE")]
    force_code: Option<String>,
    /// Charge every purchase, even an identical repeat (no code 199).
    #[arg(long)]
    no_dedupe: bool,
    /// Send ServicePreviewId as a JSON string instead of a number.
    #[arg(long)]
    string_ids: bool,
    /// Longest a simulated hang lasts, in seconds.
    #[arg(long, default_value_t = 600)]
    hang_limit_secs: u64,
    /// Zalo: how long after a charge `getoa` shows it, in seconds.
    #[arg(long, default_value_t = 0)]
    zalo_lag_secs: u64,
    /// Zalo: the app id the token exchange accepts.
    #[arg(long, default_value = sim::zalo::DEFAULT_APP_ID)]
    zalo_app_id: String,
    /// Zalo: the app secret the token exchange accepts (header `secret_key`).
    #[arg(long, default_value = sim::zalo::DEFAULT_APP_SECRET)]
    zalo_app_secret: String,
}

fn parse_price(text: &str) -> Result<(Package, u64), String> {
    let (package, amount) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected PACKAGE=AMOUNT, e.g. premium=399000"))?;
    let package = match package.trim().to_ascii_lowercase().as_str() {
        "trial" | "1" => Package::Trial,
        "advanced" | "2" => Package::Advanced,
        "premium" | "3" => Package::Premium,
        other => {
            return Err(format!(
                "`{other}` is not a package: trial, advanced or premium"
            ));
        }
    };
    let amount = amount
        .trim()
        .parse()
        .map_err(|_| format!("`{amount}` is not a whole amount"))?;
    Ok((package, amount))
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err("the fault rate is a probability between 0 and 1".to_owned())
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let mut config = SimConfig::new()
        .keys(&args.api_key, &args.secret_key)
        .balance(args.balance)
        .latency(Duration::from_millis(args.latency_ms))
        .fault_rate(args.fault_rate)
        .dedupe(!args.no_dedupe)
        .service_preview_ids_as_strings(args.string_ids)
        .hang_limit(Duration::from_secs(args.hang_limit_secs))
        .zalo_app(&args.zalo_app_id, &args.zalo_app_secret)
        .zalo_lag(Duration::from_secs(args.zalo_lag_secs));
    config = config.generate_oas(args.generate_oas);
    for &(package, price) in &args.prices {
        config = config.price_per_month(package, price);
    }
    if args.oaids.is_empty() {
        for (oaid, name) in SAMPLE_OAS {
            config = config.oa(oaid, name);
        }
    }
    for oa in &args.oaids {
        config = match oa.split_once('=') {
            Some((oaid, name)) => config.oa(oaid, name),
            None => config.oaid(oa.as_str()),
        };
    }
    if let Some(seed) = args.seed {
        config = config.seed(seed);
    }
    if let Some(code) = &args.force_code {
        config = config.fault(FaultRule::always(Fault::Code {
            code: code.clone(),
            message: None,
        }));
    }

    let handle = Simulator::start_on_port(config, args.port).await?;
    // The URL first and alone on stdout, so scripts can read one line.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", handle.endpoint())?;
    stdout.flush()?;
    drop(stdout);
    eprintln!(
        "eSMS simulator on {} (ledger: http://{}/__sim/ledger); Ctrl-C to stop",
        handle.endpoint(),
        handle.addr()
    );

    wait_for_stop().await;
    handle.shutdown().await;
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix (how test harnesses and service managers stop it).
async fn wait_for_stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                return;
            }
            Err(err) => tracing::warn!(%err, "cannot listen for SIGTERM"),
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_name_a_package_by_name_or_number() {
        assert_eq!(
            parse_price("premium=399000"),
            Ok((Package::Premium, 399_000))
        );
        assert_eq!(parse_price(" 2 = 59000"), Ok((Package::Advanced, 59_000)));
        assert!(parse_price("gold=1").unwrap_err().contains("not a package"));
        assert!(parse_price("trial").unwrap_err().contains("PACKAGE=AMOUNT"));
        assert!(
            parse_price("trial=1.5")
                .unwrap_err()
                .contains("whole amount")
        );
    }
}
