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

/// The filter's code (what the `.wasm` is built from) has no call that can panic outside its
/// unit tests: `unwrap`, `expect`, `panic!`, `unreachable!`, `todo!`, `unimplemented!` appear
/// only after a file's `#[cfg(test)]` line or in a `tests.rs` its parent declares under
/// `#[cfg(test)]`. Clippy denies them too, but `make test` lints the native build only, which
/// leaves out `src/host/` (wasm32 only); this scan covers every file. The one exception is the
/// opt-in fault that tests the panic hook itself (`TOLLGATE_TEST_FAULTS=panic`).
#[test]
fn the_filter_has_no_panicking_call_outside_unit_tests() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let not_in_the_filter = [src.join("bin"), src.join("cli"), src.join("main.rs")];
    let calls = [".unwrap()", ".expect(", "panic!(", "unreachable!(", "todo!(", "unimplemented!("];
    let mut offenders = Vec::new();
    for file in files.iter().filter(|f| !not_in_the_filter.iter().any(|n| f.starts_with(n))) {
        let text = fs::read_to_string(file).unwrap();
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            // Declared by `dir/mod.rs`, or by `dir.rs` next to the directory.
            let dir = file.parent().unwrap();
            let parent = fs::read_to_string(dir.join("mod.rs"))
                .or_else(|_| fs::read_to_string(dir.with_extension("rs")))
                .unwrap();
            assert!(parent.contains("#[cfg(test)]\nmod tests;"), "{}: included only for tests", file.display());
            continue;
        }
        let lines: Vec<&str> = text.lines().collect();
        let end = lines.iter().position(|l| l.trim() == "#[cfg(test)]").unwrap_or(lines.len());
        for (i, line) in lines[..end].iter().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            let fault_test = line.contains("panic!(\"TOLLGATE_TEST_FAULTS=panic\")");
            if calls.iter().any(|c| code.contains(c)) && !fault_test {
                offenders.push(format!("{}:{}: {}", file.display(), i + 1, line.trim()));
            }
        }
        // Everything after the first `#[cfg(test)]` must be the test module, and the file's last
        // item: rustfmt indents a module's items, so any other line at column 0 is a new item.
        if end < lines.len() {
            let tail: Vec<&str> = lines[end + 1..].iter().copied().filter(|l| !l.trim().is_empty()).collect();
            let module = tail.first().is_some_and(|l| l.starts_with("mod tests"));
            // (A line continuing a string literal, after a `\` line end, may start at column 0.)
            let top_level = tail
                .windows(2)
                .filter(|pair| !pair[1].starts_with(char::is_whitespace) && !pair[0].ends_with('\\'))
                .count();
            let closed_at_the_end = tail.len() == 1 || (top_level == 1 && tail.last() == Some(&"}"));
            assert!(module && closed_at_the_end, "{}: #[cfg(test)] guards the last item, `mod tests`", file.display());
        }
    }
    assert!(offenders.is_empty(), "panicking calls in the filter's code:\n{}", offenders.join("\n"));
}
