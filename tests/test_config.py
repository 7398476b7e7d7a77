"""One loader for every settings file (lmboost.config), and CLI defaults taken from the run
dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lmboost.config import (
    Scalar,
    from_dict,
    load_config,
    merge,
    parse_overrides,
    read_yaml,
    rename_keys,
)
from lmboost.errors import LmboostError


@dataclass
class Section:
    r: int = 8
    alpha: float = 16.0


@dataclass
class Settings:
    name: str = field(metadata={"help": "what to call it"})
    steps: int = 10
    rate: float = 0.5
    on: bool = False
    folder: Path = Path("out")
    labels: list[str] | None = None
    weights: str | list[float] | None = None
    values: list[Scalar] = field(default_factory=list)
    caps: dict[str, int] = field(default_factory=dict)
    section: Section = field(default_factory=Section)

    def validate(self) -> None:
        if self.steps < 1:
            raise LmboostError("steps must be >= 1")


def test_read_yaml_names_what_is_wrong_and_where(tmp_path):
    path = tmp_path / "s.yaml"
    with pytest.raises(LmboostError, match=r"Config file .*s\.yaml does not exist"):
        read_yaml(path)
    path.write_text("")
    assert read_yaml(path) == {}
    path.write_text("- a\n- b\n")
    with pytest.raises(LmboostError, match=r"must hold a mapping of settings .* not a list"):
        read_yaml(path)
    path.write_text("name: x\nsteps: [1, 2\nrate: 3\n")
    with pytest.raises(LmboostError, match=r"s\.yaml, line \d+, column \d+: not valid YAML"):
        read_yaml(path)
    path.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(LmboostError, match=r"s\.yaml, line 1: the file is not UTF-8 \(byte 0xe9\)"):
        read_yaml(path)
    path.write_bytes("\ufeffname: caf\u00e9\n".encode())  # a byte-order mark is fine
    assert read_yaml(path) == {"name": "caf\u00e9"}

    class MyError(Exception):
        pass

    with pytest.raises(MyError, match="Thing file"):
        read_yaml(tmp_path / "nope.yaml", what="Thing file", error=MyError)


def test_unknown_keys_are_listed_with_a_guess_and_the_allowed_ones():
    with pytest.raises(LmboostError) as err:
        from_dict(Settings, {"name": "x", "step": 3, "raet": 1, "zzz": 0}, source="s.yaml")
    message = str(err.value)
    assert message.startswith("s.yaml: unknown keys 'step' (did you mean steps?), 'raet' (did "
                              "you mean rate?), 'zzz'. Allowed keys: name, steps, rate,")
    with pytest.raises(LmboostError, match=r"key 'section\.alpah'\. Did you mean section\.alpha"):
        from_dict(Settings, {"name": "x", "section": {"alpah": 4}})


def test_values_are_converted_to_the_field_types_or_named_with_the_type():
    built = from_dict(Settings, {
        "name": 7, "steps": "3", "rate": "1e-4", "on": "yes", "folder": "runs/a",
        "labels": "neg,pos", "weights": "1,3", "values": ["yes", True, 2, 0.5],
        "caps": {"a": "2"}, "section": {"r": 4.0, "alpha": 2},
    })
    assert built == Settings(
        name="7", steps=3, rate=1e-4, on=True, folder=Path("runs/a"), labels=["neg", "pos"],
        weights=[1.0, 3.0], values=["yes", True, 2, 0.5], caps={"a": 2},
        section=Section(r=4, alpha=2.0),
    )
    assert isinstance(built.section.alpha, float)
    assert from_dict(Settings, {"name": "x", "weights": "balanced"}).weights == "balanced"
    assert from_dict(Settings, {"name": "x", "labels": "none", "caps": None}).labels is None
    assert from_dict(Settings, {"name": "x", "caps": None}).caps == {}
    for values, message in [
        ({"steps": "many"}, "steps must be a whole number, not 'many'"),
        ({"steps": 2.5}, "steps must be a whole number, not 2.5"),
        ({"steps": True}, "steps must be a whole number, not True"),
        ({"on": "maybe"}, "on must be true or false, not 'maybe'"),
        ({"name": None}, "name must be text, not None"),
        ({"name": ["a"]}, r"name must be text, not \['a'\]"),
        ({"labels": [["a"]]}, r"labels\[0\] must be text"),
        ({"values": [{"a": 1}]}, r"values\[0\] must be a plain value"),
        ({"caps": {"a": "x"}}, "caps.a must be a whole number"),
        ({"caps": [1]}, "caps must be a mapping"),
        ({"section": 3}, "section must be a mapping of settings"),
        ({"weights": {"a": 1}}, "weights must be text or a list of numbers or null"),
    ]:
        with pytest.raises(LmboostError, match=f"^s.yaml: {message}"):
            from_dict(Settings, {"name": "x", **values}, source="s.yaml")
    with pytest.raises(LmboostError, match=r"missing required key\(s\): name \(what to call it\)"):
        from_dict(Settings, {})


def test_overrides_merge_into_the_file(tmp_path):
    assert parse_overrides(["section.r=16", "rate=1e-4", "labels=neg,pos", "on=true"]) == {
        "section": {"r": 16}, "rate": "1e-4", "labels": "neg,pos", "on": True,
    }
    with pytest.raises(LmboostError, match="--set expects KEY=VALUE"):
        parse_overrides(["rate"])
    assert merge({"a": 1, "s": {"x": 1, "y": 2}}, {"s": {"y": 3}}, None, {"a": 2}) == {
        "a": 2, "s": {"x": 1, "y": 3},
    }
    path = tmp_path / "s.yaml"
    path.write_text("name: x\nsteps: 5\ncaps: {a: 1}\nsection: {r: 2}\n")
    config = load_config(Settings, path, {"caps": {"b": 2}, "section": {"alpha": 1}})
    assert config.steps == 5 and config.caps == {"a": 1, "b": 2}
    assert config.section == Section(r=2, alpha=1.0)
    with pytest.raises(LmboostError, match="steps must be >= 1"):  # validate() runs
        load_config(Settings, path, {"steps": 0})
    path.write_text("name: x\nstep: 5\n")
    with pytest.raises(LmboostError, match=r"s\.yaml: unknown key 'step'\. Did you mean steps\?"):
        load_config(Settings, path)


def test_renamed_keys_still_load_with_a_warning(tmp_path):
    with pytest.warns(FutureWarning, match="`output_dir` is deprecated.*call it `out`"):
        assert rename_keys({"output_dir": "a"}, {"output_dir": "out"}) == {"out": "a"}
    with pytest.raises(LmboostError, match="give only out"):
        rename_keys({"output_dir": "a", "out": "b"}, {"output_dir": "out"})
    path = tmp_path / "s.yaml"
    path.write_text("name: x\nsecs: 5\n")
    with pytest.warns(FutureWarning):
        assert load_config(Settings, path, renamed={"secs": "steps"}).steps == 5


# --------------------------------------------------------------------------- the CLI


def test_cli_without_optional_flags_gives_the_dataclass_defaults(tmp_path):
    from lmboost.bias import BiasConfig
    from lmboost.cli import (
        bias_cmd,
        build_parser,
        compress_cmd,
        generate_cmd,
        icl_cmd,
        reason_cmd,
        train_cmd,
    )
    from lmboost.compression.runner import CompressConfig
    from lmboost.generation import GenerateRunConfig
    from lmboost.icl import ICLConfig
    from lmboost.reasoning import ReasoningConfig
    from lmboost.training import TrainConfig

    parser = build_parser()
    args = parser.parse_args(["icl", "--task", "sst2", "--out", str(tmp_path)])
    assert icl_cmd.config_from_args(args) == ICLConfig(task="sst2", out=tmp_path)
    args = parser.parse_args(["reason", "--task", "gsm8k", "--out", str(tmp_path)])
    # progress bars: on for a person at the command line, off by default in the library
    expected = ReasoningConfig(task="gsm8k", out=tmp_path, progress=True)
    assert reason_cmd.config_from_args(args) == expected
    # train needs something to train on; every other setting is TrainConfig's default
    args = parser.parse_args(["train", "classify", "--task", "sst2", "--out", str(tmp_path)])
    expected = TrainConfig(recipe="classify", task="sst2", out=str(tmp_path))
    assert train_cmd.config_from_args(args) == expected
    args = parser.parse_args(["generate", "--prompt", "Hi", "--out", str(tmp_path)])
    expected = GenerateRunConfig(out=tmp_path, progress=True)
    assert generate_cmd.config_from_args(args) == expected
    # each command has its own required flags; the rest are the dataclass defaults
    args = parser.parse_args(["compress", "--prune", "magnitude:0.5", "--out", str(tmp_path)])
    expected = CompressConfig(prune="magnitude:0.5", out=tmp_path)
    assert compress_cmd.config_from_args(args) == expected
    args = parser.parse_args(["bias", "--model", "minilm-l6-v2", "--out", str(tmp_path)])
    expected = BiasConfig(model="minilm-l6-v2", out=tmp_path)
    assert bias_cmd.config_from_args(args) == expected


def test_every_run_config_shares_the_run_settings_and_their_checks(tmp_path):
    """out, model, dtype, device, trust_remote_code and restart (and backend and
    tensor_parallel_size where a backend runs the model) mean the same in every run command,
    on the command line and in Python."""
    from lmboost.bias import BiasConfig
    from lmboost.cli import bias_cmd, build_parser, compress_cmd, generate_cmd, icl_cmd, reason_cmd
    from lmboost.compression.runner import CompressConfig
    from lmboost.generation import GenerateRunConfig
    from lmboost.icl import ICLConfig
    from lmboost.reasoning import ReasoningConfig

    shared = ["--dtype", "float32", "--device", "cpu", "--trust-remote-code", "--restart"]
    backend = ["--backend", "vllm", "--tensor-parallel-size", "2"]
    runs = [
        (icl_cmd, ICLConfig, ["icl", "--task", "sst2", *backend], {"task": "sst2"}),
        (reason_cmd, ReasoningConfig, ["reason", "--task", "gsm8k", *backend], {"task": "gsm8k"}),
        (generate_cmd, GenerateRunConfig, ["generate", "--prompt", "Hi", *backend], {}),
        (compress_cmd, CompressConfig, ["compress", "--prune", "magnitude:0.5"],
         {"prune": "magnitude:0.5"}),
        (bias_cmd, BiasConfig, ["bias"], {}),
    ]
    for command, config, argv, required in runs:
        args = build_parser().parse_args(
            [*argv, *shared, "--model", "m", "--out", str(tmp_path)]
        )
        built = command.config_from_args(args)
        assert (built.model, built.out, built.dtype, built.device) == ("m", tmp_path, "float32",
                                                                      "cpu")
        assert built.trust_remote_code and built.restart
        if "--backend" in argv:
            assert (built.backend, built.tensor_parallel_size) == ("vllm", 2)
        with pytest.raises(LmboostError, match="dtype.*'fp8'"):
            config(out=tmp_path, model="m", dtype="fp8", **required).validate()
        with pytest.raises(LmboostError, match="Unknown device 'tpu'"):
            config(out=tmp_path, model="m", device="tpu", **required).validate()
        if "--backend" in argv:
            with pytest.raises(LmboostError, match="backend must be one of hf, vllm, not 'tgi'"):
                config(out=tmp_path, model="m", backend="tgi", **required).validate()
            with pytest.raises(LmboostError, match="tensor_parallel_size must be an integer >= 1"):
                config(out=tmp_path, model="m", tensor_parallel_size=0, **required).validate()


def test_the_earlier_entry_point_names_still_work():
    from lmboost.compression.runner import compress, run_compression
    from lmboost.training import run_training, train

    assert compress is run_compression and train is run_training


def test_cli_choices_come_from_the_library():
    from lmboost.cli import build_parser
    from lmboost.icl.runner import DEMO_STRATEGIES, TRUNCATIONS
    from lmboost.reasoning import MODES
    from lmboost.training import ADVERSARIES
    from lmboost.training.recipes import RECIPES

    def choices(command: str, dest: str) -> list:
        sub = next(a for a in build_parser()._actions if a.dest == "command")
        action = next(a for a in sub.choices[command]._actions if a.dest == dest)
        return list(action.choices)

    assert choices("train", "recipe") == list(RECIPES)
    assert choices("train", "adversarial") == list(ADVERSARIES)
    assert choices("reason", "mode") == list(MODES)
    assert choices("icl", "demos") == list(DEMO_STRATEGIES)
    assert choices("icl", "truncation") == list(TRUNCATIONS)
