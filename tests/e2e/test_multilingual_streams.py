"""Streamed answers reach the client whole, in every script, through the shipped envoy/envoy.yaml
(whose `privacy` guardrail policy holds streamed text back while it may still become an email,
card, IBAN or key).

The oracle is identity: the mock echoes the user's text (`x-mock-reply: echo`) in deltas of a few
bytes (`x-mock-delta-bytes`, never inside a character), so the official SDKs' stream
accumulators must hand back exactly the text that was sent. With an email address in it, the
provider sees the pseudonym and the client still gets exactly its original text (issue 16).
"""

from __future__ import annotations

import json

import pytest

from conftest import mock_last
from sdk_apis import ECHO, GENERATING_APIS

TEXTS = {
    "german": "Grüße aus München, schön! Ende.",
    "japanese": "東京の天気は晴れです。明日も良い一日になりますように。",
    "russian": "Привет из Москвы! Погода сегодня отличная, ёлки зелёные.",
    "hindi": "नमस्ते दुनिया, आज मौसम बहुत अच्छा है। धन्यवाद!",
    "emoji": "Family 👩‍👩‍👧 and 👨‍👩‍👧‍👦, flags 🇩🇪🇯🇵, thumbs 👍🏽 done.",
    "arabic": "مرحبا بالعالم! الطقس اليوم جميل جدا، شكرا.",
    "french-email": "Écrivez à jeanne.dupont@exemple.fr avant vendredi : « très urgent », merci !",
}
EMAIL = "jeanne.dupont@exemple.fr"
DELTA_BYTES = ["1", "2", "3", "5", "7"]


@pytest.mark.parametrize("delta_bytes", DELTA_BYTES)
@pytest.mark.parametrize("language", list(TEXTS))
@pytest.mark.parametrize("api", GENERATING_APIS, ids=lambda api: api.name)
def test_a_streamed_answer_is_exactly_the_text_that_was_sent(envoy, mock, api, language, delta_bytes):
    text = TEXTS[language]
    received = api(envoy.base_url).stream(text, {**ECHO, "x-mock-delta-bytes": delta_bytes})
    assert received == text
    if EMAIL in text:
        sent = api.sent_text(json.loads(mock_last(mock)["body"]))
        assert sent == text.replace(EMAIL, "[EMAIL_1]"), "the provider saw the pseudonym"
