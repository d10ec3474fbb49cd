use clap::Parser;

fn main() -> std::process::ExitCode {
    oapkg::cli::run(oapkg::cli::Cli::parse()).into()
}
