use super::*;
use crate::sse::SseFramer;
use proptest::prelude::*;

const CHAT: &[u8] = include_bytes!("../../tests/fixtures/openai/chat_stream.sse");
const ANTHROPIC: &[u8] = include_bytes!("../../tests/fixtures/anthropic/messages_stream.sse");
const RESPONSES: &[u8] = include_bytes!("../../tests/fixtures/openai/responses_stream.sse");

fn streams() -> [(Api, &'static [u8]); 3] {
    [(Api::OpenAiChat, CHAT), (Api::AnthropicMessages, ANTHROPIC), (Api::OpenAiResponses, RESPONSES)]
}

/// Feeds `stream` in chunks ending at `cuts`, asking `more` when the allowance runs out.
fn run(
    api: Api,
    stream: &[u8],
    cuts: &[usize],
    allowed: u64,
    more: &mut dyn FnMut(u64) -> Option<u64>,
) -> (Vec<u8>, StreamCut) {
    let mut cutter = StreamCut::new(api, "gpt-4o-mini", allowed, 1 << 20, false);
    let mut out = Vec::new();
    let mut from = 0;
    for &to in cuts.iter().chain(std::iter::once(&stream.len())) {
        let to = to.clamp(from, stream.len());
        out.extend(cutter.feed(&stream[from..to], more));
        from = to;
    }
    out.extend(cutter.finish());
    out.extend(cutter.at_the_providers_end(0, 0));
    (out, cutter)
}

fn events(api: Api, bytes: &[u8]) -> Vec<(String, crate::dialect::EventFacts, Vec<u8>)> {
    let mut framer = SseFramer::new(1 << 20);
    let (mut events, mut issues) = (Vec::new(), Vec::new());
    framer.feed(bytes, &mut events, &mut issues);
    framer.finish(&mut events);
    assert!(issues.is_empty(), "{issues:?}");
    events.into_iter().map(|e| (e.event.clone(), api.read_event(&e), e.data)).collect()
}

fn text(api: Api, bytes: &[u8]) -> String {
    events(api, bytes).into_iter().map(|(_, facts, _)| facts.text).collect()
}

#[test]
fn a_stream_within_its_allowance_passes_byte_for_byte() {
    for (api, stream) in streams() {
        let (out, cutter) = run(api, stream, &[7, 100, 101, 400], 1_000, &mut |_| None);
        assert_eq!(out, stream, "{api:?}");
        assert!(!cutter.is_cut());
        assert!(cutter.output_tokens() > 0, "{api:?}: the text was counted");
    }
}

#[test]
fn a_stream_that_may_grow_passes_byte_for_byte_and_asks_for_each_step() {
    for (api, stream) in streams() {
        let mut asked = Vec::new();
        let (out, cutter) = run(api, stream, &[], 1, &mut |needed| {
            asked.push(needed);
            Some(needed)
        });
        assert_eq!(out, stream, "{api:?}");
        assert_eq!(asked.last().copied(), Some(cutter.output_tokens()), "{api:?}");
    }
}

#[test]
fn a_stream_past_its_allowance_ends_at_an_event_boundary_the_way_the_provider_ends_one() {
    for (api, stream) in streams() {
        let (out, mut cutter) = run(api, stream, &[3, 50, 333], 2, &mut |_| None);
        assert!(cutter.is_cut(), "{api:?}");
        let ending = match api {
            Api::OpenAiChat => "length",
            Api::AnthropicMessages => "max_tokens",
            _ => "max_output_tokens",
        };
        let read = events(api, &out);
        assert!(read.last().is_some_and(|(_, facts, _)| facts.terminal), "{api:?}: the client sees its stream end");
        let all = String::from_utf8(out.clone()).unwrap();
        assert!(all.contains(ending), "{api:?}: {all}");
        // What went out before the ending is the provider's stream up to an event boundary,
        // then a short ending of the dialect's own events.
        let original = events(api, stream);
        let kept = read.iter().zip(&original).take_while(|(a, b)| (&a.0, &a.2) == (&b.0, &b.2)).count();
        let ending_events = match api {
            Api::OpenAiChat => 2,
            Api::AnthropicMessages => 3,
            // The open text's .done, its part's, its item's, then response.incomplete.
            _ => 4,
        };
        assert!(read.len() - kept <= ending_events, "{api:?}: {all}");
        assert!(String::from_utf8_lossy(&read[kept..].iter().flat_map(|e| e.2.clone()).collect::<Vec<u8>>())
            .contains(ending));
        assert!(crate::tokenizer::for_model("gpt-4o-mini").count(&text(api, &out)) <= 2 + 1, "{api:?}");
        assert!(cutter.feed(b"data: more\n\n", &mut |_| Some(u64::MAX)).is_empty(), "after the cut nothing passes");
    }
}

#[test]
fn the_chat_ending_names_every_choice_and_keeps_the_providers_id() {
    let (out, _) = run(Api::OpenAiChat, CHAT, &[], 1, &mut |_| None);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains(r#""id":"chatcmpl-BzK2""#), "{text}");
    assert!(text.contains(r#""finish_reason":"length""#), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
}

#[test]
fn the_anthropic_ending_closes_the_open_block() {
    let (out, _) = run(Api::AnthropicMessages, ANTHROPIC, &[], 5, &mut |_| None);
    let names: Vec<String> = events(Api::AnthropicMessages, &out).into_iter().map(|(name, _, _)| name).collect();
    let tail: Vec<&str> = names.iter().rev().take(3).rev().map(String::as_str).collect();
    assert_eq!(tail, ["content_block_stop", "message_delta", "message_stop"], "{names:?}");
}

proptest! {
    /// Identity over arbitrary Unicode text and chunking: a stream within its allowance is
    /// the provider's bytes.
    #[test]
    fn any_text_in_any_chunks_passes_unchanged(texts in proptest::collection::vec("\\PC{0,12}", 1..8), cuts in proptest::collection::vec(0usize..2000, 0..6)) {
        let mut stream = Vec::new();
        for text in &texts {
            let chunk = serde_json::json!({"id": "c", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]});
            write_event(&mut stream, "", chunk.to_string().as_bytes());
        }
        write_event(&mut stream, "", b"[DONE]");
        let mut cuts = cuts;
        cuts.sort_unstable();
        let (out, cutter) = run(Api::OpenAiChat, &stream, &cuts, u64::MAX, &mut |_| None);
        prop_assert_eq!(out, stream);
        prop_assert!(!cutter.is_cut());
    }

    /// Cut anywhere, the text that went out is a prefix of the provider's, within the allowance.
    #[test]
    fn a_cut_stream_carries_a_prefix_of_the_text_within_the_allowance(texts in proptest::collection::vec("\\PC{1,12}", 1..8), allowed in 0u64..20) {
        let mut stream = Vec::new();
        for text in &texts {
            let chunk = serde_json::json!({"id": "c", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]});
            write_event(&mut stream, "", chunk.to_string().as_bytes());
        }
        write_event(&mut stream, "", b"[DONE]");
        let (out, cutter) = run(Api::OpenAiChat, &stream, &[], allowed, &mut |_| None);
        let sent = text(Api::OpenAiChat, &out);
        prop_assert!(texts.concat().starts_with(&sent));
        prop_assert!(cutter.output_tokens() <= allowed);
        prop_assert!(events(Api::OpenAiChat, &out).last().is_some_and(|(_, facts, _)| facts.terminal));
    }
}

#[test]
fn a_cut_responses_stream_closes_its_item_with_the_text_sent_so_far() {
    let (out, _) = run(Api::OpenAiResponses, RESPONSES, &[], 3, &mut |_| None);
    let read = events(Api::OpenAiResponses, &out);
    let names: Vec<&str> = read.iter().map(|(name, _, _)| name.as_str()).collect();
    let tail = &names[names.len() - 4..];
    assert_eq!(
        tail,
        ["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.incomplete"]
    );
    let sent = text(Api::OpenAiResponses, &out);
    let last: serde_json::Value = serde_json::from_slice(&read.last().unwrap().2).unwrap();
    assert_eq!(last["response"]["output"][0]["content"][0]["text"], sent.as_str());
    assert_eq!(last["response"]["output"][0]["status"], "incomplete");
    let done: serde_json::Value = serde_json::from_slice(&read[read.len() - 4].2).unwrap();
    assert_eq!(done["text"], sent.as_str());
    let numbers: Vec<u64> = read
        .iter()
        .map(|(_, _, data)| {
            serde_json::from_slice::<serde_json::Value>(data).unwrap()["sequence_number"].as_u64().unwrap()
        })
        .collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "sequence numbers run on: {numbers:?}");
}

#[test]
fn a_cut_chat_stream_whose_client_asked_for_usage_ends_with_it() {
    let mut cutter = StreamCut::new(Api::OpenAiChat, "gpt-4o-mini", 1, 1 << 20, true);
    let mut out = cutter.feed(CHAT, &mut |_| None);
    assert!(!String::from_utf8_lossy(&out).contains("[DONE]"), "[DONE] waits for the usage");
    out.extend(cutter.at_the_providers_end(41, 60));
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains(r#""choices":[],"usage":{"completion_tokens":60,"prompt_tokens":41,"total_tokens":101}"#),
        "{text}"
    );
    assert!(text.trim_end().ends_with("data: [DONE]"));
}

#[test]
fn a_cut_chat_stream_ends_at_the_providers_end_so_its_client_stays_until_the_usage_is_read() {
    // OpenAI's Python SDK closes the connection at `[DONE]`: before the provider's end, Envoy
    // would reset the provider's stream and its usage would never be read.
    let mut cutter = StreamCut::new(Api::OpenAiChat, "gpt-4o-mini", 1, 1 << 20, false);
    let out = String::from_utf8(cutter.feed(CHAT, &mut |_| None)).unwrap();
    assert!(out.contains(r#""finish_reason":"length""#), "{out}");
    assert!(!out.contains("[DONE]"), "{out}");
    let end = String::from_utf8(cutter.at_the_providers_end(41, 60)).unwrap();
    assert_eq!(end, "data: [DONE]\n\n", "no usage chunk: the client did not ask for it");
    let not_cut = StreamCut::new(Api::OpenAiChat, "gpt-4o-mini", 1_000, 1 << 20, false);
    assert!(not_cut.at_the_providers_end(41, 60).is_empty(), "a stream not cut has its own [DONE]");
    for api in [Api::AnthropicMessages, Api::OpenAiResponses] {
        let mut cutter = StreamCut::new(api, "gpt-4o-mini", 1, 1 << 20, false);
        cutter.feed(if api == Api::AnthropicMessages { ANTHROPIC } else { RESPONSES }, &mut |_| None);
        assert!(cutter.is_cut());
        assert!(cutter.at_the_providers_end(41, 60).is_empty(), "{api:?}: its SDK reads to the end anyway");
    }
}
