//! Loads a rule book file and prints the result or the error:
//! `cargo run -p lemo-expert --example load_book -- FILE`.

fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "rulebooks/paper.toml".to_string());
    match lemo_expert::RuleSet::from_path(&path) {
        Ok(book) => println!("{} rules loaded from {path}", book.rules.len()),
        Err(e) => println!("{e}"),
    }
}
