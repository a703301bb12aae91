"""llm.yml: strict, no key in the file, a budget required, errors naming file, key and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from evolution.errors import ConfigError
from runtime.llm_config import api_keys, load_llm_config, parse_llm_config

GOOD = """
models:
  - endpoint: http://127.0.0.1:11434/v1
    model: qwen2.5-coder
  - name: hosted
    endpoint: https://api.example.com/v1
    model: gpt-x
    api_key_env: EXAMPLE_KEY
    price_in: 0.5
    price_out: 1.5
budget_money: 2.0
max_requests: 40
cache: cache/llm.sqlite
"""


def test_a_good_file(tmp_path: Path) -> None:
    path = tmp_path / "llm.yml"
    path.write_text(GOOD)
    config = load_llm_config(path)
    assert [m.arm for m in config.models] == ["qwen2.5-coder", "hosted"]
    assert config.models[0].url == "http://127.0.0.1:11434/v1/chat/completions"
    assert config.limits.money == 2.0 and config.limits.requests == 40 and config.by_money
    assert config.cache == str(tmp_path / "cache" / "llm.sqlite")
    assert api_keys(config, {"EXAMPLE_KEY": "sk-1"}, str(path)) == {"hosted": "sk-1"}


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("models: []\nmax_requests: 1\n", ["key 'models'", "at least 1"]),
        (GOOD.replace("max_requests: 40\n", "").replace("budget_money: 2.0\n", ""), ["no budget"]),
        (
            GOOD.replace("model: gpt-x", "model: gpt-x\n    api_key: sk-secret"),
            ["models.1.api_key", "remove it"],
        ),
        (GOOD.replace("https://api.example.com/v1", "api.example.com"), ["models.1.endpoint"]),
        (GOOD.replace("EXAMPLE_KEY", "not a name"), ["models.1.api_key_env"]),
        (GOOD.replace("name: hosted", "name: qwen2.5-coder"), ["named 'qwen2.5-coder'"]),
        (
            GOOD.replace("price_in: 0.5", "price_in: 0").replace("price_out: 1.5", "price_out: 0"),
            ["no model has price"],
        ),
        ("models: [\n", ["not valid YAML"]),
        ("- a\n", ["expected a mapping"]),
    ],
)
def test_bad_files_name_the_file_the_key_and_the_fix(text: str, needles: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_llm_config(text, "llm.yml")
    message = str(caught.value)
    assert message.startswith("llm.yml:")
    for needle in needles:
        assert needle in message


def test_an_unset_key_variable_is_named(tmp_path: Path) -> None:
    config = parse_llm_config(GOOD, "llm.yml")
    with pytest.raises(ConfigError, match="EXAMPLE_KEY is not set") as caught:
        api_keys(config, {}, "llm.yml")
    assert "models.1.api_key_env" in str(caught.value)


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_llm_config(tmp_path / "nope.yml")
