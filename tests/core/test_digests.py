"""``file_sha256``: the one file hash (the weights download and ``FileDigests`` both use it)."""

from __future__ import annotations

import hashlib

from samlit.core import digests


def test_file_sha256_is_the_sha256_of_the_content_read_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(digests, "CHUNK", 7)  # several chunks and a short last one
    payload = bytes(range(256)) * 3
    (tmp_path / "w.pth").write_bytes(payload)
    assert digests.file_sha256(tmp_path / "w.pth") == hashlib.sha256(payload).hexdigest()
    assert digests.file_sha256(str(tmp_path / "w.pth")) == hashlib.sha256(payload).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert digests.file_sha256(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


def test_file_digests_hash_an_edited_file_again(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"one")
    known = digests.FileDigests(tmp_path / "index.json")
    assert known.digest(path) == hashlib.sha256(b"one").hexdigest()
    path.write_bytes(b"two!")
    assert known.digest(path) == hashlib.sha256(b"two!").hexdigest()
