"""The streams a guardrail block produces are accepted by the official SDKs.

The Rust test `blocked_stream_fixtures_are_current` writes what the stream guard sends when it
blocks a secret mid-stream (tests/fixtures/guardrails/sse/). Here a loopback HTTP server replays
those bytes to the real OpenAI and Anthropic Python SDKs, which must parse them to the end: no
exception, the text before the blocked value, and the stop reason a client can act on.
"""
import http.server
import pathlib
import threading

import anthropic
import openai
import pytest

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "guardrails" / "sse"


@pytest.fixture()
def replay():
    """A server on 127.0.0.1 answering every POST with the named fixture as an SSE stream."""
    state = {"body": b""}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(length)
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("content-length", str(len(state["body"])))
            self.end_headers()
            self.wfile.write(state["body"])

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def serve(name):
        state["body"] = (FIXTURES / name).read_bytes()
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    server.shutdown()
    server.server_close()


def test_openai_chat_sdk_reads_content_filter(replay):
    client = openai.OpenAI(base_url=replay("blocked-openai-chat.sse") + "/v1", api_key="sk-test", max_retries=0)
    chunks = list(client.chat.completions.create(model="m", stream=True, messages=[{"role": "user", "content": "hi"}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Your key: "
    assert chunks[-1].choices[0].finish_reason == "content_filter"


def test_anthropic_sdk_reads_a_refusal(replay):
    client = anthropic.Anthropic(base_url=replay("blocked-anthropic.sse"), api_key="sk-test", max_retries=0)
    with client.messages.stream(model="claude", max_tokens=64, messages=[{"role": "user", "content": "hi"}]) as stream:
        message = stream.get_final_message()
    assert message.stop_reason == "refusal"
    assert [block.text for block in message.content] == ["Your key: "]


def test_openai_responses_sdk_reads_an_incomplete_response(replay):
    client = openai.OpenAI(base_url=replay("blocked-openai-responses.sse") + "/v1", api_key="sk-test", max_retries=0)
    events = list(client.responses.create(model="gpt-4.1", input="hi", stream=True))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Your key: "
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "content_filter"
