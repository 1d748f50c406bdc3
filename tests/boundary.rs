//! The architecture rule: only `src/host/` may name proxy-wasm. Everything else is pure logic
//! that builds and runs natively.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests may fail loudly

use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn only_the_host_layer_names_proxy_wasm() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let host = src.join("host");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 5, "found the sources");
    let offenders: Vec<_> = files
        .iter()
        .filter(|f| !f.starts_with(&host))
        .filter(|f| f.file_name().is_none_or(|n| n != "lib.rs"))
        .filter(|f| fs::read_to_string(f).expect("readable").contains("proxy_wasm"))
        .collect();
    assert!(offenders.is_empty(), "outside src/host/: {offenders:?}");
}

#[test]
fn lib_rs_only_declares_the_host_module_for_wasm() {
    let lib = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    assert!(!lib.contains("proxy_wasm"), "lib.rs declares modules only");
    assert!(lib.contains("#[cfg(target_arch = \"wasm32\")]\nmod host;"));
}
