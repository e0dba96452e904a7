import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


class Linear(torch.nn.Module):
    """d(x) = a . x, as an nn.Module with a (frozen in tests) parameter."""

    def __init__(self, a):
        super().__init__()
        self.a = torch.nn.Parameter(torch.as_tensor(a, dtype=torch.float32))

    def forward(self, x):
        return x @ self.a


@pytest.fixture
def linear_critic():
    return Linear([0.5, -1.0, 2.0])
