"""lmboost.generation on the tiny random Llama: greedy = argmax loop, stop strings, shared
prompt encoding for n samples, seeding, chat templates, errors, the timed call; and ``lmboost
generate``'s run folder: each finished batch saved as it ends, resume, settings and prompts
checked, the lock, a bad --out and prompt files that are not UTF-8 refused before the model
loads."""

from __future__ import annotations

import copy
import json
import os

import pytest
import torch

from lmboost.backends.hf import HFBackend
from lmboost.backends.hf.calls import recorded_forwards
from lmboost.cli import main
from lmboost.errors import FileEncodingError, LmboostError
from lmboost.evaluation.records import read_json
from lmboost.evaluation.store import RunStore
from lmboost.generation import (
    GenerateRunConfig,
    GenerationConfig,
    GenerationError,
    cut_at_stop,
    encode_prompt,
    format_prompt,
    generate,
    generation_speed,
    read_prompts,
    resolve_chat,
    run_generate,
)
from lmboost.models import LoadedModel

PROMPTS = ["Review: a great movie\nSentiment:", "Article: markets fell"]



@pytest.fixture
def forward_calls(tiny_model):
    """Shapes of the input_ids of every forward of the tiny model while the test runs."""
    with recorded_forwards(tiny_model.model) as calls:
        yield calls


def _argmax_loop(loaded: LoadedModel, prompt: str, steps: int) -> str:
    """Plain greedy decoding: full forward of the whole sequence, argmax, append, repeat."""
    ids = encode_prompt(loaded.tokenizer, prompt, chat=False)
    new: list[int] = []
    with torch.no_grad():
        for _ in range(steps):
            logits = loaded.model(input_ids=torch.tensor([ids + new])).logits[0, -1]
            token = int(logits.argmax())
            if token == loaded.tokenizer.eos_token_id:
                break
            new.append(token)
    return loaded.tokenizer.decode(new, skip_special_tokens=True)


def test_greedy_equals_argmax_loop(tiny_model):
    config = GenerationConfig(max_new_tokens=12)
    for prompt in PROMPTS:
        assert generate(tiny_model, [prompt], config) == [[_argmax_loop(tiny_model, prompt, 12)]]


def test_batched_left_padding_matches_single_prompts(tiny_model):
    config = GenerationConfig(max_new_tokens=10)
    single = [generate(tiny_model, [p], config)[0] for p in PROMPTS]
    assert generate(tiny_model, PROMPTS, config, batch_size=2) == single
    assert generate(tiny_model, PROMPTS, config, batch_size=1) == single


def test_generation_speed_times_the_same_texts_and_counts_their_tokens(tiny_model, forward_calls):
    config = GenerationConfig(max_new_tokens=6)
    expected = generate(tiny_model, PROMPTS, config, n=2)
    forward_calls.clear()
    speed = generation_speed(tiny_model, PROMPTS, config, n=2, warmup=1)
    assert speed.texts == expected
    tokens = [len(tiny_model.tokenizer(t, add_special_tokens=False)["input_ids"])
              for row in expected for t in row]
    assert speed.tokens == sum(tokens) > 0
    assert speed.tokens_per_s == pytest.approx(speed.tokens / speed.seconds)
    assert forward_calls[0][0] == 1  # the warm-up: the first prompt alone (one shared encoding)
    assert any(batch == 2 for batch, _ in forward_calls[1:])  # then both prompts, timed


def test_stop_strings_cut_text_and_stop_early(tiny_model, forward_calls):
    prompt = PROMPTS[0]
    full = generate(tiny_model, [prompt], GenerationConfig(max_new_tokens=20))[0][0]
    stop = full[6:8]  # two characters from the middle of the free-running text
    assert stop and full.find(stop) >= 0
    forward_calls.clear()
    cut = generate(tiny_model, [prompt], GenerationConfig(max_new_tokens=20, stop=(stop,)))
    assert cut == [[full[: full.find(stop)]]]
    assert len(forward_calls) < 20  # generation ended at the stop string, not at the limit


def test_cut_at_stop():
    assert cut_at_stop("a\n\nQ: b", ("\nQ:", "\n\n")) == "a"
    assert cut_at_stop("abc", ()) == "abc"
    assert cut_at_stop("abc", ("x",)) == "abc"


def test_n_samples_share_one_prompt_encoding(tiny_model, forward_calls):
    prompt = PROMPTS[0]
    length = len(encode_prompt(tiny_model.tokenizer, prompt, chat=False))
    config = GenerationConfig(max_new_tokens=5, do_sample=True, seed=0)
    out = generate(tiny_model, [prompt], config, n=4)
    assert len(out) == 1 and len(out[0]) == 4
    # One forward over the prompt (all but its last token) for a single row; every later
    # forward feeds one token per sample.
    assert forward_calls[0] == (1, length - 1)
    assert all(shape == (4, 1) for shape in forward_calls[1:])
    assert sum(b * t for b, t in forward_calls) == (length - 1) + 4 * 5


def test_n_samples_for_several_prompts(tiny_model, forward_calls):
    config = GenerationConfig(max_new_tokens=4, do_sample=True, seed=1)
    out = generate(tiny_model, PROMPTS, config, n=3, batch_size=2)
    assert [len(o) for o in out] == [3, 3]
    assert forward_calls[0][0] == 2 and all(shape[0] == 6 for shape in forward_calls[1:])


def test_seeded_sampling_is_reproducible(tiny_model):
    config = GenerationConfig(max_new_tokens=8, do_sample=True, temperature=1.5, seed=7)
    first = generate(tiny_model, PROMPTS, config, n=3)
    assert generate(tiny_model, PROMPTS, config, n=3) == first
    other = generate(tiny_model, PROMPTS, GenerationConfig(**{**config.__dict__, "seed": 8}), n=3)
    assert other != first


def test_chat_template(tiny_model):
    tokenizer = copy.deepcopy(tiny_model.tokenizer)
    assert resolve_chat(tokenizer, None) is False
    with pytest.raises(GenerationError, match="no chat template"):
        resolve_chat(tokenizer, True)
    tokenizer.chat_template = (
        "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<s>assistant:{% endif %}"
    )
    assert resolve_chat(tokenizer, None) is True
    assert resolve_chat(tokenizer, False) is False
    text = format_prompt(tokenizer, ("Q: 2+2?", " Let's think."), chat=True)
    assert text == "<s>user: Q: 2+2?\n<s>assistant:Let's think."
    assert format_prompt(tokenizer, ("Q: 2+2?", " Let's think."), chat=False) == (
        "Q: 2+2? Let's think."
    )
    loaded = LoadedModel(tiny_model.model, tokenizer, "tiny-chat", None)
    out = generate(loaded, ["Review: great"], GenerationConfig(max_new_tokens=3))
    assert len(out) == 1 and isinstance(out[0][0], str)


def test_errors(tiny_model):
    with pytest.raises(GenerationError, match="No prompts"):
        generate(tiny_model, [])
    with pytest.raises(GenerationError, match="No prompts"):
        generate(tiny_model, "a string, not a list")
    with pytest.raises(GenerationError, match="at least 1"):
        generate(tiny_model, ["x"], n=0)
    with pytest.raises(GenerationError, match="context window is 128"):
        generate(tiny_model, ["great movie " * 100])
    with pytest.raises(GenerationError, match="temperature"):
        generate(tiny_model, ["x"], GenerationConfig(do_sample=True, temperature=0))
    with pytest.raises(GenerationError, match="max_new_tokens"):
        generate(tiny_model, ["x"], GenerationConfig(max_new_tokens=0))
    with pytest.raises(GenerationError, match="top_p"):
        generate(tiny_model, ["x"], GenerationConfig(top_p=0))
    with pytest.raises(GenerationError, match="stop"):
        generate(tiny_model, ["x"], GenerationConfig(stop="\n"))


def test_long_prompt_generates_fewer_tokens_with_a_warning(tiny_model):
    prompt = "Review:"
    while len(encode_prompt(tiny_model.tokenizer, prompt + " great", chat=False)) < 110:
        prompt += " great"
    with pytest.warns(UserWarning, match="context window"):
        generate(tiny_model, [prompt], GenerationConfig(max_new_tokens=64))


def test_greedy_from_the_shared_cache_equals_plain_greedy(tiny_model):
    """The n > 1 path (prefill once, expand the cache) decodes exactly like the n = 1 path, also
    for left-padded rows of a batch."""
    prompts = [PROMPTS[0], "Q", PROMPTS[1]]
    config = GenerationConfig(max_new_tokens=10)
    plain = generate(tiny_model, prompts, config, batch_size=3)
    shared = generate(tiny_model, prompts, config, n=2, batch_size=3)
    assert shared == [[texts[0]] * 2 for texts in plain]



# --------------------------------------------------------------------------- the run folder

RUN_PROMPTS = ["Review: a great movie", "Article: markets fell", "Question: who wrote",
               "Review: boring and far", "premise entails"]


def _argv(model_dir: str, prompts_file, out, *extra: str) -> list[str]:
    return ["generate", "--model", model_dir, "--device", "cpu", "--prompts", str(prompts_file),
            "--max-new-tokens", "4", "--batch-size", "2", "--out", str(out), *extra]


def _prompts_file(tmp_path, prompts=RUN_PROMPTS):
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    return path


def _logged(out) -> dict[int, str]:
    """Prompt index -> text of every line of the run's item log."""
    lines = (out / "items.jsonl").read_text(encoding="utf-8").splitlines()
    return {r["index"]: r["text"] for r in map(json.loads, lines)}


def _texts(out) -> list[str]:
    return [r["text"] for r in read_json(out / "results.json")["results"]]


def _interrupt_generate_on_call(monkeypatch, k: int) -> list[int]:
    """HFBackend.generate raises KeyboardInterrupt (Ctrl-C) on its k-th call; the sizes of
    the calls it let through are returned."""
    original = HFBackend.generate
    calls: list[int] = []

    def generate_then_interrupt(self, prompts, *args, **kwargs):
        if len(calls) + 1 == k:
            raise KeyboardInterrupt
        calls.append(len(prompts))
        return original(self, prompts, *args, **kwargs)

    monkeypatch.setattr(HFBackend, "generate", generate_then_interrupt)
    return calls


@pytest.mark.parametrize("decoding", [[], ["--sample", "--temperature", "3", "--seed", "5"]],
                         ids=["greedy", "sample"])
def test_an_interrupted_run_keeps_its_finished_batches_and_resumes_to_the_same_outputs(
    tiny_model, tiny_model_dir, tmp_path, monkeypatch, capsys, decoding
):
    prompts = _prompts_file(tmp_path)
    whole = tmp_path / "whole"
    assert main(_argv(tiny_model_dir, prompts, whole, *decoding)) == 0
    expected = _texts(whole)
    assert len(expected) == len(RUN_PROMPTS)
    greedy = [t[0] for t in generate(tiny_model, RUN_PROMPTS, GenerationConfig(max_new_tokens=4))]
    assert (expected == greedy) == (not decoding)

    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        calls = _interrupt_generate_on_call(patch, 3)  # Ctrl-C in the third batch
        assert main(_argv(tiny_model_dir, prompts, out, *decoding)) == 130
    assert calls == [2, 2]
    assert "finished work is saved" in capsys.readouterr().err
    # Exactly the two finished batches were saved, with the texts of the uninterrupted run.
    assert _logged(out) == dict(enumerate(expected[:4]))
    assert not (out / "results.json").exists()

    with monkeypatch.context() as patch:
        calls = _interrupt_generate_on_call(patch, 0)  # never: counts the calls
        assert main(_argv(tiny_model_dir, prompts, out, *decoding)) == 0
    assert calls == [1]  # only the prompt not done
    assert _texts(out) == expected
    assert read_json(out / "settings.json") == read_json(whole / "settings.json")


def test_the_python_api_resumes_and_calls_back_after_each_saved_prompt(tiny_model, tmp_path):
    out = tmp_path / "out"
    config = GenerateRunConfig(out=out, model="tiny", max_new_tokens=3, batch_size=2)
    seen: list[int] = []

    def stop_after_three(record):
        seen.append(record["index"])
        assert record["index"] in _logged(out)  # saved before the callback
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_generate(config, RUN_PROMPTS, tiny_model, on_item=stop_after_three)
    assert seen == [0, 1, 2] and sorted(_logged(out)) == [0, 1, 2, 3]  # the batch (2, 3) ended
    results = run_generate(config, RUN_PROMPTS, tiny_model, on_item=stop_after_three)
    assert seen == [0, 1, 2, 4]
    expected = generate(tiny_model, RUN_PROMPTS, GenerationConfig(max_new_tokens=3))
    assert [r["text"] for r in results["results"]] == [t[0] for t in expected]
    assert [r["prompt"] for r in results["results"]] == RUN_PROMPTS
    assert results["settings"]["decoding"] == "greedy"
    # More prompts at the end extend the run; a changed prompt is refused.
    more = run_generate(config, [*RUN_PROMPTS, "Review: great"], tiny_model)
    assert more["results"][:5] == results["results"] and len(more["results"]) == 6
    with pytest.raises(LmboostError, match=r"prompt 2 was 'Article: markets fell', not 'Other'"
                       r".*--restart"):
        run_generate(config, [RUN_PROMPTS[0], "Other"], tiny_model)


def test_changed_settings_are_refused_naming_them_and_restart_starts_over(
    tiny_model_dir, tmp_path, capsys
):
    prompts = _prompts_file(tmp_path, RUN_PROMPTS[:2])
    out = tmp_path / "out"
    assert main(_argv(tiny_model_dir, prompts, out)) == 0
    first = read_json(out / "settings.json")
    assert first["command"] == "generate" and first["model_weights"]
    assert {"dtype": "float32", "backend": "hf", "max_new_tokens": 4, "batch_size": 2}.items() \
        <= first.items()
    capsys.readouterr()
    changed = _argv(tiny_model_dir, prompts, out, "--sample", "--seed", "1")
    assert main(changed) == 2
    err = capsys.readouterr().err
    assert "decoding: 'greedy' -> 'sample'" in err and "--restart" in err
    assert main([*changed[:-2], "--max-new-tokens", "5", *changed[-2:]]) == 2
    assert "max_new_tokens: 4 -> 5" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="is now in"):
        assert main([*changed, "--restart"]) == 0
    assert read_json(out / "settings.json")["decoding"] == "sample"
    (aside,) = tmp_path.glob("out.old-*")
    assert read_json(aside / "settings.json") == first


def test_a_second_run_into_the_same_out_is_refused(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    with RunStore(out, "generate", {}):  # a run holding the folder
        assert main(_argv(tiny_model_dir, _prompts_file(tmp_path), out)) == 2
    err = capsys.readouterr().err
    assert f"in use by lmboost generate (pid {os.getpid()}" in err
    assert "Wait for it to finish, or give another --out" in err


def _no_model(*args, **kwargs):
    raise AssertionError("the model must not be loaded")


def test_a_bad_out_and_bad_prompt_files_are_refused_before_the_model_loads(
    tiny_model_dir, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr("lmboost.evaluation.store.load_backend", _no_model)
    a_file = tmp_path / "results.txt"
    a_file.write_text("not a folder")
    prompts = _prompts_file(tmp_path)
    assert main(_argv(tiny_model_dir, prompts, a_file)) == 2
    assert "results.txt is a file, not a folder" in capsys.readouterr().err
    assert main(_argv(tiny_model_dir, prompts, a_file / "run")) == 2
    assert "Cannot create the --out folder" in capsys.readouterr().err
    with pytest.raises(LmboostError, match="is a file, not a folder"):
        run_generate(GenerateRunConfig(out=a_file, model=tiny_model_dir), RUN_PROMPTS)

    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Review: fine\nReview: caf\u00e9 cr\u00e8me\n".encode("latin-1"))
    assert main(_argv(tiny_model_dir, latin1, tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1  # one line
    assert "latin1.txt, line 2: the file is not UTF-8 (byte 0xe9)" in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(FileEncodingError):
        read_prompts(latin1)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_a_read_only_out_is_refused_before_the_model_loads(
    tiny_model_dir, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr("lmboost.evaluation.store.load_backend", _no_model)
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        assert main(_argv(tiny_model_dir, _prompts_file(tmp_path), out)) == 2
    finally:
        out.chmod(0o755)
    assert "is not writable" in capsys.readouterr().err


def test_prompt_files_with_a_bom_are_read(tmp_path):
    text = tmp_path / "bom.txt"
    text.write_bytes("\ufeffReview: caf\u00e9\r\n\r\nArticle: markets\r\n".encode())
    assert read_prompts(text) == ["Review: caf\u00e9", "Article: markets"]
    lines = tmp_path / "bom.jsonl"
    lines.write_bytes('\ufeff{"prompt": "a"}\n{"prompt": "b\\nc"}\n'.encode())
    assert read_prompts(lines) == ["a", "b\nc"]
    lines.write_text('{"prompt": "a"}\n{"text": "b"}\n', encoding="utf-8")
    with pytest.raises(LmboostError, match=r"bom.jsonl, line 2: .*\"prompt\""):
        read_prompts(lines)
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(LmboostError, match="holds no prompts"):
        read_prompts(tmp_path / "empty.txt")


def test_a_prompt_set_is_decoded_like_its_prompts_with_its_chat_setting(
    tiny_model_dir, tmp_path, capsys
):
    rows = [{"id": i, "text": text} for i, text in enumerate(RUN_PROMPTS)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "mine.yaml").write_text(
        'path: rows.jsonl\nprompt: "{text}"\nuid: "r{id}"\nseed: null\nchat: false\n'
        "goal: positive\n"
    )
    by_set, by_file = tmp_path / "set", tmp_path / "file"
    argv = ["generate", "--model", tiny_model_dir, "--device", "cpu", "--max-new-tokens", "4"]
    assert main([*argv, "--prompt-set", str(tmp_path / "mine.yaml"), "--limit", "2",
                 "--out", str(by_set)]) == 0
    assert main(_argv(tiny_model_dir, _prompts_file(tmp_path, RUN_PROMPTS[:2]), by_file,
                      "--chat", "off")) == 0
    assert _texts(by_set) == _texts(by_file)
    assert [r["prompt"] for r in read_json(by_set / "results.json")["results"]] == RUN_PROMPTS[:2]
    assert read_json(by_set / "settings.json")["chat"] is False
    capsys.readouterr()
    assert main([*argv, "--prompt", "hi", "--limit", "2", "--out", str(tmp_path / "x")]) != 0
    assert "--limit takes the first N prompts of --prompt-set" in capsys.readouterr().err
