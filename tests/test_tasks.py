"""Embedded datasets (shapes, determinism) and the checksummed, atomic download helper."""

import hashlib

import numpy as np
import pytest
import torch

from lyapbook.tasks import DownloadError, char_data, check_dataset, digits_data, fetch, four_sine, lorenz96_data


def test_character_windows_predict_the_next_character():
    data = char_data(seq_len=20, max_chars=20_000)
    again = char_data(seq_len=20, max_chars=20_000)
    assert data.train.x.shape[1] == 20 and data.train.x.dtype == torch.int64
    assert len(data.train) + len(data.validation) + len(data.test) == 20_000 // 21
    assert torch.equal(data.train.x, again.train.x) and torch.equal(data.test.y, again.test.y)
    assert data.train.y.shape == data.train.x.shape and torch.equal(data.train.y[:, :-1], data.train.x[:, 1:])
    text = data.decode(data.train.x[0]) + data.decode(data.train.y[0, -1:])
    from lyapbook.tasks.data import _pydoc_text

    assert text in _pydoc_text()[:20_000]
    last = char_data(seq_len=20, max_chars=20_000, targets="last")
    assert last.train.y.shape == (len(last.train),) and torch.equal(last.train.y, data.train.y[:, -1])
    with pytest.raises(ValueError, match="targets must be 'all'"):
        char_data(seq_len=20, targets="next")


def test_lorenz96_signal_is_normalised_and_shifted_by_one_step():
    train, validation, test = lorenz96_data(sequences=20, seq_len=30)
    assert train.x.shape == (16, 30, 20) and len(validation) == 2 and len(test) == 2
    assert torch.equal(train.x[:, 1:], train.y[:, :-1])
    everything = torch.cat([s.x for s in (train, validation, test)])
    assert everything.mean().abs() < 0.2 and (everything.std() - 1).abs() < 0.2


@pytest.mark.parametrize("mode, shape", [("rows", (8, 8)), ("pixels", (64, 1))])
def test_digits_as_sequences(mode, shape):
    train, validation, test = digits_data(mode)
    assert train.x.shape[1:] == shape and len(train) + len(validation) + len(test) == 1797
    assert set(train.y.tolist()) == set(range(10)) and 0.0 <= train.x.min() and train.x.max() <= 1.0
    assert torch.equal(train.x, digits_data(mode)[0].x)


def test_pixel_order_is_one_fixed_permutation_of_the_rows():
    rows, pixels = digits_data("rows")[0], digits_data("pixels")[0]
    assert torch.equal(rows.x.reshape(-1, 64).sort(dim=1).values, pixels.x.squeeze(-1).sort(dim=1).values)


def test_four_sine_follows_the_dissertation():
    t, f, info = four_sine(3)
    assert t.shape == f.shape == (1200,) and t[1] - t[0] == pytest.approx(0.1)
    assert all(1 <= w <= 6 for w in info["frequencies"]) and all(1 <= a <= 11 for a in info["amplitudes"])
    assert f.abs().max() <= sum(info["amplitudes"])
    assert not torch.equal(f, four_sine(4)[1])


def test_unknown_datasets_are_named():
    with pytest.raises(ValueError, match="dataset: 'shakespeare' is not available for the characters task"):
        check_dataset("characters", "shakespeare")
    with pytest.raises(ValueError, match="task: unknown 'speech'"):
        check_dataset("speech", "x")
    with pytest.raises(ValueError, match="mode must be 'rows' or 'pixels'"):
        digits_data("columns")


def test_download_verifies_the_checksum_and_keeps_nothing_on_mismatch(tmp_path):
    source = tmp_path / "served.txt"
    source.write_bytes(b"tangent vectors\n" * 100)
    good = hashlib.sha256(source.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="nothing was kept"):
        fetch(source.as_uri(), "data.txt", "0" * 64, folder=cache)
    assert list(cache.iterdir()) == []
    path = fetch(source.as_uri(), "data.txt", good, folder=cache)
    assert path.read_bytes() == source.read_bytes()
    source.unlink()  # the second call is served from the cache
    assert fetch(source.as_uri(), "data.txt", good, folder=cache) == path
    path.write_bytes(b"tampered")
    with pytest.raises(DownloadError, match="delete it and download again"):
        fetch(source.as_uri(), "data.txt", good, folder=cache)


def test_download_failure_says_what_to_do(tmp_path):
    with pytest.raises(DownloadError, match="data.txt is not in the cache and could not download .*place it at .*data.txt"):
        fetch((tmp_path / "missing.txt").as_uri(), "data.txt", "0" * 64, folder=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_offline_a_missing_file_is_refused_at_once_naming_it(tmp_path, monkeypatch):
    from lyapbook.tasks import fetch_recorded

    source = tmp_path / "served.txt"
    source.write_text("text")  # reachable, but offline means: do not try
    monkeypatch.setenv("LYAPBOOK_OFFLINE", "1")
    with pytest.raises(DownloadError, match="data.txt is not in the cache and LYAPBOOK_OFFLINE is set.*place it at"):
        fetch(source.as_uri(), "data.txt", "0" * 64, folder=tmp_path / "cache")
    with pytest.raises(DownloadError, match="book.txt is not in the cache and LYAPBOOK_OFFLINE is set"):
        fetch_recorded(source.as_uri(), "book.txt", folder=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_the_papers_four_sine_target():
    from lyapbook.tasks import four_sine_paper

    t, f, info = four_sine_paper(3, points=2400)
    assert all(1 <= a <= 10 for a in info["amplitudes"]) and all(1 <= w <= 5 for w in info["frequencies"])
    # One period is 1200 points (the fundamental pi/60 rad per unit time at dt = 0.1) and spans [-1, 1] exactly.
    assert torch.allclose(f[:1200], f[1200:], atol=1e-9)
    assert f[:1200].max().item() == pytest.approx(1.0) and f[:1200].min().item() == pytest.approx(-1.0)
    A, F = np.array(info["amplitudes"]), np.array(info["frequencies"])
    raw = (np.sin(np.pi * F[:, None] * t.numpy()[None] / 60) / A[:, None]).sum(0)
    assert np.allclose(np.corrcoef(raw, f.numpy())[0, 1], 1.0)  # an affine image of the formula


def test_stream_pieces_cut_the_concatenated_sequences():
    from lyapbook.tasks.data import stream_pieces

    x = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)  # 10 steps of 3 features
    pieces = stream_pieces(x, 3, 3, seed=0)
    stream = x.reshape(-1, 3)
    start = int((stream == pieces[0, 0]).all(1).nonzero()[0])
    assert pieces.shape == (3, 3, 3) and torch.equal(pieces.reshape(-1, 3), torch.roll(stream, -start, 0)[:9])
    with pytest.raises(ValueError, match="exceed the 10 steps"):
        stream_pieces(x, 4, 3, seed=0)


def write_idx(path, array):
    """A gzipped IDX file as MNIST ships them: magic (0, 0, 8=uint8, dims), big-endian sizes, data."""
    import gzip

    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype("uint8").tobytes())


def test_mnist_loader_parses_idx_files_and_pins_checksums(tmp_path):
    import numpy as np

    from lyapbook.tasks.data import MNIST_SHA256

    served = tmp_path / "served"
    served.mkdir()
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (50, 28, 28)),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, 50),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (7, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, 7),
    }
    checksums = {}
    for name, array in arrays.items():
        write_idx(served / name, array)
        checksums[name] = hashlib.sha256((served / name).read_bytes()).hexdigest()
    base = served.as_uri() + "/"
    train, validation, test = digits_data("rows", dataset="mnist", base_url=base, checksums=checksums, folder=tmp_path / "cache")
    assert (len(train), len(validation), len(test)) == (45, 5, 7)
    assert torch.allclose(test.x[0], torch.tensor(arrays["t10k-images-idx3-ubyte.gz"][0] / 255.0, dtype=torch.float32))
    pixels = digits_data("pixels", dataset="mnist", base_url=base, checksums=checksums, folder=tmp_path / "cache")[2]
    assert pixels.x.shape == (7, 784, 1) and torch.equal(pixels.y, test.y)
    assert set(MNIST_SHA256) == set(arrays) and all(len(v) == 64 for v in MNIST_SHA256.values())
    with pytest.raises(DownloadError, match="nothing was kept"):  # the real pins refuse the fake files
        digits_data("rows", dataset="mnist", base_url=base, folder=tmp_path / "other")


def test_war_and_peace_is_recorded_on_first_download_and_verified_after(tmp_path):
    served = tmp_path / "pg2600.txt"
    served.write_text("header\n*** START OF THE BOOK ***\n" + "Well, Prince, so Genoa and Lucca. " * 200 + "\n*** END OF THE BOOK ***\nfooter")
    cache = tmp_path / "cache"
    data = char_data("war_and_peace", seq_len=20, url=served.as_uri(), folder=cache)
    # Only the body between the START and END markers is kept: 'f', 'h' and 't' occur only outside it.
    assert not {"f", "h", "t"} & set(data.vocabulary) and set(data.vocabulary) == set("Well, Prince, so Genoa and Lucca. \n")
    assert (cache / "war_and_peace_pg2600.txt.sha256").is_file()
    (cache / "war_and_peace_pg2600.txt").write_text("changed")
    with pytest.raises(DownloadError, match="delete it and download again"):
        char_data("war_and_peace", seq_len=20, url=served.as_uri(), folder=cache)


def _amc(frames, rng):
    """A small AMC file: a root with 6 channels, one bone that never moves, one with 3 moving channels."""
    lines = ["#!OML:ASF test", ":FULLY-SPECIFIED", ":DEGREES"]
    for frame in range(1, frames + 1):
        lines.append(str(frame))
        lines.append("root " + " ".join(f"{v:.4f}" for v in rng.normal(size=6)))
        lines.append("lfingers 7.125")
        lines.append("lhumerus " + " ".join(f"{v:.4f}" for v in rng.normal(size=3)))
    return "\n".join(lines) + "\n"


def test_mocap_trials_are_parsed_filtered_normalised_and_verified(tmp_path):
    import numpy as np

    from lyapbook.tasks import mocap_data, parse_amc

    rng = np.random.default_rng(0)
    served = tmp_path / "served"
    served.mkdir()
    for name in ("09_01", "09_02"):
        (served / f"{name}.amc").write_text(_amc(250, rng))
    template = served.as_uri() + "/{subject}_{trial}.amc"
    assert parse_amc((served / "09_01.amc").read_text()).shape == (250, 10)
    cache = tmp_path / "cache"
    train, validation, test = mocap_data(["09_01", "09_02"], features=8, seq_len=20, url_template=template, folder=cache)
    windows = len(train) + len(validation) + len(test)
    assert windows == 2 * (250 // 21) and train.x.shape[1:] == (20, 8)
    assert torch.equal(train.x[:, 1:], train.y[:, :-1])
    # The constant channel (the fingers) is dropped, so 9 channels vary and 8 are kept, normalised.
    everything = torch.cat([s.x.reshape(-1, 8) for s in (train, validation, test)])
    assert everything.std(0).min() > 0.8 and everything.mean(0).abs().max() < 0.2
    with pytest.raises(ValueError, match="features: only 9 channels vary"):
        mocap_data(["09_01"], features=20, seq_len=20, url_template=template, folder=cache)
    # A changed file on the server does not matter; a changed cached copy is refused.
    (cache / "cmu_mocap_09_01.amc").write_text(_amc(250, rng))
    with pytest.raises(DownloadError):
        mocap_data(["09_01"], features=8, seq_len=20, url_template=template, folder=cache)
    with pytest.raises(ValueError, match="trials: name the CMU trials"):
        mocap_data([])
    with pytest.raises(ValueError, match="'walking' is not a CMU trial id"):
        mocap_data(["walking"], folder=cache)
    with pytest.raises(ValueError, match="AMC line 2 is neither"):
        parse_amc("1\nroot one two\n")


def test_cache_files_are_written_whole_or_not_at_all(tmp_path):
    import threading

    import joblib

    from lyapbook.tasks.download import dump_atomically

    target = tmp_path / "sub" / "value.pkl"
    dump_atomically({"a": [1, 2]}, target)
    assert joblib.load(target) == {"a": [1, 2]}
    with pytest.raises(Exception):
        dump_atomically(threading.Lock(), tmp_path / "sub" / "lock.pkl")  # cannot be pickled
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["value.pkl"]
