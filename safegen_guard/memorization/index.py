"""`MemorizationIndex`: is a generated image a copy of one of the generator's training images?

1. **Candidates.** Every training image is embedded with a :class:`~.encoder.CopyEncoder`
   trained on those real images; a faiss index (:mod:`.knn`) returns the ``k`` training images
   nearest to a sample.
2. **Confirmation.** Each candidate is compared with the sample in pixel space after alignment
   (:func:`~.align.aligned_ncc`); the sample's *similarity* is the best of the ``k``, and the
   training image that gave it is its ``nearest_index``.
3. **Calibration ("too close").** The null distribution is the similarity of real images the
   generator did *not* train on (held-out slices or subjects). A sample is ``memorized`` when
   its similarity exceeds the ``1 - alpha`` split-conformal quantile of that null; its
   ``copy_p_value`` is the share of held-out real images at least as similar
   (:func:`~safegen_guard.calibration.conformal_p_values`). For held-out real images
   ``P(memorized) <= alpha``.

The index stores the training images themselves (for the pixel confirmation) and their
embeddings: it must be handled like the training data (see ``docs/memorization.md``).
Saved as safetensors + JSON; the faiss index is rebuilt from the stored embeddings on load.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from safegen_guard.calibration import (
    conformal_p_values,
    conformal_threshold,
    min_calibration_size,
)
from safegen_guard.errors import CheckpointError
from safegen_guard.memorization.align import AlignmentSearch, aligned_ncc
from safegen_guard.memorization.encoder import CopyEncoder, EncoderConfig, train_encoder
from safegen_guard.memorization.knn import IVF_THRESHOLD, build_knn, search_knn
from safegen_guard.memorization.perturb import CopyPerturbation
from safegen_guard.memorization.sources import TrainingSet, resolve_images
from safegen_guard.validation import (
    check_choice,
    check_images,
    check_positive_int,
    check_probability,
)

__all__ = ["MemorizationConfig", "MemorizationIndex", "CopyCheck"]

INDEX_FORMAT = "1.0"
_META, _WEIGHTS = "memorization.json", "memorization.safetensors"


@dataclass(frozen=True)
class MemorizationConfig:
    """Settings of a :class:`MemorizationIndex` (saved as JSON).

    Attributes:
        alpha: Share of real held-out images allowed to be called ``memorized``.
        k: Candidates from the embedding confirmed in pixel space per sample.
        mark_unsafe: A memorized sample is also ``unsafe`` in the guard's verdict (``False``
            keeps the two separate: ``memorized`` is then reported but not rejected).
        heldout_variants: Acquisition draws per held-out slice when the null comes from a
            dataset name or path (more draws, finer p-values).
        search: Alignments tried by the pixel confirmation.
        encoder: Copy encoder architecture and training.
        perturbation: Copy-preserving perturbations used to train the encoder.
        ivf_threshold: Exact search up to this many training images, IVF beyond.
        nprobe: Inverted lists visited per query by the IVF index.
        seed: Seed of encoder training and data draws.
    """

    alpha: float = 0.01
    k: int = 8
    mark_unsafe: bool = True
    heldout_variants: int = 8
    search: AlignmentSearch = field(default_factory=AlignmentSearch)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    perturbation: CopyPerturbation = field(default_factory=CopyPerturbation)
    ivf_threshold: int = IVF_THRESHOLD
    nprobe: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        check_probability(self.alpha, "alpha")
        for name in ("k", "heldout_variants", "ivf_threshold", "nprobe"):
            check_positive_int(getattr(self, name), name)
        if not isinstance(self.mark_unsafe, bool):
            raise TypeError(f"`mark_unsafe` must be a bool, got {self.mark_unsafe!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON-able)."""
        return asdict(self)

    @classmethod
    def profile(cls, name: str, **overrides: Any) -> MemorizationConfig:
        """Presets named like the guard's profiles.

        ``tiny`` (tests: a 10-step encoder), ``quick`` (defaults, 200 encoder steps) and
        ``full`` (1000 encoder steps).
        """
        check_choice(name, "profile", ("tiny", "quick", "full"))
        encoder = {
            "tiny": EncoderConfig(channels=4, dim=16, steps=10, batch_size=16),
            "quick": EncoderConfig(),
            "full": EncoderConfig(steps=1000),
        }[name]
        return replace(cls(encoder=encoder), **overrides)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MemorizationConfig:
        """Inverse of :meth:`to_dict`."""
        d = dict(data)
        d["search"] = AlignmentSearch(**d.get("search", {}))
        d["encoder"] = EncoderConfig(**d.get("encoder", {}))
        p = dict(d.get("perturbation", {}))
        for key in ("gamma_range", "noise_std_range"):
            if key in p:
                p[key] = tuple(p[key])
        d["perturbation"] = CopyPerturbation(**p)
        return cls(**d)


@dataclass
class CopyCheck:
    """Result of :meth:`MemorizationIndex.check` for ``B`` images.

    Attributes:
        similarity: ``[B]`` float, best aligned similarity to a training image (1 = copy).
        p_value: ``[B]`` float64 in ``(0, 1]``, share of held-out real images at least as
            similar (small = closer to the training set than real unseen images get).
        memorized: ``[B]`` bool, ``p_value <= alpha``.
        nearest_index: ``[B]`` long, the training image of ``similarity``.
        threshold: similarity above which an image is memorized.
    """

    similarity: torch.Tensor
    p_value: torch.Tensor
    memorized: torch.Tensor
    nearest_index: torch.Tensor
    threshold: float


class MemorizationIndex(nn.Module):
    """Index of a generator's training images with a calibrated copy test.

    Build with :meth:`fit`; use :meth:`check`. Tensors (encoder weights, training images,
    embeddings, held-out null) are module state, so a guard that holds the index saves it.

    Example:
        >>> index = MemorizationIndex.fit("mni152", size=64)  # doctest: +SKIP
        >>> result = index.check(samples)  # [B, 1, 64, 64] in [0, 1]  # doctest: +SKIP
        >>> result.memorized, result.p_value, index.labels[int(result.nearest_index[0])]
    """

    def __init__(
        self,
        config: MemorizationConfig,
        num_images: int,
        num_null: int,
        size: int,
        labels: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.size = check_positive_int(size, "size")
        self.encoder = CopyEncoder(config.encoder)
        n, m = (
            check_positive_int(num_images, "num_images"),
            check_positive_int(num_null, "num_null"),
        )
        self.register_buffer("images", torch.zeros(n, 1, size, size, dtype=torch.float16))
        self.register_buffer("embeddings", torch.zeros(n, config.encoder.dim))
        self.register_buffer("null", torch.zeros(m))
        self.labels = list(labels) if labels is not None else [f"tensor[{i}]" for i in range(n)]
        if len(self.labels) != n:
            raise ValueError(f"`labels` must have {n} entries, got {len(self.labels)}")
        self._knn = None
        self.eval()

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(
        cls,
        training: TrainingSet,
        heldout: TrainingSet | None = None,
        *,
        size: int | None = None,
        config: MemorizationConfig | None = None,
        accelerator: str = "auto",
        progress: bool = False,
    ) -> MemorizationIndex:
        """Index ``training`` and calibrate "too close" on ``heldout`` (real images only).

        Args:
            training: The generator's training images: a dataset name or path (its ``train``
                split), a ``SliceDataset`` or an ``[N, 1, S, S]`` tensor in ``[0, 1]``.
            heldout: Real images the generator did not train on. Default for a name or path:
                its ``val`` split (``config.heldout_variants`` draws per slice); required for
                tensors and datasets.
            size: Image side ``S`` (required for names and paths; else taken from the data).
            config: Settings; default :class:`MemorizationConfig`.
            accelerator: Lightning accelerator for the encoder training.
            progress: Show the training progress bar.

        Raises:
            ValueError: missing ``heldout`` or ``size``, mismatched images, or too few
                held-out images for ``alpha`` (``n >= 1 / alpha - 1`` are needed).
        """
        config = config or MemorizationConfig()
        size = _infer_size(training, size)
        train_x, labels = resolve_images(training, "train", size, seed=config.seed)
        if heldout is None:
            if not isinstance(training, (str, Path)):
                raise ValueError(
                    "`heldout` (real images the generator did not train on) is required when "
                    f"`training` is a {type(training).__name__}, got None"
                )
            heldout = training
        held_x, _ = resolve_images(
            heldout, "val", size, variants=config.heldout_variants, seed=config.seed + 1
        )
        need = min_calibration_size(config.alpha)
        if len(held_x) < need:
            raise ValueError(
                f"alpha={config.alpha} needs at least {need} held-out real images, got "
                f"{len(held_x)}: pass more (or more `heldout_variants`) or a larger alpha"
            )
        encoder = train_encoder(
            train_x,
            config.encoder,
            perturbation=config.perturbation,
            seed=config.seed,
            accelerator=accelerator,
            progress=progress,
        )
        index = cls(config, len(train_x), len(held_x), size, labels)
        index.encoder.load_state_dict(encoder.state_dict())
        index.images.copy_(train_x.half())
        index.embeddings.copy_(index.encoder.embed(train_x))
        index.null.copy_(index._similarity(held_x)[0])
        return index

    # --------------------------------------------------------------- checking
    @property
    def threshold(self) -> float:
        """Similarity above which an image is ``memorized`` (conformal, from the null)."""
        return conformal_threshold(self.null, self.config.alpha)

    @torch.no_grad()
    def check(self, x: torch.Tensor) -> CopyCheck:
        """Test ``x`` ``[B, 1, S, S]`` in ``[0, 1]`` (finite) for copies of training images.

        Raises:
            TypeError, ValueError: not a valid image batch of the indexed size.
        """
        check_images(x, name="images", channels=1, size=self.size)
        sim, nearest = self._similarity(x.detach().to("cpu", torch.float32))
        p = conformal_p_values(self.null, sim)
        return CopyCheck(
            similarity=sim,
            p_value=p,
            memorized=p <= self.config.alpha,
            nearest_index=nearest,
            threshold=self.threshold,
        )

    def _similarity(self, x: torch.Tensor, chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        """``([B] best aligned similarity, [B] training row)`` of ``x`` ``[B, 1, S, S]``.

        Runs ``chunk`` images at a time: the candidates (``k`` training images per query)
        and their alignments are the working memory, bounded by the chunk, not by ``B``.
        """
        if len(x) <= chunk:
            return self._chunk_similarity(x)
        parts = [self._chunk_similarity(c) for c in x.split(chunk)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def _chunk_similarity(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.encoder.embed(x)
        _, rows = search_knn(self.knn, q, self.config.k)
        cand = self.images[rows.clamp(min=0)].float()  # [B, k, 1, S, S]
        ncc = aligned_ncc(x, cand, self.config.search)
        ncc = ncc.masked_fill(rows < 0, float("-inf"))
        best = ncc.argmax(1, keepdim=True)
        return ncc.gather(1, best)[:, 0], rows.gather(1, best)[:, 0]

    def __getstate__(self) -> dict:
        # copy/pickle without the faiss index (rebuilt on first use): faiss's serialisation
        # breaks when SimpleITK is imported, which made ``copy.deepcopy(guard)`` fail
        state = self.__dict__.copy()
        state["_knn"] = None
        return state

    @property
    def knn(self):
        """The faiss index over ``embeddings`` (built on first use, rebuilt after loading)."""
        if self._knn is None:
            self._knn = build_knn(
                self.embeddings,
                ivf_threshold=self.config.ivf_threshold,
                nprobe=self.config.nprobe,
                seed=self.config.seed,
            )
        return self._knn

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        self._knn = None  # new embeddings: the faiss index is stale
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    # -------------------------------------------------------------- persistence
    def config_dict(self) -> dict[str, Any]:
        """Plain data that :meth:`from_config` turns back into an empty index of this shape."""
        return {
            "config": self.config.to_dict(),
            "num_images": len(self),
            "num_null": int(self.null.numel()),
            "size": self.size,
            "labels": list(self.labels),
        }

    @classmethod
    def from_config(cls, data: dict[str, Any]) -> MemorizationIndex:
        """An empty index with the saved shape and settings (then ``load_state_dict``)."""
        return cls(
            MemorizationConfig.from_dict(data["config"]),
            int(data["num_images"]),
            int(data["num_null"]),
            int(data["size"]),
            list(data["labels"]),
        )

    def save(self, directory: str | Path) -> Path:
        """Write ``memorization.safetensors`` + ``memorization.json`` atomically (no pickle)."""
        from safetensors.torch import save as save_safetensors

        from safegen_guard.io import atomic_write_bytes, atomic_write_json

        directory = Path(directory)
        blob = save_safetensors({k: v.contiguous() for k, v in self.state_dict().items()})
        atomic_write_bytes(directory / _WEIGHTS, blob)
        meta = {
            **self.config_dict(),
            "format_version": INDEX_FORMAT,
            "weights_sha256": hashlib.sha256(blob).hexdigest(),
        }
        atomic_write_json(directory / _META, meta)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> MemorizationIndex:
        """Load an index written by :meth:`save` (hash-verified, no pickle).

        Raises:
            CheckpointError: missing, modified or incompatible files.
        """
        from safetensors.torch import load as load_safetensors

        directory = Path(directory)
        try:
            meta = json.loads((directory / _META).read_text(encoding="utf-8"))
            blob = (directory / _WEIGHTS).read_bytes()
        except (OSError, json.JSONDecodeError) as err:
            raise CheckpointError(f"{directory} is not a memorization index: {err}") from err
        if str(meta.get("format_version", "?")).split(".")[0] != INDEX_FORMAT.split(".")[0]:
            raise CheckpointError(
                f"memorization index format {meta.get('format_version')} is not supported "
                f"(expected {INDEX_FORMAT})"
            )
        if hashlib.sha256(blob).hexdigest() != meta.get("weights_sha256"):
            raise CheckpointError(f"{directory / _WEIGHTS} was modified after saving")
        try:
            index = cls.from_config(meta)
            index.load_state_dict(load_safetensors(blob), strict=True)
        except (KeyError, ValueError, TypeError, RuntimeError) as err:
            raise CheckpointError(
                f"{directory} does not match this SAFEGEN version: {err}"
            ) from err
        return index.eval()

    def with_config(self, **changes: Any) -> MemorizationIndex:
        """Change decision settings (``alpha``, ``k``, ``mark_unsafe``...) in place."""
        self.config = replace(self.config, **changes)
        return self


def _infer_size(data: TrainingSet, size: int | None) -> int:
    if size is not None:
        return check_positive_int(size, "size")
    if isinstance(data, torch.Tensor) and data.ndim == 4:
        return int(data.shape[-1])
    images = getattr(data, "images", None)
    if isinstance(images, torch.Tensor):
        return int(images.shape[-1])
    raise ValueError(f"`size` is required when the training set is a name or path, got {data!r}")
