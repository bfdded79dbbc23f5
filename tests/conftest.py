import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tiny matmuls gain nothing from threads, and on a busy 2-core machine threads wait on each other."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
