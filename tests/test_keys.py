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
