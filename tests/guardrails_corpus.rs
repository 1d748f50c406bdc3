//! Precision and recall of every built-in detector on the labelled corpus in
//! `tests/fixtures/guardrails/corpus/` (positives in `[[ ]]`, hard negatives on `-` lines, plus
//! `common.txt`, negatives for every detector). Prints the README's table:
//! `cargo test --test guardrails_corpus -- --nocapture`.
//!
//! Also checks that the prefilter loses nothing: scanning with the run prefilter finds exactly
//! what each detector's regular expression finds (and validates) over the whole text.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests may fail loudly

use std::path::Path;

use tollgate::guardrails::detect::{self, BUILTINS};
use tollgate::guardrails::scan::{Detectors, Found, Matcher, Words};

struct Case {
    text: String,
    expected: Vec<(usize, usize)>,
}

fn load(name: &str) -> Vec<Case> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/guardrails/corpus").join(format!("{name}.txt"));
    let content = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut cases = Vec::new();
    for line in content.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (label, rest) = line.split_at(2);
        let raw = rest.replace("\\n", "\n").replace("\\\\", "\\");
        let mut text = String::new();
        let mut expected = Vec::new();
        let mut at = 0;
        while let Some(open) = raw[at..].find("[[") {
            let open = at + open;
            let close = open + raw[open..].find("]]").expect("closed marker");
            text.push_str(&raw[at..open]);
            let start = text.len();
            text.push_str(&raw[open + 2..close]);
            expected.push((start, text.len()));
            at = close + 2;
        }
        text.push_str(&raw[at..]);
        assert_eq!(label == "+ ", !expected.is_empty(), "{line}");
        cases.push(Case { text, expected });
    }
    cases
}

fn find(matcher: &Matcher, text: &str) -> Vec<(usize, usize)> {
    let mut found: Vec<Found> = Vec::new();
    matcher.find_all(text.as_bytes(), 0, &mut found);
    found.iter().map(|f| (f.start, f.end)).collect()
}

#[derive(Default)]
struct Score {
    tp: usize,
    fp: usize,
    fn_: usize,
    positives: usize,
    negatives: usize,
}

fn score(name: &str) -> Score {
    let matcher = Matcher::Detectors(Detectors::new(&[name]).unwrap());
    let mut s = Score::default();
    let mut cases = load(name);
    cases.extend(load("common"));
    for case in &cases {
        let found = find(&matcher, &case.text);
        if case.expected.is_empty() {
            s.negatives += 1;
        } else {
            s.positives += case.expected.len();
        }
        s.tp += found.iter().filter(|f| case.expected.contains(f)).count();
        s.fp += found.iter().filter(|f| !case.expected.contains(f)).count();
        s.fn_ += case.expected.iter().filter(|e| !found.contains(e)).count();
    }
    s
}

#[test]
fn precision_and_recall_per_detector() {
    println!("| detector | positives | hard negatives | precision | recall |");
    println!("|----------|----------:|---------------:|----------:|-------:|");
    for builtin in BUILTINS {
        let s = score(builtin.name);
        let precision = s.tp as f64 / (s.tp + s.fp).max(1) as f64;
        let recall = s.tp as f64 / s.positives.max(1) as f64;
        println!("| `{}` | {} | {} | {:.3} | {:.3} |", builtin.name, s.positives, s.negatives, precision, recall);
        assert!(precision >= 0.85, "{}: precision {precision:.3} (fp {})", builtin.name, s.fp);
        assert!(recall >= 0.85, "{}: recall {recall:.3} (fn {})", builtin.name, s.fn_);
    }
}

/// Reference semantics without the prefilter: each detector's regex over the whole text, the
/// same validators and the same precedence. The prefilter must change nothing.
#[test]
fn the_prefilter_loses_nothing() {
    let names: Vec<&str> = BUILTINS.iter().map(|b| b.name).collect();
    let all = Matcher::Detectors(Detectors::new(&names).unwrap());
    let mut texts: Vec<String> = Vec::new();
    for builtin in BUILTINS {
        texts.extend(load(builtin.name).into_iter().map(|c| c.text));
    }
    texts.extend(load("common").into_iter().map(|c| c.text));
    // Everything in one text too: runs, words and windows across cases.
    let joined = texts.join(" ");
    texts.push(joined);
    let slow = Detectors::new(&names).unwrap();
    for text in &texts {
        let fast = find(&all, text);
        let reference = slow.find_all_without_prefilter(text.as_bytes());
        let reference: Vec<(usize, usize)> = reference.iter().map(|f| (f.start, f.end)).collect();
        assert_eq!(fast, reference, "{text:?}");
    }
}

/// The guardrails split a text once for all the checks that scan it: a PII set, which needs no
/// weak starts, then a secrets set, which does, share one split made with them. Each must find
/// what its own reference finds, on the corpus and on words of the corpus shuffled together.
#[test]
fn a_shared_split_loses_nothing() {
    let sets: Vec<Vec<&str>> = ["pii", "secrets"].iter().map(|g| detect::expand(g).unwrap()).collect();
    let fast: Vec<Matcher> = sets.iter().map(|names| Matcher::Detectors(Detectors::new(names).unwrap())).collect();
    let slow: Vec<Detectors> = sets.iter().map(|names| Detectors::new(names).unwrap()).collect();
    assert!(!fast[0].needs_weak_starts() && fast[1].needs_weak_starts());
    let mut texts: Vec<String> = Vec::new();
    for builtin in BUILTINS {
        texts.extend(load(builtin.name).into_iter().map(|c| c.text));
    }
    texts.extend(load("common").into_iter().map(|c| c.text));
    let words: Vec<String> = texts.iter().flat_map(|t| t.split(' ')).map(str::to_string).collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..400 {
        let mut mixed = Vec::new();
        for _ in 0..24 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            mixed.push(words[(seed % words.len() as u64) as usize].as_str());
        }
        texts.push(mixed.join(if seed & 1 == 0 { " " } else { "\n" }));
    }
    for text in &texts {
        let mut shared = Words::new(true);
        for (matcher, reference) in fast.iter().zip(&slow) {
            let mut found: Vec<Found> = Vec::new();
            matcher.find_all_in(text.as_bytes(), 0, &mut found, &mut shared);
            let found: Vec<(usize, usize)> = found.iter().map(|f| (f.start, f.end)).collect();
            let expected: Vec<(usize, usize)> =
                reference.find_all_without_prefilter(text.as_bytes()).iter().map(|f| (f.start, f.end)).collect();
            assert_eq!(found, expected, "{text:?}");
        }
    }
}

#[test]
#[ignore]
fn show_errors() {
    for name in ["email", "google_api_key", "ipv4", "ipv6"] {
        let matcher = Matcher::Detectors(Detectors::new(&[name]).unwrap());
        let mut cases = load(name);
        cases.extend(load("common"));
        for case in &cases {
            let found = find(&matcher, &case.text);
            for f in found.iter().filter(|f| !case.expected.contains(f)) {
                println!("{name} FP {:?} in {:?}", &case.text[f.0..f.1], case.text);
            }
            for e in case.expected.iter().filter(|e| !found.contains(e)) {
                println!("{name} FN {:?} in {:?}", &case.text[e.0..e.1], case.text);
            }
        }
    }
}

/// One hand-labelled line of `multilingual.txt`: the text, and each finding's span and detector.
struct Labelled {
    text: String,
    findings: Vec<(usize, usize, String)>,
}

fn multilingual() -> Vec<Labelled> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/guardrails/corpus/multilingual.txt");
    let content = std::fs::read_to_string(&path).unwrap();
    let mut lines = Vec::new();
    for line in content.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (label, raw) = line.split_at(2);
        let mut text = String::new();
        let mut findings = Vec::new();
        let mut at = 0;
        while let Some(open) = raw[at..].find("[[") {
            let open = at + open;
            let close = open + raw[open..].find("]]").expect("closed marker");
            text.push_str(&raw[at..open]);
            let (detector, value) = raw[open + 2..close].split_once(':').expect("[[detector:value]]");
            let start = text.len();
            text.push_str(value);
            findings.push((start, text.len(), detector.to_string()));
            at = close + 2;
        }
        text.push_str(&raw[at..]);
        assert_eq!(label == "+ ", !findings.is_empty(), "{line}");
        lines.push(Labelled { text, findings });
    }
    lines
}

/// Every detector at once on text in many scripts: exactly the labelled findings, by name. Text
/// written without spaces must not run into a finding (`連絡先：taro@…`).
#[test]
fn the_multilingual_corpus_is_found_exactly() {
    let names: Vec<&str> = BUILTINS.iter().map(|b| b.name).collect();
    let all = Matcher::Detectors(Detectors::new(&names).unwrap());
    let lines = multilingual();
    assert!(lines.len() >= 40);
    for line in &lines {
        let mut found: Vec<Found> = Vec::new();
        all.find_all(line.text.as_bytes(), 0, &mut found);
        let labels = all.labels();
        let got: Vec<(usize, usize, String)> =
            found.iter().map(|f| (f.start, f.end, labels[usize::from(f.label)].name.clone())).collect();
        assert_eq!(got, line.findings, "{}", line.text);
    }
}
