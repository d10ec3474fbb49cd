//! Writes the man pages and shell completions into a directory, generated
//! from the same clap definitions the binary parses with:
//!
//! `cargo run --example gen-docs -- target/docs`
//!
//! An example rather than part of the library, so that the shipped binary
//! does not link the man page renderer (`oapkg completions SHELL` needs
//! only clap_complete).

use std::path::{Path, PathBuf};

use clap_complete::Shell;

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/docs".into());
    for path in generate(Path::new(&dir))? {
        println!("{}", path.display());
    }
    Ok(())
}

/// Writes `DIR/man/oapkg.1` with one page per subcommand (`oapkg-state-list.1`,
/// named like git's) and `DIR/completions/` for every shell clap supports.
/// Returns the files written.
fn generate(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let command = oapkg::cli::command();
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

#[cfg(test)]
mod tests {
    #[test]
    fn man_pages_and_completions_are_generated_from_the_cli() {
        let dir = tempfile::tempdir().unwrap();
        let written = super::generate(dir.path()).unwrap();
        let page = std::fs::read_to_string(dir.path().join("man/oapkg-plan.1")).unwrap();
        assert!(page.contains("detailed\\-exitcode"), "{page}");
        assert!(dir.path().join("man/oapkg-state-import.1").is_file());
        assert!(dir.path().join("completions/oapkg.bash").is_file());
        assert!(written.len() > 10);
    }
}
