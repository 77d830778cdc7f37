//! Write the fuzz targets' seed inputs (`tally_fuzz::seeds`) into `corpus/<target>/seed-<name>`
//! under the directory given (default: this crate's), for a fresh corpus or after a format
//! changes: `cargo run --example seeds` from tests/fuzz.
fn main() {
    let root = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf());
    for (target, name, bytes) in tally_fuzz::seeds() {
        let dir = root.join("corpus").join(target);
        std::fs::create_dir_all(&dir).expect("the corpus directory");
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("a seed written");
    }
}
