//! Guardrail evasion attempts, and what the default detectors catch and miss. Each test states
//! the current behaviour, caught or not, so that a change either way is seen and the README's
//! table ("Evasion: what is caught") stays true.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests may fail loudly

use std::rc::Rc;

use serde_json::{json, Value};
use tollgate::dialect::{self, Api};
use tollgate::guardrails::{self, Guardrails, RequestInput, RequestOutcome};

const KEY: &str = "sk-proj-Zq8xV3mN7bR2tY6uK1wP4sL9dF5gH0jA";

fn privacy() -> Rc<Guardrails> {
    Rc::new(
        guardrails::parse(json!({"policies": [{"name": "privacy", "checks": [
            {"name": "secrets", "detectors": ["secrets"], "action": "block"},
            {"name": "pii", "detectors": ["pii"], "action": "block"}
        ]}]}))
        .unwrap(),
    )
}

/// A chat request's body checked as the exchange checks it.
fn check(g: &Rc<Guardrails>, body: &[u8]) -> RequestOutcome {
    let request = dialect::parse_request(Api::OpenAiChat, body).unwrap();
    let text = request.text(body).unwrap();
    g.check_request(&RequestInput::new(&request, Some(&text)))
}

fn blocked_by(g: &Rc<Guardrails>, messages: Value) -> Option<String> {
    let body = json!({"model": "gpt-4o", "messages": messages}).to_string().into_bytes();
    let outcome = check(g, &body);
    outcome.block.map(|_| outcome.decisions.iter().map(|d| d.detector.clone()).collect::<Vec<_>>().join(","))
}

fn says(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

#[test]
fn the_plain_values_are_caught() {
    let g = privacy();
    assert_eq!(blocked_by(&g, says(&format!("key {KEY}"))).as_deref(), Some("openai_key"));
    assert_eq!(blocked_by(&g, says("card 4111 1111 1111 1111")).as_deref(), Some("card"));
    assert_eq!(blocked_by(&g, says("mail jane.doe@example.com")).as_deref(), Some("email"));
}

#[test]
fn case_and_json_escapes_do_not_hide_a_value() {
    let g = privacy();
    // The body's JSON escapes are decoded before scanning: \u0040 is '@', \u002d is '-'.
    let body = r#"{"model":"m","messages":[{"role":"user","content":"jane.doe\u0040example.com and sk\u002dproj-Zq8xV3mN7bR2tY6uK1wP4sL9dF5gH0jA"}]}"#;
    let outcome = check(&g, body.as_bytes());
    assert!(outcome.block.is_some());
    let detectors: Vec<&str> = outcome.decisions.iter().map(|d| d.detector.as_str()).collect();
    assert!(detectors.contains(&"email") && detectors.contains(&"openai_key"), "{detectors:?}");
    assert_eq!(blocked_by(&g, says("JANE.DOE@EXAMPLE.COM")).as_deref(), Some("email"));
}

#[test]
fn a_value_in_any_message_or_part_is_caught() {
    let g = privacy();
    let messages = json!([
        {"role": "system", "content": "you are helpful"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
            "function": {"name": "lookup", "arguments": format!("{{\"token\": \"{KEY}\"}}")}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "done"}
    ]);
    assert_eq!(blocked_by(&g, messages).as_deref(), Some("openai_key"), "tool-call arguments are read");
}

// --- Not caught: documented limits ------------------------------------------------------------

#[test]
fn zero_width_characters_inside_a_value_hide_it() {
    let g = privacy();
    let (head, tail) = KEY.split_at(12);
    assert_eq!(blocked_by(&g, says(&format!("key {head}\u{200b}{tail}"))), None, "ZERO WIDTH SPACE splits the key");
    assert_eq!(blocked_by(&g, says("jane.doe@\u{200d}example.com")), None, "ZERO WIDTH JOINER splits the email");
}

#[test]
fn an_operator_can_refuse_zero_width_characters_outright() {
    // The documented mitigation: a deny pattern for the invisible characters (ASCII-mode regexes
    // match non-ASCII literals as their UTF-8 bytes).
    let g = Rc::new(
        guardrails::parse(json!({"policies": [{"name": "p", "checks": [
            {"name": "invisible", "deny": ["\u{200b}|\u{200c}|\u{200d}|\u{2060}|\u{feff}|\u{00ad}"], "action": "block"}
        ]}]}))
        .unwrap(),
    );
    let (head, tail) = KEY.split_at(12);
    assert_eq!(blocked_by(&g, says(&format!("key {head}\u{200b}{tail}"))).as_deref(), Some("invisible"));
    assert_eq!(blocked_by(&g, says("soft\u{00ad}hyphen")).as_deref(), Some("invisible"));
    assert_eq!(blocked_by(&g, says("plain text, accents é and emoji 🙂")), None);
}

#[test]
fn confusable_and_fullwidth_characters_hide_a_value() {
    let g = privacy();
    // Cyrillic DZE (U+0455) for 's', fullwidth digits, and a fullwidth commercial at.
    let cyrillic = KEY.replacen('s', "\u{0455}", 1);
    assert_eq!(blocked_by(&g, says(&format!("key {cyrillic}"))), None);
    assert_eq!(blocked_by(&g, says("card ４１１１ １１１１ １１１１ １１１１")), None);
    assert_eq!(blocked_by(&g, says("mail jane.doe＠example.com")), None);
}

#[test]
fn a_value_split_across_messages_or_spelled_out_is_not_caught() {
    let g = privacy();
    let (head, tail) = KEY.split_at(20);
    let split = json!([{"role": "user", "content": head}, {"role": "user", "content": tail}]);
    assert_eq!(blocked_by(&g, split), None, "each text is checked on its own");
    let parts = json!([{"role": "user", "content": [{"type": "text", "text": head}, {"type": "text", "text": tail}]}]);
    assert_eq!(blocked_by(&g, parts), None, "text parts of one message too");
    assert_eq!(blocked_by(&g, says("jane dot doe at example dot com")), None);
    assert_eq!(blocked_by(&g, says("4111-1111 1111.1111")), None, "mixed separators are not one card");
    let base64 = "c2stcHJvai1acTh4VjNtTjdiUjJ0WTZ1SzF3UDRzTDlkRjVnSDBqQQ==";
    assert_eq!(blocked_by(&g, says(base64)), None, "encodings are not decoded");
}
