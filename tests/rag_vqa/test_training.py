"""`rag-vqa train`: jobs from TOML and flags, KB folders as passage sources, mined hard
negatives, the final model, refusal to overwrite a run, and resuming through the CLI."""

import json
import os
import subprocess
import sys

import pytest
import torch

from rag_vqa.kb.importer import import_kb
from rag_vqa.loading import load_retriever
from rag_vqa.training import KBPassages, load_hard_negatives, load_job, open_passages, run_training
from retriever import ReTRetriever
from retriever.sharing import TRAINING_FILE
from retriever.tiny import build_tiny_retriever, tiny_retriever_config
from retriever.training import TrainingDataError, load_train_queries
from retriever.training.synthetic import write_synthetic_task


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    folder = tmp_path_factory.mktemp("task")
    paths = write_synthetic_task(folder, colours=4, words=4, train_per_entity=4)
    kb = folder / "kb"
    import_kb("ret-jsonl", paths["passages"], kb, image_root=folder, progress=False)
    return paths, kb


def cli(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "rag_vqa", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=600)


def test_a_kb_folder_gives_the_same_passages_as_the_jsonl(task):
    paths, kb = task
    from_kb, from_jsonl = open_passages(kb), open_passages(paths["passages"], paths["images"])
    assert isinstance(from_kb, KBPassages)
    assert sorted(from_kb.ids()) == sorted(from_jsonl.ids())
    for pid in from_jsonl.ids():
        a, b = from_kb.get(pid), from_jsonl.get(pid)
        assert a.text == b.text and a.image.resolve() == b.image.resolve()
    with pytest.raises(TrainingDataError, match="not a knowledge base"):
        open_passages(paths["images"] / "images")


def test_hard_negatives_from_mined_predictions_drop_the_positives(tmp_path, task):
    paths, _ = task
    mined = tmp_path / "predictions.jsonl"
    mined.write_text(
        json.dumps({"data_id": "train-e00-0", "retrieved": [
            {"passage_id": "e00", "score": 9.0}, {"passage_id": "e01", "score": 8.0},
            {"passage_id": "e10", "score": 7.0}, {"passage_id": "e11", "score": 6.0}]}) + "\n"
        + json.dumps({"data_id": "train-e01-0", "hard_negatives": ["e02", "e01"]}) + "\n")
    negatives = load_hard_negatives(mined, top=3)
    assert negatives == {"train-e00-0": ["e00", "e01", "e10"], "train-e01-0": ["e02", "e01"]}
    queries = {q.data_id: q for q in load_train_queries(paths["train"], paths["images"],
                                                        hard_negatives=negatives)}
    assert queries["train-e00-0"].hard_negatives == ["e01", "e10"]
    assert queries["train-e01-0"].hard_negatives == ["e02"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"data_id": "x"}) + "\n")
    with pytest.raises(TrainingDataError, match="bad.jsonl:1: needs 'hard_negatives'"):
        load_hard_negatives(bad)


def test_job_from_toml_with_flag_overrides(tmp_path, task):
    paths, kb = task
    config = tmp_path / "train.toml"
    config.write_text(f'queries = "{paths["train"]}"\npassages = "{kb}"\nretriever = "tiny"\n'
                      f'[train]\nmax_steps = 7\nbatch_size = 8\nlearning_rate = 0.01\n')
    job = load_job(config, {"images": str(paths["images"]), "passages": None,
                            "train": {"max_steps": 3, "batch_size": None}})
    assert (job.passages, job.images) == (str(kb), str(paths["images"]))
    assert (job.config.max_steps, job.config.batch_size, job.config.learning_rate) == (3, 8, 0.01)
    config.write_text('queries = "q.jsonl"\npassages = "p"\nquerys = 1\n')
    with pytest.raises(ValueError, match=r"unknown key 'querys' \(did you mean 'queries'\?\)"):
        load_job(config, {})
    config.write_text('queries = "q.jsonl"\npassages = "p"\n[train]\nmax_steps = 0\n')
    with pytest.raises(ValueError, match="train.max_steps must be at least 1"):
        load_job(config, {})
    with pytest.raises(ValueError, match="training needs passages"):
        load_job(None, {"queries": "q.jsonl"})


def test_training_from_a_kb_writes_a_loadable_model(tmp_path, task):
    paths, kb = task
    job = load_job(None, {"queries": str(paths["train"]), "passages": str(kb),
                          "images": str(paths["images"]), "val_queries": str(paths["val"]),
                          "val_all_passages": True, "retriever": "tiny",
                          "train": {"output_dir": str(tmp_path / "run"), "max_steps": 3,
                                    "batch_size": 8, "log_every": 1}})
    result, final = run_training(job)
    assert result.steps == 3 and set(result.validation) == {"recall@1", "recall@5", "recall@10"}
    model = ReTRetriever.from_pretrained(final)
    saved = ReTRetriever.from_pretrained(f"{result.checkpoint}/model")
    assert all(torch.equal(v, saved.state_dict()[k]) for k, v in model.state_dict().items())
    assert json.loads((tmp_path / "run" / "job.json").read_text())["passages"] == str(kb)
    record = json.loads((final / "training.json").read_text())
    assert record["steps"] == 3 and record["validation"] == result.validation
    assert record["data"]["passages"]["digest"].startswith("xxh3_128:")
    assert record["data"]["queries"]["digest"].startswith("xxh3_128:")
    # shared as a model repository (a local folder stands in for the hub), with its card
    model.push_to_hub("lab/ret-sample", hub_dir=tmp_path / "hub")
    repo = tmp_path / "hub" / "models" / "lab" / "ret-sample"
    card = (repo / "README.md").read_text()
    assert "3 steps" in card and f"`{paths['train']}`" in card
    assert f"| recall@1 | {result.validation['recall@1']:.4f} |" in card
    assert (repo / "training.json").is_file()
    pulled = ReTRetriever.from_pretrained(repo)
    assert pulled.weights_fingerprint() == model.weights_fingerprint()
    with pytest.raises(FileExistsError, match="already holds a training run"):
        run_training(job)


def test_cli_trains_pauses_and_resumes(tmp_path, task):
    paths, _ = task
    common = ["--queries", paths["train"], "--passages", paths["passages"], "--images",
              paths["images"], "--retriever", "tiny", "--output-dir", tmp_path / "run",
              "--batch-size", "8", "--lr", "1e-3", "--json"]
    first = cli("train", *common, "--max-steps", "2")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["steps"] == 2
    again = cli("train", *common, "--max-steps", "4")
    assert again.returncode == 2 and "pass --resume" in json.loads(again.stdout)["error"]
    resumed = cli("train", *common, "--max-steps", "4", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    out = json.loads(resumed.stdout)
    assert out["steps"] == 4 and out["model"] == str(tmp_path / "run" / "model")
    steps = [json.loads(line)["step"] for line in
             (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 4
    missing = cli("train", *common, "--queries", tmp_path / "nope.jsonl", "--output-dir",
                  tmp_path / "other")
    assert missing.returncode == 2 and "nope.jsonl" in json.loads(missing.stdout)["error"]


def test_cli_help_lists_the_training_flags():
    shown = cli("train", "--help")
    assert shown.returncode == 0
    for flag in ("--max-steps", "--eval-every", "--output-dir", "--resume", "--hard-negatives",
                 "--cache-features", "--config", "--train-only"):
        assert flag in shown.stdout


def test_hard_negatives_mined_with_our_index_through_the_cli(tmp_path, task):
    """The README's flow: index the KB, retrieve for the training queries, train on them."""
    paths, kb = task
    assert cli("index", "build", kb, "--retriever", "tiny", "--out", tmp_path / "index",
               "--method", "exact", "--workers", "0").returncode == 0
    (tmp_path / "tiny.toml").write_text('profile = "tiny"\n')
    mined = cli("eval", "run", "--dataset", "ret-jsonl", "--questions", paths["train"],
                "--images", paths["images"], "--index", tmp_path / "index", "--config",
                tmp_path / "tiny.toml", "--out", tmp_path / "mined", "--retrieval-only",
                "--k", "5", "--limit", "16")
    assert mined.returncode == 0, mined.stderr
    predictions = tmp_path / "mined" / "predictions.jsonl"
    negatives = load_hard_negatives(predictions)
    assert len(negatives) == 16 and all(len(ids) == 5 for ids in negatives.values())
    trained = cli("train", "--queries", paths["train"], "--images", paths["images"],
                  "--passages", kb, "--retriever", "tiny",
                  "--output-dir", tmp_path / "run", "--max-steps", "2", "--batch-size", "8",
                  "--hard-negatives", predictions, "--hard-negatives-per-query", "2", "--json",
                  "--train-only", "*late_proj*", "*text_xa*")
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout)["steps"] == 2
    model = tmp_path / "run" / "model"
    record = json.loads((model / TRAINING_FILE).read_text())
    assert record["job"]["train"]["train_only"] == ["*late_proj*", "*text_xa*"]
    start = load_retriever("tiny").model.state_dict()
    for name, value in ReTRetriever.from_pretrained(model).state_dict().items():
        if "late_proj" not in name and "text_xa" not in name:
            assert torch.equal(value, start[name]), name  # frozen by --train-only


def test_two_processes_train_like_one_with_the_global_batch(tmp_path, task):
    """Distributed training (torchrun, two CPU processes of 8 queries) ends with the weights of a
    single process training on the 16-query global batch: features are gathered, gradients
    flow through each process's own part and sum to the full gradient."""
    paths, _ = task
    config = tiny_retriever_config()
    for tower in (config.query_config, config.passage_config):
        tower.dropout_p = tower.attention_dropout = 0.0  # make both runs deterministic
    build_tiny_retriever(seed=7, config=config).save_pretrained(tmp_path / "init")
    common = ["train", "--queries", paths["train"], "--images", paths["images"], "--passages",
              paths["passages"], "--retriever", tmp_path / "init", "--max-steps", "3",
              "--lr", "1e-3", "--warmup-steps", "1", "--learn-temperature"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node", "2", "-m", "rag_vqa", *map(str, common),
                          "--batch-size", "8", "--output-dir", str(tmp_path / "two")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    one = cli(*common, "--batch-size", "16", "--output-dir", tmp_path / "one")
    assert one.returncode == 0, one.stderr
    a = ReTRetriever.from_pretrained(tmp_path / "one" / "model").state_dict()
    b = ReTRetriever.from_pretrained(tmp_path / "two" / "model").state_dict()
    start = ReTRetriever.from_pretrained(tmp_path / "init").state_dict()
    assert any(not torch.equal(a[k], start[k]) for k in a)
    # Adam turns float noise in near-zero gradients into steps of up to lr (1e-3): compare
    # well below one step
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 2e-4, worst
    losses = [json.loads((tmp_path / run / "metrics.jsonl").read_text().splitlines()[-1])
              for run in ("one", "two")]
    assert losses[0]["lr"] == losses[1]["lr"]
    assert abs(losses[0]["loss"] - losses[1]["loss"]) < 1e-5
    assert losses[0]["temperature"] != 1.0
    assert abs(losses[0]["temperature"] - losses[1]["temperature"]) < 1e-6
