"""The tokenizer against the live reference and inside a real Envoy: Python tiktoken (OpenAI's
own) recomputes the committed expected counts, the `tollgate` CLI matches them file by file,
and the filter builds its tables when Envoy starts its VM, before any request."""

import importlib.util
import json
import subprocess

import pytest

from harness import REPO, release_binary

FIXTURES = REPO / "tests" / "fixtures" / "tokenizer"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
MODELS = {"o200k_base": "gpt-4o", "cl100k_base": "gpt-4"}


def test_live_tiktoken_agrees_with_the_committed_expected_counts():
    spec = importlib.util.spec_from_file_location("generate", FIXTURES / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    assert generate.expected() == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED["files"]))
@pytest.mark.parametrize("encoding", sorted(MODELS))
def test_cli_counts_each_corpus_file_exactly_as_tiktoken(name, encoding):
    text = (FIXTURES / "corpus" / name).read_bytes()
    result = subprocess.run(
        [str(release_binary("tollgate")), "count-tokens", "--model", MODELS[encoding]],
        input=text, capture_output=True, check=True,
    )
    assert result.stdout.decode() == f"{EXPECTED['files'][name][encoding]['total']} exact {encoding}\n"


def test_envoy_builds_the_token_tables_at_vm_start(start_envoy):
    envoy = start_envoy()
    assert "tollgate: token counting tables built in" in envoy.log()
