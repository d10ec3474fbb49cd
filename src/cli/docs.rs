//! Man pages and shell completions, generated from the same clap definitions
//! the binary parses with (`cargo run --example gen-docs -- DIR`).

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

use super::Cli;

/// Writes `DIR/man/oapkg.1` with one page per subcommand (`oapkg-state-list.1`,
/// named like git's) and `DIR/completions/` for every shell clap supports.
/// Returns the files written.
pub fn generate(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let command = Cli::command();
    let mut written = Vec::new();
    let man = dir.join("man");
    std::fs::create_dir_all(&man)?;
    write_man_pages(&command, "oapkg", &man, &mut written)?;
    let completions = dir.join("completions");
    std::fs::create_dir_all(&completions)?;
    for shell in [
        Shell::Bash,
        Shell::Zsh,
        Shell::Fish,
        Shell::Elvish,
        Shell::PowerShell,
    ] {
        written.push(clap_complete::generate_to(
            shell,
            &mut command.clone(),
            "oapkg",
            &completions,
        )?);
    }
    Ok(written)
}

fn write_man_pages(
    command: &clap::Command,
    name: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    let command = command.clone().name(name.to_owned());
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone()).render(&mut page)?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, page)?;
    written.push(path);
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        write_man_pages(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}
