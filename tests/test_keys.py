"""Key files: the format zmq.auth reads, a private secret, and errors that say what to run."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import zmq
import zmq.auth

from evolution.errors import ConfigError
from runtime.keys import generate_keypair, read_keypair, read_public, write_keypair


def test_generate_keypair_returns_a_matching_z85_pair() -> None:
    public, secret = generate_keypair()
    assert len(public) == len(secret) == 40
    assert zmq.curve_public(secret.encode()).decode() == public


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    public = write_keypair(tmp_path / "keys", "node-1")
    assert read_public(tmp_path / "keys", "node-1") == public
    pub, sec = read_keypair(tmp_path / "keys", "node-1")
    assert pub == public
    assert zmq.curve_public(sec.encode()).decode() == public
    # The files are zmq.auth certificates, readable by standard tools.
    raw_public, raw_secret = zmq.auth.load_certificate(tmp_path / "keys" / "node-1.key_secret")
    assert raw_public.decode() == public and raw_secret is not None
    mode = stat.S_IMODE((tmp_path / "keys" / "node-1.key_secret").stat().st_mode)
    assert mode == 0o600


def test_refuses_to_overwrite_a_secret_unless_forced(tmp_path: Path) -> None:
    first = write_keypair(tmp_path, "node-1")
    with pytest.raises(ConfigError) as info:
        write_keypair(tmp_path, "node-1")
    assert "node-1.key_secret" in str(info.value) and "--force" in str(info.value)
    assert read_public(tmp_path, "node-1") == first
    second = write_keypair(tmp_path, "node-1", force=True)
    assert second != first
    assert read_keypair(tmp_path, "node-1")[0] == second
    assert stat.S_IMODE((tmp_path / "node-1.key_secret").stat().st_mode) == 0o600


def test_missing_file_names_the_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        read_keypair(tmp_path, "node-9")
    assert str(tmp_path / "node-9.key_secret") in str(info.value)
    assert info.value.hint == "run `tars keys --config cluster.yml`"
    with pytest.raises(ConfigError) as info:
        read_public(tmp_path, "node-9")
    assert str(tmp_path / "node-9.key") in str(info.value)


@pytest.mark.parametrize(
    "content",
    [
        "garbage\n",
        'curve\n    public-key = "too-short"\n    secret-key = "also-short"\n',
    ],
)
def test_corrupt_file_names_the_file(tmp_path: Path, content: str) -> None:
    (tmp_path / "node-1.key_secret").write_text(content)
    with pytest.raises(ConfigError) as info:
        read_keypair(tmp_path, "node-1")
    assert str(tmp_path / "node-1.key_secret") in str(info.value)
    assert "tars keys" in str(info.value)


def test_mismatched_pair_is_corrupt(tmp_path: Path) -> None:
    write_keypair(tmp_path, "node-1")
    other_public, _ = generate_keypair()
    path = tmp_path / "node-1.key_secret"
    lines = [
        f'    public-key = "{other_public}"' if "public-key" in line else line
        for line in path.read_text().splitlines()
    ]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as info:
        read_keypair(tmp_path, "node-1")
    assert "does not match" in str(info.value)


def test_public_file_without_secret_is_refused_as_a_pair(tmp_path: Path) -> None:
    write_keypair(tmp_path, "node-1")
    (tmp_path / "node-1.key_secret").write_text((tmp_path / "node-1.key").read_text())
    with pytest.raises(ConfigError) as info:
        read_keypair(tmp_path, "node-1")
    assert "no secret key" in str(info.value)


# ---- Ed25519 signing keys (issue 9: signed decisions) ----------------------------------


def test_a_signing_key_joins_the_secret_file_and_is_never_replaced_unless_forced(
    tmp_path: Path,
) -> None:
    from runtime.keys import (
        has_sign_secret,
        read_sign_secret,
        sign_public_of,
        write_sign_keypair,
    )

    curve = write_keypair(tmp_path, "node-1")
    assert not has_sign_secret(tmp_path, "node-1")
    public = write_sign_keypair(tmp_path, "node-1")
    secret_file = tmp_path / "node-1.key_secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert "sign-secret" not in (tmp_path / "node-1.key").read_text()  # never in the public file
    assert read_keypair(tmp_path, "node-1")[0] == curve  # ZeroMQ still reads the pair
    secret = read_sign_secret(tmp_path, "node-1")
    from runtime.keys import encode_sign_key

    assert encode_sign_key(sign_public_of(secret)) == public
    with pytest.raises(ConfigError, match="refusing to replace the signing key.*--force"):
        write_sign_keypair(tmp_path, "node-1")
    assert read_sign_secret(tmp_path, "node-1") == secret
    assert write_sign_keypair(tmp_path, "node-1", force=True) != public
    assert secret_file.read_text().count("sign-secret") == 1


def test_tars_keys_records_the_public_signing_keys_and_keeps_the_file_as_written(
    tmp_path: Path,
) -> None:
    from runtime.config import ADMIN, load_cluster

    path = tmp_path / "cluster.yml"
    path.write_text(
        "# my swarm\n"
        "cluster:\n"
        "  name: mine   # a comment that must survive\n"
        "  keys: k\n"
        "nodes:\n"
        "  - id: node-1\n"
        "    port: 7101  # first\n"
        "  - {id: node-2, port: 7102}\n"
        "# the end\n"
    )
    config = load_cluster(path)
    with pytest.raises(ConfigError, match="node node-1's sign_key is missing.*tars keys"):
        config.sign_key("node-1")
    assert config.ensure_keys() == ["node-1", "node-2", ADMIN]
    text = path.read_text()
    for kept in ("# my swarm", "# a comment that must survive", "# first", "# the end"):
        assert kept in text
    assert text.count("sign_key:") == 3
    again = load_cluster(path)
    keys = again.sign_keys()
    assert keys == config.sign_keys() and len(set(keys.values())) == 3
    assert config.ensure_keys() == [] and path.read_text() == text  # nothing to do: untouched
    # a key recorded by hand that is not the secret's public key is put right
    wrong = text.replace(again.model.nodes[0].sign_key or "", "A" * 43 + "=")
    path.write_text(wrong)
    assert load_cluster(path).ensure_keys() == []
    assert load_cluster(path).sign_keys() == keys
