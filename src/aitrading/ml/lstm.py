"""The LSTM model kind: a small recurrent classifier over a window of the platform's feature vectors.

Optional: it needs PyTorch (CPU), installed with the `lstm` extra (`pip install -e '.[lstm]'`). Nothing
here imports torch at import time; asking for an LSTM without it raises `OperationalError` saying so.

**Windows as flat vectors.** A sample of bar `t` is the feature vectors of bars `t-window+1 … t`,
flattened oldest first under the names `<feature>[t-k]` (`k` bars back; the current bar keeps the plain
name). `windowed(build, window)` wraps any feature builder that way, so the training pipeline runs
unchanged: the look-ahead guard checks the windowed columns too (a lag taken from the wrong side is
caught), rows whose window is incomplete are NaN and dropped by `build_dataset`, purging works on the
samples' label intervals as before, and a served LSTM is a `ProbabilityModel` whose `feature_names` are
the flat window: stateless, cacheable, and callable through the same `POST /api/v1/predict`
(`window_vector` builds the named vector from consecutive feature vectors). `MLProbability` recognises
the lagged names and keeps the rolling window itself (`aitrading.strategies.ml.WindowInputs`), so an
LSTM trades in backtests and live bar by bar on the very rows it was trained on.

**The network.** Inputs are standardised with the training rows' mean and deviation (held as buffers in
the state dict, so inference reads them from the artifact), then an LSTM, its last hidden state, a
linear layer and a sigmoid. Adam on the binary cross-entropy for a fixed number of epochs, mini-batches
shuffled by a seeded generator; weights initialised under a forked, seeded RNG, one CPU thread: the same
seed gives the same weights bit for bit. The artifact is `torch.save(state_dict)` (tensors only) and is
read back with `torch.load(..., weights_only=True)`: no pickled classes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from aitrading.common.errors import BadInputError, OperationalError
from aitrading.features.vectors import FeatureFrame
from aitrading.model.market import Bar, Timeframe

__all__ = [
    "INSTALL_HINT",
    "MAX_WINDOW",
    "LSTMClassifier",
    "default_lstm_params",
    "lagged_name",
    "load_lstm_predictor",
    "require_torch",
    "save_lstm",
    "torch_available",
    "window_vector",
    "windowed",
]

INSTALL_HINT = "install the lstm extra: pip install -e '.[lstm]'"
MAX_WINDOW = 40  # 40 × 25 features = 1,000 named values, the API's limit per vector


def torch_available() -> bool:
    """Tell whether PyTorch can be imported (without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # a broken or blocked install is as good as none
        return False


def require_torch() -> Any:
    """Return the `torch` module, or raise `OperationalError` telling how to install it."""
    import importlib

    try:
        # By name, so type checkers do not need (or analyse) the optional package.
        return importlib.import_module("torch")
    except ImportError:
        raise OperationalError(f"the LSTM model needs PyTorch: {INSTALL_HINT}") from None


def default_lstm_params(seed: int = 7) -> dict[str, Any]:
    """Return the default hyper-parameters of the LSTM (small: FX direction has little to learn)."""
    return {
        "window": 16,
        "hidden": 32,
        "layers": 1,
        "epochs": 20,
        "batch_size": 128,
        "learning_rate": 0.003,
        "weight_decay": 0.0001,
        "seed": seed,
        "threads": 1,
    }


def _check_params(params: Mapping[str, Any]) -> dict[str, Any]:
    known = default_lstm_params()
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise BadInputError(f"unknown LSTM parameters {unknown}; known: {', '.join(known)}")
    p = known | dict(params)
    ints = ("window", "hidden", "layers", "epochs", "batch_size", "threads")
    if not all(isinstance(p[k], int) and p[k] >= 1 for k in ints):
        raise BadInputError(f"LSTM parameters {', '.join(ints)} must be positive integers")
    if p["window"] > MAX_WINDOW:
        raise BadInputError(f"the LSTM window is at most {MAX_WINDOW} bars, got {p['window']}")
    if not p["learning_rate"] > 0 or p["weight_decay"] < 0:
        raise BadInputError("the learning rate must be positive and the weight decay not negative")
    return p


def lagged_name(name: str, lag: int) -> str:
    """Return the name of feature `name` `lag` bars before the sample's bar (`lag` 0: the name itself)."""
    return name if lag == 0 else f"{name}[t-{lag}]"


def windowed(
    build: Callable[[Sequence[Bar], Timeframe], FeatureFrame], window: int
) -> Callable[[Sequence[Bar], Timeframe], FeatureFrame]:
    """Return a feature builder whose row `t` is `build`'s rows `t-window+1 … t`, oldest first."""
    if not 1 <= window <= MAX_WINDOW:
        raise BadInputError(f"the LSTM window must be 1 to {MAX_WINDOW} bars, got {window}")

    def build_windowed(bars: Sequence[Bar], timeframe: Timeframe) -> FeatureFrame:
        frame = build(bars, timeframe)
        n, f = frame.values.shape
        values = np.full((n, window * f), np.nan)
        for pos, lag in enumerate(range(window - 1, -1, -1)):
            values[lag:, pos * f : (pos + 1) * f] = frame.values[: n - lag]
        names = tuple(lagged_name(name, lag) for lag in range(window - 1, -1, -1) for name in frame.names)
        return FeatureFrame(times=frame.times, values=values, names=names)

    return build_windowed


def window_vector(vectors: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Return the named input of an LSTM from consecutive feature vectors, oldest first, newest last."""
    last = len(vectors) - 1
    return {lagged_name(k, last - i): v for i, vec in enumerate(vectors) for k, v in vec.items()}


def _network(torch: Any, n_features: int, hidden: int, layers: int) -> Any:
    nn = torch.nn
    module: Any = nn.Module  # torch is imported lazily, so the base class is only known at run time

    class LSTMNet(module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.zeros(n_features))
            self.register_buffer("scale", torch.ones(n_features))
            self.lstm = nn.LSTM(n_features, hidden, num_layers=layers, batch_first=True)
            self.head = nn.Linear(hidden, 1)

        def forward(self, x: Any) -> Any:
            z = torch.clamp((x - self.mean) / self.scale, -10.0, 10.0)
            out, _ = self.lstm(z)
            return self.head(out[:, -1, :]).squeeze(-1)

    return LSTMNet()


class LSTMClassifier:
    """A scikit-learn style classifier (`fit`, `predict_proba`) over flat windows of feature vectors."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params = _check_params(params)
        self._torch = require_torch()
        self.n_features = 0
        self.net: Any = None

    def _sequences(self, x: npt.NDArray[np.float64]) -> Any:
        window = self.params["window"]
        if x.ndim != 2 or not self.n_features or x.shape[1] != window * self.n_features:
            raise BadInputError(
                f"the LSTM wants rows of {window} × {self.n_features} values, got shape {x.shape}"
            )
        return self._torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).reshape(
            x.shape[0], window, self.n_features
        )

    def fit(self, x: npt.NDArray[np.float64], y: npt.NDArray[np.int64]) -> LSTMClassifier:
        """Train on flat windows `x` and labels `y` (0/1)."""
        torch, p = self._torch, self.params
        if x.ndim != 2 or x.shape[1] % p["window"]:
            raise BadInputError(f"rows of {x.shape[1:]} values are not windows of {p['window']} vectors")
        self.n_features = x.shape[1] // p["window"]
        torch.set_num_threads(p["threads"])
        seqs = self._sequences(x)
        target = torch.from_numpy(np.asarray(y, dtype=np.float32))
        rows = seqs.reshape(-1, self.n_features)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(p["seed"])
            net = _network(torch, self.n_features, p["hidden"], p["layers"])
            net.mean.copy_(rows.mean(dim=0))
            net.scale.copy_(rows.std(dim=0).clamp_min(1e-8))
            order = torch.Generator().manual_seed(p["seed"])
            optimiser = torch.optim.Adam(
                net.parameters(), lr=p["learning_rate"], weight_decay=p["weight_decay"]
            )
            loss_fn = torch.nn.BCEWithLogitsLoss()
            net.train()
            for _ in range(p["epochs"]):
                for batch in torch.randperm(len(target), generator=order).split(p["batch_size"]):
                    optimiser.zero_grad()
                    loss = loss_fn(net(seqs[batch]), target[batch])
                    loss.backward()
                    optimiser.step()
        net.eval()
        self.net = net
        return self

    def predict_proba(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Return the probabilities of class 0 and class 1 of each flat window in `x`."""
        if self.net is None:
            raise BadInputError("the LSTM is not trained")
        with self._torch.inference_mode():
            p1 = self._torch.sigmoid(self.net(self._sequences(x))).double().numpy()
        return np.column_stack([1.0 - p1, p1])


def save_lstm(estimator: LSTMClassifier, path: Path) -> Path:
    """Write the trained network's state dict (tensors only) to `path`."""
    estimator._torch.save(estimator.net.state_dict(), path)
    return path


def load_lstm_predictor(path: Path) -> Callable[[npt.NDArray[np.float64]], float]:
    """Return a single-row predictor of the state dict at `path` (architecture read from its shapes).

    A call runs with one intra-op thread: one window has nothing to parallelise, and a thread team would
    contend with the other processes of a busy machine for a tail of milliseconds. The process's setting
    (training may want more) is put back after the call; changing it costs ~0.1 µs.
    """
    torch = require_torch()
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        n_features = int(state["mean"].shape[0])
        hidden = int(state["head.weight"].shape[1])
        layers = sum(1 for k in state if k.startswith("lstm.weight_ih_l"))
        net = _network(torch, n_features, hidden, layers)
        net.load_state_dict(state)
    except (KeyError, RuntimeError) as exc:
        raise BadInputError(f"{path} is not an LSTM state dict of this platform: {exc}") from None
    net.eval()
    get_threads, set_threads = torch.get_num_threads, torch.set_num_threads

    def predict_lstm(row: npt.NDArray[np.float64]) -> float:
        if row.ndim != 1 or row.size % n_features:
            raise BadInputError(f"an LSTM input has a multiple of {n_features} values, got {np.shape(row)}")
        seq = torch.from_numpy(row.astype(np.float32)).reshape(1, -1, n_features)
        threads = get_threads()
        if threads != 1:
            set_threads(1)
        try:
            with torch.inference_mode():
                return float(torch.sigmoid(net(seq))[0])
        finally:
            if threads != 1:
                set_threads(threads)

    return predict_lstm
