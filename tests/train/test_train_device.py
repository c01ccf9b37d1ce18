"""Training, resume and evaluation on every device present (CPU always, CUDA when available)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lidsplit.supernet import SubSupernet, search_space
from lidsplit.train import TrainEvent, evaluate_arch, train_subsupernet


class Stop(Exception):
    pass


def test_train_resume_evaluate_on_device(tmp_path: Path, data, make_model, device: str) -> None:  # type: ignore[no-untyped-def]
    loaders = data.loaders(16, device=device)  # data held on the device
    sub = SubSupernet.full(search_space(make_model(0))).restrict("2<-0", [1, 3])
    ref = make_model(0).to(device)
    train_subsupernet(ref, sub, loaders, 2, progress=False, seed=1)

    def boom(ev: TrainEvent) -> None:
        if ev.step == 4:
            raise Stop

    ck = tmp_path / "ck.pt"
    with pytest.raises(Stop):
        train_subsupernet(make_model(0).to(device), sub, loaders, 2, checkpoint=ck, checkpoint_every=1,
                          on_step=boom, progress=False, seed=1)
    m = make_model(3).to(device)
    r = train_subsupernet(m, sub, loaders, 2, checkpoint=ck, progress=False, seed=1)
    assert r.finished and r.resumed_from == {"epoch": 1, "batch": 1, "step": 4}
    assert all(t.device.type == device for t in m.state_dict().values())
    for (k, a), b in zip(ref.state_dict().items(), m.state_dict().values()):
        if device == "cpu":
            assert torch.equal(a, b), k
        else:  # cuDNN kernels need not be bit-reproducible
            assert torch.allclose(a.float(), b.float(), rtol=1e-3, atol=1e-4), k
    before = {k: v.clone() for k, v in m.state_dict().items()}
    res = evaluate_arch(m, (1, 3, 3, 3, 2, 4), loaders, calib_batches=2)
    assert res.n == len(data.val)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
