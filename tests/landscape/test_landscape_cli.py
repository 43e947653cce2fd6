"""``relucvx check`` and ``relucvx path`` as a user runs them: real processes, real files, a
checkpoint written by a real Lightning Trainer."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from cases import case_b

from lightning_relucvx import bounds
from lightning_relucvx.cli import main
from lightning_relucvx.landscape import descent_path, load_model
from lightning_relucvx.modules import TwoLayerReLU, network_from_module

CASE_A = dict(X=[[-1.0], [1.0]], y=[1.0, 0.5], beta=0.1)


def relucvx(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lightning_relucvx.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


@pytest.mark.slow
def test_check_and_path_on_npz(tmp_path):
    model = tmp_path / "model.npz"
    np.savez(model, **CASE_A, W1=[[-(0.9**0.5)]], w2=[0.9**0.5])  # objective 0.22
    out = relucvx("check", str(model), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["verdict"] == "stationary_not_global" and res["certified"]
    assert res["nonconvex_objective"] == pytest.approx(0.22)
    assert res["dual_violation"] > res["beta"]
    assert res["descent"]["u"] == pytest.approx([1.0]) and res["descent"]["decrease"] > 0

    out = relucvx("path", str(model), "--json", "p.json", "--points", "9", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert json.loads((tmp_path / "p.json").read_text()) == res
    objs = [pt["objective"] for pt in res["points"]]
    assert objs[0] == pytest.approx(0.22) and res["end_objective"] == pytest.approx(0.14)
    assert res["non_increasing"] and np.all(np.diff(objs) <= 1e-15)
    assert res["certified"]
    png = Path(res["plot"])
    assert png == tmp_path / "model.path.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_bad_input_exits_2_with_one_line(tmp_path, monkeypatch, capsys):
    np.savez(tmp_path / "neg.npz", **{**CASE_A, "beta": -1.0}, W1=[[1.0]], w2=[1.0])
    np.savez(tmp_path / "nonet.npz", **CASE_A)
    np.savez(tmp_path / "ok.npz", **CASE_A, W1=[[1.0]], w2=[1.0])
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(tmp_path / "obj.npz", "w") as zf:
        zf.write(tmp_path / "obj.npy", "X.npy")
    (tmp_path / "junk.npz").write_text("not a zip")
    torch.save({"state_dict": TwoLayerReLU(1, 2).state_dict()}, tmp_path / "m.ckpt")

    # an object that weights_only=True refuses to unpickle
    torch.save({"state_dict": {}, "when": datetime.date(2020, 1, 1)}, tmp_path / "evil.ckpt")
    cases = [
        (["check", "missing.npz"], "no such file"),
        (["check", "neg.npz"], "beta"),
        (["path", "nonet.npz"], "W1"),
        (["check", "obj.npz"], "object array"),
        (["check", "junk.npz"], "npz"),
        (["check", "m.ckpt"], "--data"),
        (["check", "evil.ckpt", "--data", "nonet.npz"], "weights_only"),
        (["check", "nonet.npz", "--tol", "2"], "tol"),
        (["path", "ok.npz", "--plot", str(tmp_path / "no" / "dir.png")], "cannot write"),
    ]
    # two through a real process, the rest through the same entry point in-process
    for args, needle in cases[:2]:
        out = relucvx(*args, cwd=tmp_path)
        assert out.returncode == 2, (args, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], (args, out.stderr)
        assert out.stdout == ""
    monkeypatch.chdir(tmp_path)
    for args, needle in cases[2:]:
        capsys.readouterr()
        assert main(args) == 2, args
        out = capsys.readouterr()
        lines = out.err.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], (args, out.err)
        assert out.out == ""


def test_state_dicts_of_supported_modules(tmp_path):
    p = case_b()
    data = tmp_path / "data.npz"
    np.savez(data, X=p.X, y=p.y, beta=p.beta)
    torch.manual_seed(0)
    seq = torch.nn.Sequential(torch.nn.Linear(1, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    two = TwoLayerReLU(1, 3, output_bias=True)
    torch.save(
        {"state_dict": {f"net.{k}": v for k, v in seq.state_dict().items()}}, tmp_path / "a.pt"
    )
    both = {**{f"a.{k}": v for k, v in seq.state_dict().items()}}
    both.update({f"b.{k}": v for k, v in two.state_dict().items()})
    torch.save(both, tmp_path / "b.pt")

    prob = load_model(tmp_path / "a.pt", data=data)
    ref = network_from_module(seq.double())
    np.testing.assert_allclose(prob.network.W1, ref.W1)
    assert prob.bias and prob.output_bias  # nn.Linear(4, 1) has a bias
    assert prob.network.b2 == pytest.approx(float(seq[2].bias.detach()))
    with pytest.raises(ValueError, match="'a', 'b'"):
        load_model(tmp_path / "b.pt", data=data)
    prob = load_model(tmp_path / "b.pt", data=data, module="b")
    assert prob.output_bias and prob.network.width == 3
    with pytest.raises(ValueError, match="not a torch checkpoint"):
        load_model(tmp_path / "a.pt", data=tmp_path / "a.pt")
    np.savez(tmp_path / "w.npz", W1=[[1.0]], w2=[1.0], beta=0.2)
    with pytest.raises(ValueError, match="repeats beta"):
        load_model(tmp_path / "w.npz", data=data)
    np.savez(tmp_path / "w.npz", W1=[[1.0]], w2=[1.0])
    assert load_model(tmp_path / "w.npz", data=data, beta=0.3).beta == 0.3


@pytest.mark.slow
def test_lightning_checkpoint(tmp_path):
    import time

    import lightning as L

    t0 = time.perf_counter()

    p = case_b()
    X = torch.tensor(p.X, dtype=torch.float32)
    y = torch.tensor(p.y, dtype=torch.float32)

    class Regressor(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = TwoLayerReLU(1, 6)

        def training_step(self, batch, _):
            xb, yb = batch
            return 0.5 * ((self.model(xb) - yb) ** 2).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.02, weight_decay=p.beta)

    torch.manual_seed(0)
    module = Regressor()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=6)
    trainer = L.Trainer(
        max_steps=60,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, loader)
    ckpt = tmp_path / "model.ckpt"
    trainer.save_checkpoint(ckpt)
    print(f"trainer: {time.perf_counter() - t0:.1f} s")
    np.savez(tmp_path / "data.npz", X=p.X, y=p.y, beta=p.beta)

    out = relucvx("check", str(ckpt), "--data", "data.npz", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    F = bounds.nonconvex_objective(p, network_from_module(module.model.double()))
    assert res["nonconvex_objective"] == pytest.approx(F, rel=1e-6)
    assert res["verdict"] in ("global_optimum", "stationary_not_global", "not_stationary")
    assert res["lower_bound"] <= 0.168652 + 1e-6
    path = descent_path(load_model(ckpt, data=tmp_path / "data.npz"))
    assert path.start_objective == pytest.approx(F, rel=1e-6)
    assert path.non_increasing and path.end_objective == pytest.approx(0.168652, abs=1e-6)
