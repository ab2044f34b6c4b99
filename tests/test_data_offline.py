"""keras_se.data with a TFDS catalog dataset that needs the network (none here).

No test opens a connection to the outside: the host check is replaced, or
pointed at a closed port on the loopback interface. The TFDS part lives in
keras_se.tfds_data: the tests replace its functions there, where they are called.
"""

import socket
import types

import pytest
import tensorflow_datasets as tfds

from keras_se import data as D
from keras_se import tfds_data as T


def _closed_loopback_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is


class _FakeBuilder:
    """What `_load_tfds` needs of a tfds builder that is not prepared."""

    def __init__(self, url, prepared=False, data_dir="/nowhere/tfds/fake/1.0.0"):
        self.url_infos = {url: types.SimpleNamespace(size=3 * 2**20)}
        self.data_dir = data_dir
        self._prepared = prepared
        self.downloads = 0

    def is_prepared(self):
        return self._prepared

    def download_and_prepare(self):
        self.downloads += 1
        raise AssertionError("must not be reached")


def test_unreachable_host_is_one_clear_error_before_tfds_starts(monkeypatch):
    port = _closed_loopback_port()
    fake = _FakeBuilder(f"http://127.0.0.1:{port}/data/fake.tgz")
    monkeypatch.setattr(T, "tfds_builder", lambda name, data_dir=None: fake)
    with pytest.raises(D.NeedsNetworkError) as info:
        D.load_data("fake_catalog_set", image_size=8)
    message = str(info.value)
    assert fake.downloads == 0
    assert "'fake_catalog_set' is a TensorFlow Datasets dataset that is not prepared in " \
        "/nowhere/tfds/fake/1.0.0" in message
    assert "(1 file, 3 MiB from 127.0.0.1)" in message
    assert "needs the network" in message and "ConnectionRefusedError" in message
    assert "tfds build fake_catalog_set --data_dir DIR" in message
    assert "pass --data-dir DIR" in message and message.endswith("Received: data='fake_catalog_set'")
    assert "\n" not in message
    assert isinstance(info.value, ConnectionError)


def test_real_catalog_builder_names_its_file_and_host(monkeypatch, tmp_path):
    # tf_flowers as TFDS registers it; the host check is replaced: nothing is sent.
    calls = []

    def unreachable(host, port, timeout):
        calls.append((host, port, timeout))
        return "OSError: offline (test)"

    monkeypatch.setattr(T, "_unreachable", unreachable)
    monkeypatch.setattr(
        tfds.core.DatasetBuilder, "download_and_prepare",
        lambda self, **kw: (_ for _ in ()).throw(AssertionError("TFDS must not start")),
    )
    with pytest.raises(D.NeedsNetworkError, match=r"\(1 file, 218 MiB from download.tensorflow.org\)"):
        D.load_data("tf_flowers", image_size=8, data_dir=str(tmp_path))
    assert calls == [("download.tensorflow.org", 80, T.NETWORK_TIMEOUT_S)]
    assert list(tmp_path.iterdir()) == [] or all(p.is_dir() for p in tmp_path.iterdir())


def test_prepared_dataset_skips_the_check(monkeypatch):
    fake = _FakeBuilder("http://127.0.0.1:1/x.tgz", prepared=True)
    monkeypatch.setattr(T, "tfds_builder", lambda name, data_dir=None: fake)
    monkeypatch.setattr(T, "_unreachable", lambda *a: pytest.fail("checked a prepared dataset"))
    # Past the download step, the fake has no `info`: reaching it is the point.
    with pytest.raises(AttributeError, match="info"):
        D.load_data("fake_catalog_set", image_size=8)
    assert fake.downloads == 0


def test_a_builder_without_download_urls_is_not_checked(monkeypatch):
    # A builder that generates its data locally (keras_se_builtin, test builders).
    fake = _FakeBuilder("http://127.0.0.1:1/x.tgz")
    fake.url_infos = {}
    monkeypatch.setattr(T, "tfds_builder", lambda name, data_dir=None: fake)
    monkeypatch.setattr(T, "_unreachable", lambda *a: pytest.fail("checked a local builder"))
    with pytest.raises(AssertionError, match="must not be reached"):
        D.load_data("fake_catalog_set", image_size=8)
    assert fake.downloads == 1


def test_not_prepared_and_no_download_is_bad_input(monkeypatch):
    fake = _FakeBuilder("http://127.0.0.1:1/x.tgz")
    monkeypatch.setattr(T, "tfds_builder", lambda name, data_dir=None: fake)
    with pytest.raises(ValueError, match=r"'fake_catalog_set' is not prepared in /nowhere/tfds/fake/1.0.0 "
                       r"and downloading is off; pass the --data-dir .* Received: data='fake_catalog_set'"):
        D.load_data("fake_catalog_set", image_size=8, download=False)


def test_reachable_host_lets_tfds_download(monkeypatch):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        fake = _FakeBuilder(f"https://127.0.0.1:{server.getsockname()[1]}/x.tgz")
        monkeypatch.setattr(T, "tfds_builder", lambda name, data_dir=None: fake)
        with pytest.raises(AssertionError, match="must not be reached"):
            D.load_data("fake_catalog_set", image_size=8)
    assert fake.downloads == 1


def test_unreachable_reports_a_timeout(monkeypatch):
    def hang(*args, **kwargs):
        import time

        time.sleep(5)
        raise TimeoutError("timed out")  # as the real call does, long after the answer

    monkeypatch.setattr(socket, "create_connection", hang)
    assert T._unreachable("example.invalid", 80, 0.05) == "no answer within 0.05 s"
