//! Embeds every file of web/ (the webmail's page, no build step of its own)
//! into the binary: writes the list `src/web/assets.rs` includes, so a file
//! added to web/ is served without touching the Rust code. Each file goes
//! in raw-deflated (the server inflates it once, at first use): the page is
//! text, and the aarch64 binary has a 4 MB budget.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter_map(|e| e.file_name().into_string().ok())
                // Editors' and the system's droppings are not the page's.
                .filter(|name| !name.starts_with('.') && !name.ends_with('~'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut out = String::from("&[\n");
    for name in names {
        let path = dir.join(&name);
        println!("cargo:rerun-if-changed={}", path.display());
        let body = std::fs::read(&path).expect("read a web asset");
        let mut deflater =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        deflater.write_all(&body).expect("deflate a web asset");
        let packed = out_dir.join(format!("{name}.deflate"));
        std::fs::write(&packed, deflater.finish().expect("deflate a web asset"))
            .expect("write a deflated web asset");
        let _ = writeln!(
            out,
            "    ({name:?}, include_bytes!({:?})),",
            packed.display().to_string()
        );
    }
    out.push_str("]\n");
    let dest = out_dir.join("web_assets.rs");
    std::fs::write(dest, out).expect("write the list of web assets");
}
