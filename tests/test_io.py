"""dgflow.io: the one atomic write, and the digest of models' state."""
import pytest
import torch
from torch import nn

from dgflow.io import atomic_write, state_digest


def test_atomic_write_leaves_the_old_file_and_no_temporary_when_the_writer_fails(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")

    def fail(fh):
        fh.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, fail)
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]
    atomic_write(path, lambda fh: fh.write(b"new"))
    assert path.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_state_digest_changes_with_any_parameter_or_buffer_and_sees_through_closures():
    net = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    a = state_digest(net)
    assert state_digest(lambda x: net(x)) == a and len(a) == 64
    with torch.no_grad():
        net[0].weight[0, 0] += 1e-6
    b = state_digest(net)
    net[1].running_mean[1] = 0.5
    c = state_digest(net)
    assert len({a, b, c}) == 3
    assert state_digest(lambda x: x) == state_digest()
