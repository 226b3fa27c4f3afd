//! The `letterbox` command; everything it does lives in the library.

fn main() {
    std::process::exit(letterbox::cli::main());
}
