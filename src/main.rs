use oapkg::exit::ExitStatus;

fn main() -> std::process::ExitCode {
    match oapkg::cli::parse() {
        Ok(cli) => {
            oapkg::cli::error::install_panic_hook(oapkg::cli::stderr_paint(&cli.global));
            oapkg::cli::run(cli).into()
        }
        // `--help` and `--version` print and succeed; a usage error prints
        // and exits 1 (clap's own 2 means "something to buy" in oapkg).
        Err(error) => {
            let _ = error.print();
            if error.use_stderr() {
                ExitStatus::Failure
            } else {
                ExitStatus::Success
            }
            .into()
        }
    }
}
