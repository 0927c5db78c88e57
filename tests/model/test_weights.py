"""Official weights: the real download code against a local HTTP server; wrapped and Lightning files;
decoder-only files merged over base weights."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from samlit.core.errors import SamlitError
from samlit.model.download import download
from samlit.model.sam import build_sam
from samlit.model.weights import OFFICIAL, OfficialCheckpoint


class Server:
    """A local HTTP server over a folder that counts its GET requests."""

    def __init__(self, root: Path) -> None:
        server = self
        self.requests = 0

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):
                server.requests += 1
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(tmp_path) -> Iterator[tuple[Server, Path]]:
    root = tmp_path / "served"
    root.mkdir()
    server = Server(root)
    yield server, root
    server.close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_download_verifies_and_reuses(served, tmp_path):
    server, root = served
    payload = bytes(range(256)) * 5000
    (root / "w.pth").write_bytes(payload)
    sha = hashlib.sha256(payload).hexdigest()
    dest = tmp_path / "weights" / "w.pth"
    assert download(url=f"{server.url}/w.pth", dest=dest, sha256=sha).read_bytes() == payload
    assert server.requests == 1
    server.close()  # offline from here: a verified file is reused without the network
    assert download(url=f"{server.url}/w.pth", dest=dest, sha256=sha) == dest
    assert [p.name for p in dest.parent.iterdir()] == ["w.pth"]


def test_a_damaged_local_file_is_downloaded_again(served, tmp_path, caplog):
    server, root = served
    payload = b"the real weights" * 1000
    (root / "w.pth").write_bytes(payload)
    dest = tmp_path / "w.pth"
    dest.write_bytes(payload[:100])  # an interrupted copy by hand
    download(url=f"{server.url}/w.pth", dest=dest, sha256=hashlib.sha256(payload).hexdigest())
    assert dest.read_bytes() == payload and server.requests == 1
    assert "does not match its SHA-256" in caplog.text


def test_sha_mismatch_keeps_nothing(served, tmp_path):
    server, root = served
    (root / "w.pth").write_bytes(b"tampered")
    dest = tmp_path / "weights" / "w.pth"
    with pytest.raises(SamlitError, match=r"SHA-256 .* expected 000000000000") as err:
        download(url=f"{server.url}/w.pth", dest=dest, sha256="0" * 64)
    assert "\n" not in str(err.value)
    assert not dest.exists() and not list(dest.parent.glob("*"))  # no temp file either


def test_offline_error_says_where_to_put_the_file(tmp_path):
    url = f"{closed_port_url()}/sam_vit_b_01ec64.pth"
    dest = tmp_path / "sam_vit_b_01ec64.pth"
    with pytest.raises(SamlitError, match="cannot download") as err:
        download(url=url, dest=dest, sha256="0" * 64)
    message = str(err.value)
    assert url in message and str(dest) in message and "\n" not in message


def test_official_weights_download_then_load_strictly(served, tmp_path, monkeypatch):
    """``model.weights=official`` end to end (tiny stands in for vit_b: same code, a 20 MB file)."""
    server, root = served
    torch.manual_seed(0)
    source = build_sam(model_type="tiny")
    torch.save(source.state_dict(), root / "sam_tiny_test.pth")
    data = (root / "sam_tiny_test.pth").read_bytes()
    entry = OfficialCheckpoint("sam_tiny_test.pth", len(data), hashlib.sha256(data).hexdigest(), server.url)
    monkeypatch.setitem(OFFICIAL, "tiny", entry)
    loaded = build_sam(model_type="tiny", weights="official", weights_dir=tmp_path / "weights")
    assert (tmp_path / "weights" / "sam_tiny_test.pth").is_file()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in source.state_dict().items())


def test_official_without_an_official_file_is_an_error(tmp_path):
    with pytest.raises(SamlitError, match="no official weights for model=tiny"):
        build_sam(model_type="tiny", weights="official", weights_dir=tmp_path)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"model": sd},
        lambda sd: {"state_dict": {f"sam.{k}": v for k, v in sd.items()}, "epoch": 3},  # a Lightning .ckpt
        lambda sd: {"state_dict": {f"model.{k}": v for k, v in sd.items()}},  # another LightningModule
    ],
    ids=["model-wrapper", "lightning-sam-prefix", "lightning-model-prefix"],
)
def test_wrapped_files_load(tmp_path, wrap):
    source = build_sam(model_type="tiny")
    path = tmp_path / "wrapped.pth"
    torch.save(wrap(source.state_dict()), path)
    loaded = build_sam(model_type="tiny", weights=str(path))
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in source.state_dict().items())


def test_decoder_only_file_merges_over_base_weights(tmp_path):
    torch.manual_seed(0)
    base = build_sam(model_type="tiny")
    tuned = build_sam(model_type="tiny")
    base_path, decoder_path = tmp_path / "base.pth", tmp_path / "decoder.ckpt"
    torch.save(base.state_dict(), base_path)
    decoder = {f"sam.mask_decoder.{k}": v for k, v in tuned.mask_decoder.state_dict().items()}
    torch.save({"state_dict": decoder}, decoder_path)  # what a samlit Lightning checkpoint holds
    with pytest.raises(SamlitError, match=r"holds a mask decoder only.*model\.decoder_weights="):
        build_sam(model_type="tiny", weights=str(decoder_path))
    merged = build_sam(model_type="tiny", weights=str(base_path), decoder_weights=str(decoder_path))
    for key, value in merged.state_dict().items():
        expected = (tuned if key.startswith("mask_decoder.") else base).state_dict()[key]
        assert torch.equal(value, expected), key


def test_pickled_objects_are_refused_without_running_them(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    torch.save({"model": Exploit(str(marker))}, path)
    with pytest.raises(SamlitError, match="not a readable weights-only torch file"):
        build_sam(model_type="tiny", weights=str(path))
    assert not marker.exists()


class Exploit:
    """Unpickling this would create a file: a weights_only load must refuse it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_truncated_weights_file_is_one_clear_error(tmp_path):
    path = tmp_path / "sam_tiny.pth"
    torch.save(build_sam(model_type="tiny", weights="random").state_dict(), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(SamlitError, match="not a readable weights-only torch file") as error:
        build_sam(model_type="tiny", weights=str(path))
    assert str(path) in str(error.value) and "\n" not in str(error.value)
