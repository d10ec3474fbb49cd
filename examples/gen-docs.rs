//! Writes the man pages and shell completions into a directory:
//!
//! `cargo run --example gen-docs -- target/docs`

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/docs".into());
    for path in oapkg::cli::docs::generate(std::path::Path::new(&dir))? {
        println!("{}", path.display());
    }
    Ok(())
}
