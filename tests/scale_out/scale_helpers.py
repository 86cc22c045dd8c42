"""Helpers of the scale-out tests (and bench/scale_out.py): generated knowledge bases, and
killing a worker of a Ray Data pool."""

import json

import numpy as np

from rag_vqa.kb import import_kb
from tests.helpers import random_image

WORDS = ["the", "bridge", "tower", "river", "museum", "painting", "bird", "flower", "city",
         "king", "island", "lake"]


def generated_kb(folder, n, seed=0):
    """A ReT-JSONL knowledge base of ``n`` passages: one in eight with an image, some with
    a missing image, one with a broken one, some without text."""
    rng = np.random.default_rng(seed)
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        image = None
        if i % 8 == 0:
            random_image(i, size=(24 + i % 5, 20)).save(images / f"p{i}.png")
            image = f"p{i}.png"
        elif i % 8 == 1:
            image = f"missing/p{i}.jpg"
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(2, 24))))
        lines.append({"passage_id": f"P{i}", "passage_text": text if i % 13 else "",
                      "passage_image_path": image})
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    lines.append({"passage_id": "P-broken", "passage_text": "a passage with a broken image",
                  "passage_image_path": "broken.jpg"})
    source = folder / "kb.jsonl"
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    import_kb("ret-jsonl", source, folder / "kb", images, progress=False)
    return folder / "kb"


def kill_a_worker(class_name):
    """``ray.kill`` one live actor of a Ray Data pool (by the UDF's class name), letting Ray
    restart it as it would after a crash; returns its actor id, or None when none is alive.
    (Ray Data keeps no public handle to its pool's actors: the handle comes from the id.)"""
    import ray
    from ray._raylet import ActorID

    for actor_id, info in ray._private.state.actors().items():
        if info["State"] == "ALIVE" and class_name in info["ActorClassName"]:
            worker = ray._private.worker.global_worker
            ray.kill(worker.core_worker.get_actor_handle(ActorID.from_hex(actor_id)),
                     no_restart=False)
            return actor_id
    return None


def restarts(actor_id):
    import ray

    return ray._private.state.actors()[actor_id]["NumRestarts"]
